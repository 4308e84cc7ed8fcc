"""attn_q / attn_k / attn_v as LASER roles on tiny random GPT-NeoX (query_key_value interleaved per head), Llama
(separate projections) and Phi-3 (qkv_proj contiguous, grouped key/value heads): the rows a role names are the ones the
attention reads as queries, keys or values (checked by what zeroing them does), a truncation is the float64 best rank-k
approximation of exactly those rows, and every other row stays bit for bit."""
import pytest
import torch

from lightning_modules.laser import matrix_of, parameter_of, row_index, truncated
from lightning_modules.pretrained import LaserSpec, laser_ranks, role_matrices

ROLES = ("attn_q", "attn_k", "attn_v")


def tiny(arch: str):
    from transformers import AutoModelForCausalLM, GPTNeoXConfig, LlamaConfig, Phi3Config

    common = dict(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=64, pad_token_id=0)
    config = {"gpt_neox": lambda: GPTNeoXConfig(**common),
              "llama": lambda: LlamaConfig(**common, num_key_value_heads=2),
              "phi3": lambda: Phi3Config(**common, num_key_value_heads=2)}[arch]()
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float64).eval()


def layer0_attention(model):
    return model.gpt_neox.layers[0].attention if model.config.model_type == "gpt_neox" else model.model.layers[0].self_attn


def attention_out(model, tokens):
    """Layer 0's attention output at every position."""
    seen = []
    hook = layer0_attention(model).register_forward_hook(lambda m, a, out: seen.append(out[0]))
    try:
        model(tokens)
    finally:
        hook.remove()
    return seen[0]


def zeroed(model, name):
    """A copy of the model with the rows a target names (and their bias) set to zero."""
    import copy

    other = copy.deepcopy(model)
    params = dict(other.named_parameters())
    weight = params[parameter_of(name)]
    rows = row_index(name, weight.shape[0])
    rows = torch.arange(weight.shape[0]) if rows is None else rows
    with torch.no_grad():
        weight[rows] = 0
        bias = params.get(parameter_of(name).removesuffix("weight") + "bias")
        if bias is not None:
            bias[rows] = 0
    return other


@pytest.mark.parametrize("arch", ["gpt_neox", "llama", "phi3"])
def test_the_rows_of_each_role_are_what_attention_reads_as_queries_keys_and_values(arch):
    model = tiny(arch)
    targets = {role: next(iter(role_matrices(model, [LaserSpec(role, 1.0, 0)]))) for role in ROLES}
    tokens = torch.randint(1, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    out = {role: attention_out(zeroed(model, t), tokens) for role, t in targets.items()}
    # no queries or no keys: every score is 0, so attention is uniform over the past either way
    assert torch.allclose(out["attn_q"], out["attn_k"], atol=1e-12)
    assert not torch.allclose(out["attn_q"], attention_out(model, tokens), atol=1e-6)
    # no values: the attention writes only its output bias (or nothing)
    o_bias = layer0_attention(model).dense.bias if arch == "gpt_neox" else None
    assert torch.allclose(out["attn_v"], (o_bias if o_bias is not None else 0) * torch.ones_like(out["attn_v"]), atol=1e-12)
    # the three row sets of a fused matrix are disjoint and cover it
    fused = {parameter_of(t) for t in targets.values()}
    if arch != "llama":
        (param,) = fused
        n = dict(model.named_parameters())[param].shape[0]
        rows = torch.cat([row_index(t, n) for t in targets.values()])
        assert sorted(rows.tolist()) == list(range(n))
    else:
        assert len(fused) == 3


@pytest.mark.parametrize("arch", ["gpt_neox", "phi3"])
def test_a_fused_role_is_the_best_low_rank_of_its_rows_and_leaves_the_rest_bit_for_bit(arch):
    model = tiny(arch)
    params = dict(model.named_parameters())
    before = {n: p.detach().clone() for n, p in params.items()}
    ranks = laser_ranks(model, [LaserSpec("attn_k", 0.25, 1), LaserSpec("attn_v", 0.0, 1), LaserSpec("attn_q", 0.1, 0)])
    assert len(ranks) == 3 and len({parameter_of(n) for n in ranks}) == 2
    with truncated(model, ranks):
        for name, k in ranks.items():
            weight = before[parameter_of(name)]
            rows = row_index(name, weight.shape[0])
            u, s, vh = torch.linalg.svd(weight[rows], full_matrices=False)  # brute force, float64
            assert torch.allclose(params[parameter_of(name)][rows], (u[:, :k] * s[:k]) @ vh[:k], atol=1e-12)
            assert torch.allclose(matrix_of(model, name), (u[:, :k] * s[:k]) @ vh[:k], atol=1e-12)
        named = {parameter_of(n) for n in ranks}
        for param in named:  # rows no role of this variant names are untouched
            hit = torch.cat([row_index(n, before[param].shape[0]) for n in ranks if parameter_of(n) == param])
            rest = torch.ones(before[param].shape[0], dtype=torch.bool)
            rest[hit] = False
            assert torch.equal(params[param][rest], before[param][rest])
        assert all(torch.equal(p, before[n]) for n, p in params.items() if n not in named)
    assert all(torch.equal(p, before[n]) for n, p in params.items())  # restored bit for bit


def test_role_shapes_follow_the_heads():
    neox, phi3 = tiny("gpt_neox"), tiny("phi3")
    # GPT-NeoX: 4 heads of 8, rows [head][q|k|v][8]: the keys are rows 8..15 of every 24
    assert role_matrices(neox, [LaserSpec("attn_k", 1.0, 0)]) == {
        "gpt_neox.layers.0.attention.query_key_value.weight[8:16/24]": (32, 32)}
    # Phi-3: 4 query heads and 2 key/value heads of 8, contiguous: q 0..31, k 32..47, v 48..63
    assert role_matrices(phi3, [LaserSpec("attn_v", 1.0, 1)]) == {"model.layers.1.self_attn.qkv_proj.weight[48:64]": (16, 32)}
    with pytest.raises(ValueError, match="do not fit a matrix of 64 rows"):
        row_index("w[48:72]", 64)
