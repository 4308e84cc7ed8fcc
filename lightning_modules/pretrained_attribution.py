"""Where a pretrained Hugging Face causal LM keeps log P(answer) - log P(" the"): per layer, and per singular direction.

The gap at a prompt's last position is a logit difference (the softmax's normaliser cancels): (W_U[answer] -
W_U[generic]) . norm(x) with x the final residual stream. The final norm is linearised at the prompt by freezing its
scale (RMSNorm: w * x / rms(x); LayerNorm: w * (x - mean x) / std(x) + b, the usual direct logit attribution): at x
itself that is the norm exactly, and it is linear, so every part of the stream (the embedding, each layer's attention
output and MLP output, which sum to x) gets a share and the shares plus the norm's bias sum to the gap exactly.

- ``layer_parts``: those shares per prompt (the direct logit attribution of each layer's attention and MLP).
- ``component_effects``: per singular component s_i u_i v_i^T of a LASER target (a matrix or a fused matrix's rows,
  ``laser.py``'s grammar), the change of the gap when it alone is removed, three ways:
  ``direct`` (exact on the direct path through the linearised norm, for matrices that write the stream: mlp_out,
  attn_out), ``linear`` (every path, first order: -s_i u_i^T G v_i with G the gradient of the gap by the matrix, one
  backward pass for all matrices) and ``removal`` (exact: every component removed, batched by replicating the prompts;
  one forward per component, so for small sets).
- ``predict_variants``: a LASER variant keeps the top k of each of its matrices; its predicted change of the gap is the
  sum of the removed components' effects (first order in the components, as in ``singular_attribution``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

import torch
from torch import nn

from lightning_modules.laser import SVDFactors, is_product, parameter_of, row_index
from lightning_modules.pretrained import decoder_of, stream_writers
from lightning_modules.singular_attribution import direct_components

METHODS = ("direct", "linear", "removal")


@dataclass
class PromptBatch:
    """Prompts of one token length (B, T), the token counted up (``plus``, the answer) and down (``minus``, the generic
    token) at the last position, both (B,)."""

    input_ids: torch.Tensor
    plus: torch.Tensor
    minus: torch.Tensor


class NormLinearisation:
    """The final norm at the final streams ``x`` (B, d) with its scale frozen: linear in its input, and equal to the
    norm at x itself once ``bias`` is added. Read through a direction d: ``read_direction(d) . z``."""

    def __init__(self, norm: nn.Module, x: torch.Tensor):
        self.center = isinstance(norm, nn.LayerNorm)
        eps = norm.eps if self.center else getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
        if eps is None or getattr(norm, "weight", None) is None:
            raise ValueError(f"the final norm {type(norm).__name__} is neither a LayerNorm nor an RMSNorm with a weight")
        x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        centred = x - x.mean(-1, keepdim=True) if self.center else x
        self.scale = norm.weight.to(x.dtype) / torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + eps)  # (B, d)
        self.bias = norm.bias.to(x.dtype) if self.center and norm.bias is not None else None

    def read_direction(self, d: torch.Tensor) -> torch.Tensor:
        """The direction r (B, d) with r . z = d . (the frozen norm of z, bias aside) for every z (its transpose)."""
        r = d.to(self.scale.dtype) * self.scale
        return r - r.mean(-1, keepdim=True) if self.center else r


def _first(out):
    return out[0] if isinstance(out, tuple) else out


@contextlib.contextmanager
def _recording(modules: Mapping[str, nn.Module], inputs: bool = False) -> Iterator[dict]:
    """Hooks keeping each named module's output (or its first input) at the last position, (B, d)."""
    seen: dict[str, torch.Tensor] = {}

    def keep(name):
        if inputs:
            return lambda m, args, kwargs: seen.__setitem__(name, (args[0] if args else kwargs["hidden_states"])[:, -1])
        return lambda m, args, out: seen.__setitem__(name, _first(out)[:, -1])

    hooks = [m.register_forward_pre_hook(keep(n), with_kwargs=True) if inputs else m.register_forward_hook(keep(n))
             for n, m in modules.items()]
    try:
        yield seen
    finally:
        for h in hooks:
            h.remove()


