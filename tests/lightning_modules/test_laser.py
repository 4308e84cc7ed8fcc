import pytest
import torch

from lightning_modules.laser import SVDFactors, rank_for, select_parameters, truncate, truncate_, truncated
from lightning_modules.transformer import Transformer, TransformerConfig


@pytest.mark.parametrize("shape", [(12, 7), (7, 12), (9, 9)])
@pytest.mark.parametrize("rho", [0.0, 0.3, 0.5, 1.0])
def test_truncation_has_the_requested_rank_and_the_eckart_young_error(shape, rho):
    torch.manual_seed(0)
    w = torch.randn(shape, dtype=torch.float64)
    k = rank_for(shape, rho)
    assert k == int(rho * min(shape) + 1e-9)
    approx = truncate(w, rho=rho)
    assert torch.linalg.matrix_rank(approx).item() == k
    s = torch.linalg.svdvals(w)
    # Eckart-Young: the best rank-k error is the tail of the spectrum, in Frobenius and spectral norm
    assert torch.linalg.norm(w - approx).item() == pytest.approx(s[k:].square().sum().sqrt().item(), rel=1e-9, abs=1e-12)
    spectral = torch.linalg.matrix_norm(w - approx, ord=2).item()
    assert spectral == pytest.approx(s[k].item() if k < len(s) else 0.0, rel=1e-9, abs=1e-12)
    # no random rank-k matrix does better
    other = torch.randn(shape[0], max(k, 1), dtype=torch.float64) @ torch.randn(max(k, 1), shape[1], dtype=torch.float64)
    if k > 0:
        assert torch.linalg.norm(w - approx) <= torch.linalg.norm(w - other)


def test_rank_argument_and_rho_edge_cases():
    w = torch.randn(6, 4)
    assert torch.linalg.matrix_rank(truncate(w, rank=2)) == 2
    assert rank_for((10, 3), 0.3) == 0 and rank_for((10, 10), 0.3) == 3
    with pytest.raises(ValueError):
        rank_for((4, 4), 1.5)
    with pytest.raises(ValueError):
        truncate(w, rho=0.5, rank=1)
    assert truncate(torch.randn(5, 5, dtype=torch.bfloat16), rank=2).dtype == torch.bfloat16


def net() -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(dim=8, max_seq_len=8, vocab_size=5))


def test_temporary_truncation_restores_weights_bit_for_bit_and_in_place_keeps_the_parameter():
    model = net()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    w2 = model.layers[1].ff.w2
    with truncated(model, {"layers.1.ff.w2": 1}):
        assert torch.linalg.matrix_rank(w2) == 1
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    factors = {"layers.1.ff.w2": SVDFactors.of(w2)}
    with truncated(model, {"layers.1.ff.w2": 0}, factors):
        assert w2.abs().sum() == 0
    assert torch.equal(w2, before["layers.1.ff.w2"])
    truncate_(model, {"layers.1.ff.w2": 2})
    assert model.layers[1].ff.w2 is w2 and torch.linalg.matrix_rank(w2) == 2
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if n != "layers.1.ff.w2")


def test_select_parameters_by_pattern_and_typos_name_the_pattern():
    model = net()
    assert set(select_parameters(model, "layers.*.ff.w2")) == {"layers.0.ff.w2", "layers.1.ff.w2"}
    with pytest.raises(ValueError, match="layers.1.ff.w3"):
        select_parameters(model, ["layers.1.ff.w3"])


def test_pretrained_rule_keeps_at_least_one_direction_for_positive_rho():
    assert rank_for((100, 40), 0.01) == 0 and rank_for((100, 40), 0.01, min_rank=1) == 1
    assert rank_for((100, 40), 0.0, min_rank=1) == 0  # rho = 0 removes the matrix
    assert rank_for((100, 40), 0.5, min_rank=1) == 20


