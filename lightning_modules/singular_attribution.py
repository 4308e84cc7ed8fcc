"""Singular-component attribution: which singular directions of a weight matrix carry an association.

For W = sum_i s_i u_i v_i^T (``laser.SVDFactors``: besides LASER the only code that decomposes a weight) and a logit
gap averaged over a set of positions (noisy recall: logit(noise) - logit(in-context answer) at scored triggers; hijack
prompts: logit(o) - logit(b) after the final q), each component i gets

- ``removal[i]``: the change of the gap when component i alone is removed (W - s_i u_i v_i^T), the rest of the network
  run on; batched over components (``torch.func.vmap`` over the block that holds W and the blocks after it, from
  that block's input, which no component changes), never one forward per component;
- ``direct[i]``: for a matrix that writes into the residual stream (``ff.w2``, ``attn.wo``, the output map
  ``attn.ov`` = W_O W_V of a single-head layer, ``laser.py``'s grammar) of a model without
  LayerNorm, its exact contribution through the direct path to the unembedding, (d . u_i) s_i (v_i . a) with a the
  matrix's input and d = unemb[plus] - unemb[minus]. The direct parts sum to the logit split of that layer
  (``attribution.logit_split``); where the output reaches the logits only linearly (the last layer's FF output, or
  its attention output when no FF follows), removal = -direct exactly.

From the removals, the predicted gap when keeping the top k components (LASER at rank k): gap + sum_{i >= k}
removal[i] (first order: the components' effects added), beside the measured gap at the LASER ranks of the run.
Removing the bottom j components is keeping the top r - j.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from lightning_modules.laser import OV, SVDFactors, is_product, matrix_of, truncated


@dataclass
class GapPositions:
    """Where a logit gap is measured: sequences ``tokens`` (B, T) fed to the model, and per scored position (a (B, T)
    boolean ``mask``) the token counted up (``plus``) and down (``minus``), both (B, T)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    plus: torch.Tensor
    minus: torch.Tensor

    @property
    def n(self) -> int:
        return int(self.mask.sum())