def _direction(model: nn.Module, batch: PromptBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """W_U[plus] - W_U[minus] (B, d), and the unembedding bias's difference (B,) (0 without one)."""
    head = model.get_output_embeddings()
    d = head.weight[batch.plus] - head.weight[batch.minus]
    b = head.bias[batch.plus] - head.bias[batch.minus] if getattr(head, "bias", None) is not None else torch.zeros_like(d[:, 0])
    return d, b


def _gap(logits: torch.Tensor, batch: PromptBatch) -> torch.Tensor:
    rows = torch.arange(len(batch.plus), device=logits.device)
    last = logits[:, -1]
    return last[rows, batch.plus] - last[rows, batch.minus]


@contextlib.contextmanager
def parts_recorder(model: nn.Module) -> Iterator[dict]:
    """While open, every forward records the last position's embedding (the first layer's input), each layer's
    attention and MLP output, and the final stream (the final norm's input), for ``split_gap``."""
    dec = decoder_of(model)
    outputs = {f"layers.{i}.{part}": getattr(layer, attr) for i, layer in enumerate(dec.layers)
               for part, attr in (("attn", dec.attn), ("mlp", dec.mlp))}
    with _recording(outputs) as parts, _recording({"embed": dec.layers[0], "final": dec.final_norm}, inputs=True) as ends:
        yield {"parts": parts, "ends": ends, "decoder": dec}


def split_gap(model: nn.Module, recorded: dict, batch: PromptBatch, logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per prompt (B,): each part's share of the gap (``embed``, ``layers.<i>.attn``, ``layers.<i>.mlp``, ``bias``:
    the final norm's and the unembedding's bias) and ``total``, the model's own gap from ``logits`` (B, T or 1, V)."""
    dec = recorded["decoder"]
    lin = NormLinearisation(dec.final_norm, recorded["ends"]["final"])
    d, head_bias = _direction(model, batch)
    r = lin.read_direction(d)
    out = {"embed": (r * recorded["ends"]["embed"].to(r.dtype)).sum(-1)}
    out |= {name: (r * x.to(r.dtype)).sum(-1) for name, x in recorded["parts"].items()}
    out["bias"] = head_bias.to(r.dtype) + ((d.to(r.dtype) * lin.bias).sum(-1) if lin.bias is not None else 0)
    out["total"] = _gap(logits, batch).to(r.dtype)
    return out


@torch.no_grad()
def layer_parts(model: nn.Module, batch: PromptBatch) -> dict[str, torch.Tensor]:
    """``split_gap`` of one forward pass over the batch."""
    with parts_recorder(model) as recorded:
        logits = model(input_ids=batch.input_ids, logits_to_keep=1).logits
    return split_gap(model, recorded, batch, logits)


@dataclass
class Effects:
    """Per target matrix: its singular values and, per method, the mean change of the gap when each component alone
    is removed (over ``n`` prompts)."""

    singular_values: dict[str, torch.Tensor]
    effects: dict[str, dict[str, torch.Tensor]]  # method -> target -> (r,)
    gap: float  # the full model's mean gap
    n: int


def _module_of(model: nn.Module, target: str) -> nn.Module:
    return model.get_submodule(parameter_of(target).removesuffix(".weight"))


def component_effects(model: nn.Module, targets: Iterable[str], factors: Mapping[str, SVDFactors],
                      batches: list[PromptBatch], methods: Iterable[str] = ("direct", "linear"),
                      chunk: int = 16) -> Effects:
    """The change of the mean gap over ``batches`` when each singular component of each target alone is removed;
    ``factors``: the targets' SVDs (``laser.factorise``, shared with the LASER variants). ``direct`` covers the targets
    whose output is the residual stream's (a decoder layer's attention or MLP output matrix)."""
    targets = list(dict.fromkeys(targets))
    methods = list(methods)
    if bad := [m for m in methods if m not in METHODS]:
        raise ValueError(f"attribution methods must be among {list(METHODS)}, got {bad}")
    if bad := [t for t in targets if is_product(t)]:
        raise ValueError(f"attribution of pretrained models covers matrices and row sets, not products: {bad}")
    dec = decoder_of(model)
    writers = set(stream_writers(model))
    # what the direct path reads: each stream-writing target's input and the final stream (no hooks without it)
    inputs_of = {t: _module_of(model, t) for t in targets if t in writers} if "direct" in methods else {}
    read = {"final": dec.final_norm} if "direct" in methods else {}
    params = dict(model.named_parameters())
    n = sum(len(b.plus) for b in batches)
    sums = {m: {t: torch.zeros(factors[t].full_rank, dtype=torch.float64) for t in targets} for m in methods}
    gap = 0.0
    wanted = list(dict.fromkeys(parameter_of(t) for t in targets))
    grads = {p: torch.zeros_like(params[p], dtype=torch.float64) for p in wanted} if "linear" in methods else {}
    for batch in batches:
        with _recording(inputs_of, inputs=True) as seen, _recording(read, inputs=True) as ends:
            if "linear" in methods:
                with torch.enable_grad():
                    for p in wanted:
                        params[p].requires_grad_(True)
                    try:
                        g = _gap(model(input_ids=batch.input_ids, logits_to_keep=1).logits, batch)
                        grad = torch.autograd.grad(g.sum(), [params[p] for p in wanted])
                    finally:
                        for p in wanted:
                            params[p].requires_grad_(False)
                for p, gp in zip(wanted, grad):
                    grads[p] += gp.double()
                g = g.detach()
            else:
                with torch.no_grad():
                    g = _gap(model(input_ids=batch.input_ids, logits_to_keep=1).logits, batch)
        gap += float(g.double().sum())
        if "direct" in methods:
            lin = NormLinearisation(dec.final_norm, ends["final"].detach())
            r = lin.read_direction(_direction(model, batch)[0].detach())  # (B, d)
            for t in inputs_of:
                f = factors[t]
                a = seen[t].detach().to(f.u.dtype)
                sums["direct"][t] -= direct_components(f.u, f.s, f.vh, a, r.to(f.u.dtype)).double() * len(batch.plus)
        if "removal" in methods:
            for t in targets:
                sums["removal"][t] += _removal_sums(model, t, factors[t], batch, g, chunk)
    if "linear" in methods:
        for t in targets:
            f, grad = factors[t], grads[parameter_of(t)]
            rows = row_index(t, grad.shape[0])
            grad = grad if rows is None else grad[rows.to(grad.device)]
            # -s_i u_i^T G v_i: removing component i moves W by -s_i u_i v_i^T
            sums["linear"][t] = -(f.s.double() * ((f.u.double().T @ grad.cpu()) * f.vh.double()).sum(-1))
    effects = {m: {t: v / n for t, v in by_target.items() if m != "direct" or t in writers} for m, by_target in sums.items()}
    return Effects({t: factors[t].s.double() for t in targets}, effects, gap / n, n)


@torch.no_grad()
def _removal_sums(model: nn.Module, target: str, f: SVDFactors, batch: PromptBatch, full: torch.Tensor,
                  chunk: int) -> torch.Tensor:
    """Per component, the sum over the batch of the gap's change when it alone is removed: the prompts replicated once
    per component of a chunk, and the target's output in replica j lowered by s_j u_j (v_j . input)."""
    module = _module_of(model, target)
    weight = dict(model.named_parameters())[parameter_of(target)]
    rows = row_index(target, weight.shape[0])
    rows = slice(None) if rows is None else rows.to(weight.device)
    b = len(batch.plus)
    out = []
    for start in range(0, f.full_rank, chunk):
        idx = torch.arange(start, min(f.full_rank, start + chunk))
        c = len(idx)
        u = (f.u[:, idx] * f.s[idx]).T.to(weight.dtype)  # (c, m)
        vh = f.vh[idx].to(weight.dtype)  # (c, n)

        def lower(m, args, y):
            a = args[0].view(c, b, *args[0].shape[1:])  # (c, B, T, n)
            coeff = torch.einsum("cbtn,cn->cbt", a, vh)
            y = y.clone().view(c, b, *y.shape[1:])
            y[..., rows] -= coeff[..., None] * u[:, None, None, :]
            return y.view(c * b, *y.shape[2:])

        hook = module.register_forward_hook(lower)
        try:
            logits = model(input_ids=batch.input_ids.repeat(c, 1), logits_to_keep=1).logits
        finally:
            hook.remove()
        rep = PromptBatch(batch.input_ids, batch.plus.repeat(c), batch.minus.repeat(c))
        out.append((_gap(logits, rep).view(c, b) - full[None]).double().sum(1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def predict_variants(effects: Effects, variants: Mapping[str, Mapping[str, int]], method: str) -> dict[str, float | None]:
    """Per variant ({target: rank kept}), the predicted change of the mean gap: the sum of its removed components'
    effects; None where the method does not cover one of its matrices."""
    by_target = effects.effects.get(method, {})
    out: dict[str, float | None] = {}
    for name, ranks in variants.items():
        if any(t not in by_target for t in ranks):
            out[name] = None
            continue
        out[name] = float(sum(by_target[t][k:].sum() for t, k in ranks.items()))
    return out