def test_randomized_svd_matches_the_exact_top_k():
    torch.manual_seed(0)
    # a matrix with a clear spectral gap after 5 directions, as a trained weight's top directions
    w = torch.randn(300, 5) @ torch.randn(5, 200) + 0.01 * torch.randn(300, 200)
    exact = SVDFactors.of(w).reconstruct(5)
    fast = SVDFactors.of(w, top=5).reconstruct(5)
    assert torch.linalg.matrix_rank(fast).item() == 5
    assert torch.linalg.norm(fast - exact) / torch.linalg.norm(exact) < 1e-3
    assert SVDFactors.of(w, top=0).reconstruct(0).abs().max() == 0
    with pytest.raises(ValueError, match="the triplets computed"):
        SVDFactors.of(w, top=5).reconstruct(6)


def _tiny_net(ff=("mlp", "mlp"), n_heads=1):
    torch.manual_seed(0)
    return Transformer(TransformerConfig(dim=8, n_heads=n_heads, ff=list(ff), vocab_size=11, max_seq_len=12)).double()


def test_the_ov_product_is_truncated_as_one_map_and_restored_bit_for_bit():
    from lightning_modules.laser import target_groups, target_shapes

    net = _tiny_net()
    wo, wv = net.layers[1].attn.wo, net.layers[1].attn.wv
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    product = (wo @ wv).detach()
    assert target_shapes(net, "layers.1.attn.ov") == {"layers.1.attn.ov": (8, 8)}
    assert target_groups(net, ["layers.*.attn.ov"]) == [("layers.0.attn.ov", ["layers.0.attn.ov"]),
                                                       ("layers.1.attn.ov", ["layers.1.attn.ov"])]
    for k in (0, 2, 5):
        with truncated(net, {"layers.1.attn.ov": k}):
            got = (wo @ wv).detach()
            # the best rank-k approximation of the product itself, not the product of two truncations
            assert torch.linalg.matrix_rank(got).item() == k
            assert torch.allclose(got, truncate(product, rank=k), atol=1e-10)
            changed = {n for n, p in net.named_parameters() if not torch.equal(p, before[n])}
            assert changed <= {"layers.1.attn.wo", "layers.1.attn.wv"}
        assert all(torch.equal(p, before[n]) for n, p in net.named_parameters())  # bit for bit
    with pytest.raises(ValueError, match="W_O W_V product is one map only with one head"):
        target_shapes(_tiny_net(n_heads=2), "layers.1.attn.ov")


def test_several_matrices_form_one_variant_and_are_restored_bit_for_bit():
    from lightning_modules.laser import target_groups

    net = _tiny_net()
    assert target_groups(net, ["layers.1.ff.w1+layers.1.ff.w2", "layers.*.ff.w2"]) == [
        ("layers.1.ff.w1+layers.1.ff.w2", ["layers.1.ff.w1", "layers.1.ff.w2"]),
        ("layers.0.ff.w2", ["layers.0.ff.w2"]), ("layers.1.ff.w2", ["layers.1.ff.w2"])]
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    ranks = {"layers.1.ff.w1": 1, "layers.1.ff.w2": 2, "layers.1.attn.ov": 3}
    with truncated(net, ranks):
        assert torch.linalg.matrix_rank(net.layers[1].ff.w1).item() == 1
        assert torch.linalg.matrix_rank(net.layers[1].ff.w2).item() == 2
        assert torch.linalg.matrix_rank(net.layers[1].attn.wo @ net.layers[1].attn.wv).item() == 3
    assert all(torch.equal(p, before[n]) for n, p in net.named_parameters())


def test_a_module_records_every_truncated_matrix_of_a_joint_variant():
    from lightning_modules.noisy_recall import NoisyRecallModule

    m = NoisyRecallModule(TransformerConfig(dim=8, ff=["mlp", "mlp"], max_seq_len=12), vocab_size=11, noise_id=10,
                          laser_targets=["layers.*.ff.w2+layers.1.ff.w1", "layers.1.attn.ov"], laser_rhos=[0.0, 0.5, 1.0])
    specs = m.variant_specs()
    assert specs["layers.0.ff.w2+layers.1.ff.w2+layers.1.ff.w1@rho0.5"]["ranks"] == {
        "layers.0.ff.w2": 4, "layers.1.ff.w2": 4, "layers.1.ff.w1": 4}
    assert specs["layers.1.attn.ov@rho0"]["ranks"] == {"layers.1.attn.ov": 0}
    assert "layers.1.attn.ov@rho1" not in specs  # rho 1 keeps every rank: the full model
