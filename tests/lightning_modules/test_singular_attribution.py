"""Singular-component attribution against a brute-force computation of the same quantities on a tiny model, in
float64: each component removed by hand and the whole network run again, the direct parts against the existing
logit split, and the predicted keep-top curve against the truncated model where the first-order sum is exact."""
import pytest
import torch

from lightning_modules.attribution import logit_split
from lightning_modules.laser import SVDFactors
from lightning_modules.singular_attribution import GapPositions, attribute, gap_of, last_position_gap
from lightning_modules.transformer import Transformer, TransformerConfig


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    net = Transformer(TransformerConfig(dim=8, n_heads=2, ff=["mlp", "mlp"], ff_hidden_mult=2, vocab_size=11,
                                        max_seq_len=12, freeze_embeddings=False)).double().eval()
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 11, (5, 12), generator=g)
    mask = torch.rand(5, 12, generator=g) < 0.4
    where = GapPositions(tokens, mask, torch.full_like(tokens, 3), torch.randint(0, 11, (5, 12), generator=g))
    return net, where


def brute_removal(net, name, where) -> list[float]:
    w = dict(net.named_parameters())[name]
    full = float(gap_of(net(where.tokens), where))
    u, s, vh = torch.linalg.svd(w.detach(), full_matrices=False)
    out = []
    for i in range(len(s)):
        saved = w.detach().clone()
        with torch.no_grad():
            w.sub_(s[i] * torch.outer(u[:, i], vh[i]))
            out.append(float(gap_of(net(where.tokens), where)) - full)
            w.copy_(saved)
    return out


@pytest.mark.parametrize("name", ["layers.0.attn.wq", "layers.0.attn.wv", "layers.0.ff.w1", "layers.0.ff.w2",
                                  "layers.1.attn.wk", "layers.1.attn.wo", "layers.1.ff.w1", "layers.1.ff.w2"])
def test_removal_equals_brute_force_removal_for_every_matrix(tiny, name):
    net, where = tiny
    got = attribute(net, name, where, chunk=3)  # chunks that do not divide the rank
    assert got.removal == pytest.approx(brute_removal(net, name, where), abs=1e-10)
    assert got.gap == pytest.approx(float(gap_of(net(where.tokens), where)), abs=1e-12)
    assert got.n_positions == int(where.mask.sum())


def test_the_direct_parts_sum_to_the_logit_split_and_equal_removal_in_the_last_layer(tiny):
    net, where = tiny
    tokens = where.tokens
    # one gap per sequence at its last position, where logit_split is defined
    last = last_position_gap(tokens, where.plus[:, -1], where.minus[:, -1])
    split = logit_split(net, tokens, last.plus[:, -1], last.minus[:, -1])
    for name, part in (("layers.1.ff.w2", "layers.1.ff"), ("layers.0.ff.w2", "layers.0.ff"), ("layers.1.attn.wo", "layers.1.attn")):
        got = attribute(net, name, last)
        assert sum(got.direct) == pytest.approx(float(split[part].mean()), abs=1e-10)
    # the last layer's FF output reaches the logits only linearly: removing a component takes away its direct part
    got = attribute(net, "layers.1.ff.w2", where)
    assert got.removal == pytest.approx([-d for d in got.direct], abs=1e-10)
    # a matrix that does not write the residual stream has no direct part
    assert attribute(net, "layers.1.ff.w1", where).direct is None


