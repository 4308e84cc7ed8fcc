"""Every positional encoding: shapes, causality, and for the relative schemes, the same attention pattern when the
whole sequence is shifted (what length generalisation relies on)."""
import pytest
import torch

from lightning_modules.positional import ENCODINGS
from lightning_modules.transformer import Transformer, TransformerConfig


def build(positional: str, **kw) -> Transformer:
    torch.manual_seed(0)
    net = Transformer(TransformerConfig(dim=16, n_heads=2, max_seq_len=64, vocab_size=11, positional=positional, **kw))
    for layer in net.layers:  # a learned relative bias starts at zero: give it structure to test
        if hasattr(layer.attn.pos, "bias"):
            layer.attn.pos.bias.data.normal_()
    return net


@pytest.mark.parametrize("positional", ENCODINGS)
def test_shapes_and_causality(positional):
    net = build(positional)
    x = torch.randint(11, (3, 24))
    base = net(x)
    assert base.shape == (3, 24, 11)
    y = x.clone()
    y[:, 15] = (y[:, 15] + 1) % 11
    out = net(y)
    torch.testing.assert_close(out[:, :15], base[:, :15], rtol=0, atol=1e-6)
    assert not torch.allclose(out[:, 15], base[:, 15])
    patterns = net.layers[0].attn.probabilities(net.tok_emb[x])
    assert patterns.shape == (3, 2, 24, 24) and torch.allclose(patterns.sum(-1), torch.ones(3, 2, 24))
    assert torch.all(patterns.triu(1) == 0)


@pytest.mark.parametrize("positional", ["rope", "relative", "alibi"])
def test_relative_schemes_give_the_same_pattern_for_a_shifted_sequence(positional):
    """Tokens at positions 7..16 attend to each other as they do at 0..9: among those keys, the scores depend on the
    offsets only, so the pattern restricted to them (renormalised, the prefix's share removed) is the same."""
    net = build(positional)
    attn = net.layers[0].attn
    x = net.tok_emb[torch.randint(11, (2, 10))]
    alone = attn.probabilities(x)
    shifted = attn.probabilities(torch.cat([torch.randn(2, 7, 16), x], 1))[..., 7:, 7:]
    torch.testing.assert_close(shifted / shifted.sum(-1, keepdim=True), alone, rtol=1e-4, atol=1e-5)


def test_absolute_positions_do_not_shift():
    net = build("absolute")
    attn = net.layers[0].attn
    e = net.tok_emb[torch.randint(11, (2, 10))]
    alone = attn.probabilities(e + net.pos_emb[:10])
    shifted = attn.probabilities(e + net.pos_emb[7:17])
    assert not torch.allclose(alone, shifted, atol=1e-3)


def test_rope_in_the_first_layer_only_like_the_reference():
    net = build("rope", positional_layers=[0])
    assert net.layers[0].attn.pos is not None and net.layers[1].attn.pos is None
    with pytest.raises(ValueError, match="positional_layers"):
        build("rope", positional_layers=[2])
