"""Attribution of log P(answer) - log P(" the") on tiny random GPT-NeoX, Llama and Phi-3 models in float64, against brute
force: the per-layer parts sum to the model's gap and match the residual stream's layer-by-layer differences; each
singular component's removal, first-order and direct-path effects match an explicit edit of the weights."""
import pytest
import torch

from lightning_modules.laser import SVDFactors, matrix_of, parameter_of, row_index, truncated
from lightning_modules.pretrained import LaserSpec, decoder_of, role_matrices
from lightning_modules.pretrained_attribution import (PromptBatch, component_effects, layer_parts, predict_variants)
from tests.lightning_modules.test_attention_roles import tiny

ARCHS = ("gpt_neox", "llama", "phi3")


def batch(n=3, t=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return PromptBatch(torch.randint(1, 50, (n, t), generator=g), torch.randint(1, 50, (n,), generator=g),
                       torch.randint(1, 50, (n,), generator=g))


def gap(model, b):
    logp = model(input_ids=b.input_ids).logits[:, -1].log_softmax(-1)
    rows = torch.arange(len(b.plus))
    return logp[rows, b.plus] - logp[rows, b.minus]  # log P(answer) - log P(generic), from the softmax


@pytest.mark.parametrize("arch", ARCHS)
def test_layer_parts_sum_to_the_gap_and_follow_the_residual_stream(arch):
    model, b = tiny(arch), batch()
    parts = layer_parts(model, b)
    total = parts.pop("total")
    assert torch.allclose(total, gap(model, b).detach(), atol=1e-10)
    assert set(parts) == {"embed", "bias"} | {f"layers.{i}.{p}" for i in range(2) for p in ("attn", "mlp")}
    assert (sum(parts.values()) - total).abs().max() < 1e-4  # exact up to the norm's float32 cast
    # brute force: layer i's attention + MLP shares are the read direction times the stream's change across layer i
    hidden = model(input_ids=b.input_ids, output_hidden_states=True).hidden_states
    dec = decoder_of(model)
    seen = []
    hook = dec.final_norm.register_forward_pre_hook(lambda m, args: seen.append(args[0][:, -1]))
    model(input_ids=b.input_ids)
    hook.remove()
    x = seen[0]
    w, eps = dec.final_norm.weight, getattr(dec.final_norm, "variance_epsilon", getattr(dec.final_norm, "eps", None))
    head = model.get_output_embeddings().weight
    d = head[b.plus] - head[b.minus]
    if arch == "gpt_neox":  # LayerNorm: centre, then scale
        sd = torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps)
        read = lambda z: ((z - z.mean(-1, keepdim=True)) * w / sd * d).sum(-1)  # noqa: E731
    else:
        rms = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        read = lambda z: (z * w / rms * d).sum(-1)  # noqa: E731
    assert torch.allclose(parts["embed"], read(hidden[0][:, -1]), atol=1e-10)
    assert torch.allclose(parts["layers.0.attn"] + parts["layers.0.mlp"], read(hidden[1][:, -1] - hidden[0][:, -1]), atol=1e-10)
    assert torch.allclose(parts["layers.1.attn"] + parts["layers.1.mlp"], read(x - hidden[1][:, -1]), atol=1e-10)


def targets_of(model, arch):
    specs = [LaserSpec("mlp_out", 1.0, 1), LaserSpec("attn_out", 1.0, 0), LaserSpec("attn_k", 1.0, 1), LaserSpec("mlp_in", 1.0, 0)]
    return list(role_matrices(model, specs))


def set_rows(model, target, new):
    weight = dict(model.named_parameters())[parameter_of(target)]
    rows = row_index(target, weight.shape[0])
    with torch.no_grad():
        if rows is None:
            weight.copy_(new)
        else:
            weight[rows] = new


@pytest.mark.parametrize("arch", ARCHS)
def test_component_effects_match_explicit_edits_of_the_weights(arch):
    model = tiny(arch)
    batches = [batch(3, 6, 0), batch(2, 4, 1)]
    targets = targets_of(model, arch)
    factors = {t: SVDFactors.of(matrix_of(model, t).detach()) for t in targets}
    fx = component_effects(model, targets, factors, batches, methods=("direct", "linear", "removal"), chunk=5)
    full = torch.cat([gap(model, b) for b in batches]).detach()
    assert fx.n == 5 and fx.gap == pytest.approx(float(full.mean()), abs=1e-10)
    writers = {t for t in targets if ".mlp.down_proj" in t or "dense_4h_to_h" in t or "o_proj" in t or "attention.dense" in t}
    assert set(fx.effects["direct"]) == writers and set(fx.effects["removal"]) == set(targets)
    for t in targets:
        f, original = factors[t], matrix_of(model, t).detach().clone()
        for i in (0, 3, f.full_rank - 1):
            component = f.s[i] * torch.outer(f.u[:, i], f.vh[i])
            set_rows(model, t, original - component)  # brute force: the component removed from the weights
            removed = torch.cat([gap(model, b) for b in batches]).detach()
            # central difference (Llama's and Phi-3's RMSNorm compute in float32: a step of 1e-2 outruns its rounding)
            eps, nudged = 1e-2, []
            for sign in (1, -1):
                set_rows(model, t, original - sign * eps * component)
                nudged.append(torch.cat([gap(model, b) for b in batches]).detach())
            set_rows(model, t, original)
            assert fx.effects["removal"][t][i] == pytest.approx(float((removed - full).mean()), abs=1e-9), (t, i)
            slope = float((nudged[0] - nudged[1]).mean()) / (2 * eps)
            assert fx.effects["linear"][t][i] == pytest.approx(slope, rel=1e-3, abs=1e-6), (t, i)
    # the direct path of a layer's MLP output: its components' shares add up to that layer's MLP share (less its bias)
    mlp_out = next(t for t in targets if "4h_to_h" in t or "down_proj" in t)
    shares = torch.cat([layer_parts(model, b)["layers.1.mlp"] for b in batches]).mean()
    if arch == "gpt_neox":  # its output bias (zero at a random initialisation) would have its own share
        assert not model.gpt_neox.layers[1].mlp.dense_4h_to_h.bias.any()
    assert float(-fx.effects["direct"][mlp_out].sum()) == pytest.approx(float(shares), abs=1e-9)


def test_a_variant_removing_one_component_is_predicted_exactly_by_removal():
    model = tiny("gpt_neox")
    b = [batch(4, 5, 2)]
    targets = targets_of(model, "gpt_neox")
    factors = {t: SVDFactors.of(matrix_of(model, t).detach()) for t in targets}
    fx = component_effects(model, targets, factors, b, methods=("removal", "linear"))
    full = gap(model, b[0]).detach().mean()
    for t in targets:
        r = factors[t].full_rank
        variants = {"last_one": {t: r - 1}, "half": {t: r // 2}}
        predicted = predict_variants(fx, variants, "removal")
        with truncated(model, {t: r - 1}, factors):  # LASER at rank r - 1 removes exactly the last component
            measured = float(gap(model, b[0]).detach().mean() - full)
        assert predicted["last_one"] == pytest.approx(measured, abs=1e-9)
        assert predicted["half"] == pytest.approx(float(fx.effects["removal"][t][r // 2:].sum()))
    both = {t: 2 for t in targets[:2]}
    assert predict_variants(fx, {"v": both}, "direct") == {"v": None}  # direct was not computed
    assert predict_variants(fx, {"v": both}, "linear")["v"] == pytest.approx(
        sum(float(fx.effects["linear"][t][2:].sum()) for t in both))