def gap_sums(logits: torch.Tensor, where: GapPositions) -> torch.Tensor:
    """Per sequence, the sum of logit(plus) - logit(minus) over its scored positions; ``logits`` (..., B, T, V)."""
    up = logits.gather(-1, where.plus.expand(*logits.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    down = logits.gather(-1, where.minus.expand(*logits.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    return ((up - down) * where.mask).sum(-1)


def gap_of(logits: torch.Tensor, where: GapPositions) -> torch.Tensor:
    """The mean of logit(plus) - logit(minus) over the scored positions; ``logits`` (..., B, T, V)."""
    return gap_sums(logits, where).sum(-1) / where.mask.sum()


def bootstrap_ratio(sums: torch.Tensor, counts: torch.Tensor, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """The 95% interval of sum(sums) / sum(counts) over sequences resampled with replacement (a mean over
    positions, bootstrapped over the sequences that hold them)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(sums), (n, len(sums)), generator=g)
    stats = sums.double().cpu()[idx].sum(1) / counts.double().cpu()[idx].sum(1).clamp_min(1)
    lo, hi = torch.quantile(stats, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return lo, hi


@dataclass
class ComponentAttribution:
    matrix: str
    singular_values: list[float]
    gap: float  # the full model's mean gap
    removal: list[float]  # change of the gap when component i alone is removed
    direct: list[float] | None  # exact direct-path contribution of component i (None: W does not write the stream)
    n_positions: int
    measured: dict[int, float] = field(default_factory=dict)  # rank kept -> the gap measured at that rank
    # per sequence: the removals' gap sums (r, B), and how many scored positions each sequence holds (B,)
    removal_sums: torch.Tensor | None = None
    counts: torch.Tensor | None = None

    def split_interval(self, k: int, n: int = 1000) -> dict[str, list[float]]:
        """95% bootstrap intervals (over sequences) of what the top k components and the rest add to the gap."""
        top = -self.removal_sums[:k].sum(0)
        tail = -self.removal_sums[k:].sum(0)
        return {"top_gap_ci": list(bootstrap_ratio(top, self.counts, n)),
                "tail_gap_ci": list(bootstrap_ratio(tail, self.counts, n))}

    def predicted_keep_top(self, k: int) -> float:
        """The gap with the top k components kept, from the single-component removals (added)."""
        return self.gap + sum(self.removal[k:])

    def as_dict(self) -> dict[str, Any]:
        r = len(self.singular_values)
        return {"matrix": self.matrix, "singular_values": self.singular_values, "gap": self.gap,
                "removal": self.removal, "direct": self.direct, "n_positions": self.n_positions,
                "predicted_keep_top": [self.predicted_keep_top(k) for k in range(r + 1)],
                "measured": {str(k): v for k, v in self.measured.items()}}


def direct_components(u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, a: torch.Tensor, d: torch.Tensor,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per component i of W = sum s_i u_i v_i^T, the mean over positions of (d . u_i) s_i (v_i . a): its share of
    d . (W a) for inputs ``a`` (..., n) and read directions ``d`` (..., m) (the unembedding difference, through a
    linearised final norm where there is one); ``mask`` (...): the positions counted (all by default)."""
    along_u = d @ u  # (..., r): d . u_i
    coeff = (a @ vh.T) * s  # (..., r): s_i (v_i . a)
    if mask is None:
        return (along_u * coeff).reshape(-1, len(s)).mean(0)
    return (along_u * coeff * mask[..., None]).reshape(-1, len(s)).sum(0) / mask.sum()


def _block_of(name: str) -> tuple[int, str]:
    """``layers.1.ff.w2`` -> (1, ``ff.w2``)."""
    parts = name.split(".")
    if parts[0] != "layers" or len(parts) < 3:
        raise ValueError(f"singular attribution covers the blocks' matrices (layers.<i>.<part>), got {name!r}")
    return int(parts[1]), ".".join(parts[2:])


def _block_input(net: nn.Module, layer: int, tokens: torch.Tensor) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    hook = net.layers[layer].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    try:
        net(tokens)
    finally:
        hook.remove()
    return seen[0]


def _replacement(local: str, weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """The block's parameters that stand for matrix ``local`` set to ``weight``: for the output map ``attn.ov``
    (single head) W_V = the map and W_O = I, which gives the block the same output as W_O W_V = the map."""
    if local == OV:
        return {"attn.wv": weight, "attn.wo": torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)}
    return {local: weight}


def _rest(net: nn.Module, layer: int, local: str, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The logits from block ``layer``'s input ``x`` with that block's matrix ``local`` replaced by ``weight``."""
    x = functional_call(net.layers[layer], _replacement(local, weight), (x,))
    for block in net.layers[layer + 1:]:
        x = block(x)
    return F.linear(net.norm_f(x), net.unemb)


def _stream_input(net: nn.Module, layer: int, local: str, x: torch.Tensor) -> torch.Tensor | None:
    """What a stream-writing matrix multiplies, from its block's input (None for other matrices)."""
    block = net.layers[layer]
    if local == "ff.w2":
        mid = x + block.attn(block.norm1(x))
        h = block.norm2(mid)
        return block.ff.act(F.linear(h, block.ff.w1)) if block.ff.w1 is not None else h
    if local == "attn.wo":
        return block.attn.mix(block.norm1(x))
    if local == OV:  # the map acts on the attention-weighted inputs themselves: the attention with W_V = W_O = I
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
        return functional_call(block.attn, {"wv": eye, "wo": eye}, (block.norm1(x),))
    return None


@torch.no_grad()
def attribute(net: nn.Module, name: str, where: GapPositions, ranks: list[int] = (), chunk: int = 8,
              factors: SVDFactors | None = None) -> ComponentAttribution:
    """The attribution of matrix ``name`` (a parameter of ``net``, e.g. ``layers.1.ff.w2``) to the gap at
    ``where``; ``ranks``: LASER ranks whose gap is measured too (each one forward)."""
    layer, local = _block_of(name)
    weight = matrix_of(net, name).detach() if is_product(name) else dict(net.named_parameters())[name]
    f = factors or SVDFactors.of(weight)
    x = _block_input(net, layer, where.tokens)
    counts = where.mask.sum(-1)
    full_sums = gap_sums(_rest(net, layer, local, weight, x), where)
    full = float(full_sums.sum() / counts.sum())
    r = f.full_rank
    u, s, vh = f.u.to(weight.dtype), f.s.to(weight.dtype), f.vh.to(weight.dtype)
    batched = vmap(lambda w: gap_sums(_rest(net, layer, local, w, x), where))
    parts = []
    with sdpa_kernel(SDPBackend.MATH):  # the fused kernels have no batching rule
        for start in range(0, r, chunk):
            idx = torch.arange(start, min(r, start + chunk), device=weight.device)
            deltas = (u[:, idx].T[:, :, None] * s[idx, None, None]) * vh[idx][:, None, :]  # (c, m, n)
            parts.append(batched(weight[None] - deltas) - full_sums)
    removal_sums = torch.cat(parts) if parts else full_sums.new_zeros(0, len(full_sums))
    removal = (removal_sums.sum(1) / counts.sum()).tolist()
    direct = None
    a = _stream_input(net, layer, local, x)
    if a is not None and not getattr(net.cfg, "layer_norm", False):
        d = net.unemb[where.plus] - net.unemb[where.minus]  # (B, T, dim)
        direct = direct_components(u, s, vh, a, d, where.mask).tolist()
    measured = {}
    for k in sorted(set(ranks)):
        with truncated(net, {name: k}, {name: f}):
            measured[k] = float(gap_of(net(where.tokens), where))
    return ComponentAttribution(name, f.s.tolist(), full, removal, direct, where.n, measured, removal_sums.cpu(),
                                counts.cpu())


def noise_gap_positions(batch: dict[str, torch.Tensor], noise_id: int) -> GapPositions:
    """Noisy recall: logit(noise) - logit(in-context answer) at the scored trigger positions of a sampled batch."""
    tokens, answer = batch["tokens"][:, :-1], batch["answer"]  # answer and mask are per predicted position (B, T)
    mask = batch["mask"] & (answer >= 0)
    return GapPositions(tokens, mask, torch.full_like(tokens, noise_id), answer.clamp_min(0))


def last_position_gap(tokens: torch.Tensor, plus: torch.Tensor, minus: torch.Tensor) -> GapPositions:
    """Prompts: logit(plus) - logit(minus) at the last position (hijack: plus o, minus b), one pair per prompt."""
    b, t = tokens.shape
    mask = torch.zeros(b, t, dtype=torch.bool, device=tokens.device)
    mask[:, -1] = True
    return GapPositions(tokens, mask, plus[:, None].expand(b, t), minus[:, None].expand(b, t))