def test_measured_ranks_are_the_truncated_models_gap_and_the_prediction_is_exact_where_linear(tiny):
    net, where = tiny
    got = attribute(net, "layers.1.ff.w2", where, ranks=[0, 1, 3])
    w = net.layers[1].ff.w2.detach()
    f = SVDFactors.of(w)
    for k in (0, 1, 3):
        saved = w.clone()
        with torch.no_grad():
            net.layers[1].ff.w2.copy_(f.reconstruct(k))
            truth = float(gap_of(net(where.tokens), where))
            net.layers[1].ff.w2.copy_(saved)
        assert got.measured[k] == pytest.approx(truth, abs=1e-10)
        # linear in W2 (the last layer's output map): the sum of single removals is the truncated model's gap
        assert got.predicted_keep_top(k) == pytest.approx(truth, abs=1e-10)
    assert torch.equal(net.layers[1].ff.w2.detach(), w)  # restored bit for bit
    record = got.as_dict()
    assert record["predicted_keep_top"][len(got.singular_values)] == pytest.approx(got.gap)
    assert set(record["measured"]) == {"0", "1", "3"}


def test_the_ov_product_is_attributed_as_one_map_against_brute_force():
    from lightning_modules.laser import truncate

    torch.manual_seed(2)
    net = Transformer(TransformerConfig(dim=6, n_heads=1, ff=["none", "mlp"], ff_hidden_mult=2, vocab_size=9,
                                        max_seq_len=10)).double().eval()
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, 9, (4, 10), generator=g)
    where = GapPositions(tokens, torch.rand(4, 10, generator=g) < 0.5, torch.full_like(tokens, 2),
                         torch.randint(0, 9, (4, 10), generator=g))
    for layer in (0, 1):
        attn = net.layers[layer].attn
        product = (attn.wo @ attn.wv).detach()
        got = attribute(net, f"layers.{layer}.attn.ov", where, ranks=[1, 3], chunk=4)
        u, s, vh = torch.linalg.svd(product)
        full = float(gap_of(net(tokens), where))
        saved = attn.wo.detach().clone(), attn.wv.detach().clone()
        brute = []
        with torch.no_grad():
            attn.wo.copy_(torch.eye(6, dtype=torch.float64))
            for i in range(6):  # W_O = I, W_V = the product without component i: the same block output as W_O W_V
                attn.wv.copy_(product - s[i] * torch.outer(u[:, i], vh[i]))
                brute.append(float(gap_of(net(tokens), where)) - full)
            for k in (1, 3):
                attn.wv.copy_(truncate(product, rank=k))
                assert got.measured[k] == pytest.approx(float(gap_of(net(tokens), where)), abs=1e-10)
            attn.wo.copy_(saved[0])
            attn.wv.copy_(saved[1])
        assert got.removal == pytest.approx(brute, abs=1e-10)
        assert torch.equal(attn.wo @ attn.wv, product)  # restored
    # an output map whose output reaches the logits only linearly (the last layer, no FF after it): its direct
    # parts are minus its removals; with the FF after it, they are not
    mixed = attribute(net, "layers.1.attn.ov", where)
    assert mixed.removal != pytest.approx([-d for d in mixed.direct], abs=1e-6)
    torch.manual_seed(2)
    attention_only = Transformer(TransformerConfig(dim=6, n_heads=1, ff=["none", "none"], vocab_size=9,
                                                   max_seq_len=10)).double().eval()
    last = attribute(attention_only, "layers.1.attn.ov", where)
    assert last.removal == pytest.approx([-d for d in last.direct], abs=1e-10)


def test_the_split_has_a_bootstrap_interval_over_sequences_around_its_estimate(tiny):
    net, where = tiny
    got = attribute(net, "layers.1.ff.w2", where)
    assert got.removal_sums.shape == (len(got.singular_values), where.tokens.shape[0])
    assert (got.removal_sums.sum(1) / got.counts.sum()).tolist() == pytest.approx(got.removal, abs=1e-12)
    k = 3
    top, tail = got.predicted_keep_top(k) - got.predicted_keep_top(0), got.gap - got.predicted_keep_top(k)
    ci = got.split_interval(k)
    assert ci["top_gap_ci"][0] <= top <= ci["top_gap_ci"][1] and ci["tail_gap_ci"][0] <= tail <= ci["tail_gap_ci"][1]
    assert ci["top_gap_ci"][0] < ci["top_gap_ci"][1]  # five sequences: a real spread
