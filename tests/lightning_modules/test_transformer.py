import pytest
import torch

from lightning_modules.transformer import Transformer, TransformerConfig


def build(**kw) -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(**{"dim": 16, "max_seq_len": 32, "vocab_size": 11, **kw}))


@pytest.mark.parametrize("positional", ["absolute", "sinusoidal", "rope"])
@pytest.mark.parametrize("ff", [["mlp", "mlp"], ["none", "linear"]])
def test_changing_a_future_token_never_changes_past_logits(positional, ff):
    net = build(positional=positional, ff=ff, n_heads=2)
    x = torch.randint(11, (3, 20))
    base = net(x)
    for t in (0, 7, 19):
        y = x.clone()
        y[:, t] = (y[:, t] + 1) % 11
        out = net(y)
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=1e-6)
        assert not torch.allclose(out[:, t], base[:, t])


def test_parameter_names_are_stable_and_embeddings_frozen():
    net = build(ff=["linear", "mlp"], learned_query=False)
    names = dict(net.named_parameters())
    assert {"tok_emb", "pos_emb", "unemb", "layers.0.attn.wk", "layers.0.ff.w2", "layers.1.ff.w1", "layers.1.ff.w2"} <= set(names)
    assert "layers.0.attn.wq" not in names and "layers.0.ff.w1" not in names
    assert not names["tok_emb"].requires_grad and not names["unemb"].requires_grad and not names["pos_emb"].requires_grad
    assert names["layers.1.ff.w2"].requires_grad
    trainable = build(freeze_embeddings=False, freeze_unembedding=False)
    assert trainable.tok_emb.requires_grad and trainable.unemb.requires_grad


def test_layer_norm_option_and_sequence_limit():
    assert any(isinstance(m, torch.nn.LayerNorm) for m in build(layer_norm=True).modules())
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in build().modules())
    with pytest.raises(ValueError, match="max_seq_len"):
        build()(torch.zeros(1, 33, dtype=torch.long))
    assert build(positional="rope")(torch.zeros(1, 64, dtype=torch.long)).shape == (1, 64, 11)


def test_bad_config_values_name_the_field():
    with pytest.raises(ValueError, match="n_heads"):
        TransformerConfig(dim=10, n_heads=3)
    with pytest.raises(ValueError, match="model.ff"):
        TransformerConfig(ff=["mlp", "conv"])


@pytest.mark.parametrize("positional", ["absolute", "rope"])
def test_attention_probabilities_are_the_pattern_forward_applies(positional):
    net = build(positional=positional, n_heads=2)
    attn = net.layers[0].attn
    x = torch.randn(3, 9, 16)
    probs = attn.probabilities(x)
    assert probs.shape == (3, 2, 9, 9)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 2, 9))
    assert probs.triu(1).abs().max() == 0  # causal: no weight on future keys
    _, _, v = attn.qkv(x)
    by_hand = torch.nn.functional.linear((probs @ v).transpose(1, 2).flatten(2), attn.wo)
    torch.testing.assert_close(by_hand, attn(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("positional", ["absolute", "rope", "relative", "alibi"])
def test_one_query_row_of_the_pattern_is_that_row_of_the_whole_pattern(positional):
    # the hijack probe reads only the final query's row (its prompts are up to 4x the training length)
    attn = build(positional=positional, n_heads=2).layers[0].attn
    x = torch.randn(3, 9, 16)
    whole = attn.probabilities(x)
    for query in (-1, 0, 4):
        row = attn.probabilities(x, query=query)
        assert row.shape == (3, 2, 1, 9)
        torch.testing.assert_close(row[:, :, 0], whole[:, :, query], rtol=1e-5, atol=1e-7)


def test_reference_init_matches_the_reference_codes_formulas():
    """leichen2018/ATTN_vs_MLP: nn.Embedding and torch.randn positions, N(0, 1); nn.Linear's U(+-1/sqrt(fan_in))."""
    torch.manual_seed(0)
    net = Transformer(TransformerConfig(dim=128, max_seq_len=256, vocab_size=65, init="reference", learned_query=False))
    for name in ("tok_emb", "pos_emb"):
        x = getattr(net, name).detach()
        assert abs(float(x.mean())) < 0.02 and float(x.std()) == pytest.approx(1.0, abs=0.02), name
    for name, p in net.named_parameters():
        if p.ndim != 2 or name in ("tok_emb", "pos_emb"):
            continue
        bound = 1 / p.shape[1] ** 0.5
        w = p.detach()
        assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.99 * bound, name  # fills the whole interval
        assert float(w.var()) == pytest.approx(bound**2 / 3, rel=0.05), name  # the uniform distribution's variance
    assert net.layers[0].attn.wq is None  # W_Q = identity


def test_scaled_init_is_the_default_and_unchanged():
    torch.manual_seed(0)
    net = Transformer(TransformerConfig(dim=128, max_seq_len=256, vocab_size=65))
    assert net.cfg.init == "scaled"
    assert float(net.tok_emb.std()) == pytest.approx(128**-0.5, rel=0.05)
    w2 = net.layers[1].ff.w2.detach()
    assert float(w2.std()) == pytest.approx(w2.shape[1] ** -0.5, rel=0.05) and float(w2.abs().max()) > 3 * w2.shape[1] ** -0.5
    torch.manual_seed(0)  # the same draws as before model.init existed: N(0, 1) / sqrt(dim), in the same order
    assert torch.equal(net.tok_emb, torch.randn(65, 128) / 128**0.5)


def test_ff_width_per_layer_and_below_dim():
    from lightning_modules.transformer import Transformer, TransformerConfig

    net = Transformer(TransformerConfig(dim=16, ff=["mlp", "mlp", "linear"], ff_width=[2, 64, 5], vocab_size=7))
    assert net.layers[0].ff.w1.shape == (2, 16) and net.layers[0].ff.w2.shape == (16, 2)  # dim/8
    assert net.layers[1].ff.w1.shape == (64, 16)  # 4 dim
    assert net.layers[2].ff.w1 is None and net.layers[2].ff.w2.shape == (16, 16)  # a linear FF has no hidden width
    one = Transformer(TransformerConfig(dim=16, ff=["none", "mlp"], ff_width=3, vocab_size=7))
    assert one.layers[1].ff.w1.shape == (3, 16)
    default = Transformer(TransformerConfig(dim=16, ff=["mlp"], ff_hidden_mult=2, vocab_size=7))
    assert default.layers[0].ff.w1.shape == (32, 16)
    for bad, message in (([4], "one width per layer"), (0, "ff_width must be >= 1")):
        try:
            TransformerConfig(dim=16, ff=["mlp", "mlp"], ff_width=bad)
        except ValueError as e:
            assert message in str(e)
        else:
            raise AssertionError(f"ff_width {bad} was accepted")
