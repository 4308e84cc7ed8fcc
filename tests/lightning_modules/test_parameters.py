"""Which parameters train and which start at zero: one plan, from names or globs (the knowledge-hijack setup)."""
import pytest
import torch

from lightning_modules.parameters import trainable_names
from lightning_modules.transformer import Transformer, TransformerConfig

HIJACK = dict(trainable=["layers.0.attn.wk", "layers.1.attn.wk", "layers.1.attn.wo", "layers.1.ff.*"],
              zero_init=["layers.0.attn.wk", "layers.1.attn.wk", "layers.1.attn.wo"])


def build(**kw) -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(**{"dim": 16, "max_seq_len": 32, "vocab_size": 11, "ff": ["none", "mlp"], **kw}))


def test_only_the_named_matrices_change_when_trained_and_zero_init_starts_at_zero():
    net = build(**HIJACK)
    assert sorted(trainable_names(net)) == ["layers.0.attn.wk", "layers.1.attn.wk", "layers.1.attn.wo", "layers.1.ff.w1", "layers.1.ff.w2"]
    for name in HIJACK["zero_init"]:
        assert torch.count_nonzero(dict(net.named_parameters())[name]) == 0, name
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.5)
    x = torch.randint(11, (8, 20))
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten()).backward()
        opt.step()
    changed = {n for n, p in net.named_parameters() if not torch.equal(p, before[n])}
    assert changed == set(trainable_names(net))  # every trained matrix moved (zero-init ones too), nothing else did


def test_the_freeze_flags_are_the_default_plan():
    assert set(trainable_names(build())) == {n for n, _ in build().named_parameters()} - {"tok_emb", "pos_emb", "unemb"}
    assert "tok_emb" in trainable_names(build(freeze_embeddings=False))


@pytest.mark.parametrize("field", ["trainable", "zero_init"])
def test_a_pattern_that_matches_nothing_is_refused_naming_it(field):
    with pytest.raises(ValueError, match=rf"model.{field}: 'layers.2.attn.wk' matches no parameter"):
        build(**{field: ["layers.2.attn.wk"]})


def test_a_learned_relative_encoding_trains_with_an_explicit_plan():
    net = build(positional="relative", **HIJACK)
    assert {"layers.0.attn.pos.bias", "layers.1.attn.pos.bias"} <= set(trainable_names(net))
