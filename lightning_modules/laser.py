"""LASER: replace a weight matrix by its best low-rank approximation (Eckart-Young, via SVD).

This is the only module that calls an SVD. Everything else (the validation sweep, callbacks, pretrained-model
evaluation) goes through `truncate`, `truncate_`, `SVDFactors`, `factorise`, `truncated` or `singular_values`.
A target is a matrix, several matrices at once (``a+b``), a layer's output map W_O W_V (``layers.<i>.attn.ov``), or
a set of rows of a fused matrix (``<param>[a:b]``, or ``<param>[a:b/p]``: rows a..b-1 of every period of p rows, as
GPT-NeoX interleaves its query, key and value rows per head), truncated alone while the other rows stay bit for bit:
``target_groups`` and ``row_index`` read that grammar, the one place that does.
"""
from __future__ import annotations

import contextlib
import fnmatch
import math
import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

import torch
from torch import nn


def rank_for(shape: tuple[int, ...], rho: float, min_rank: int = 0) -> int:
    """Rank kept for a fraction `rho` in [0, 1] of the full rank: floor(rho * min(m, n)).

    ``min_rank=1`` is the pretrained-model rule of LASER (Sharma et al.): any rho > 0 keeps at least one direction,
    and only rho = 0 removes the matrix.
    """
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must be in [0, 1], got {rho}")
    if len(shape) != 2:
        raise ValueError(f"LASER applies to matrices, got a tensor of shape {tuple(shape)}")
    # the small epsilon keeps e.g. 0.3 * 10 = 2.9999999999999996 from flooring to 2
    k = int(math.floor(rho * min(shape) + 1e-9))
    return max(min_rank, k) if rho > 0 else 0


@dataclass
class SVDFactors:
    """Thin SVD of one matrix, computed once and reused for every rank asked of it."""

    u: torch.Tensor
    s: torch.Tensor
    vh: torch.Tensor
    dtype: torch.dtype

    @classmethod
    def of(cls, weight: torch.Tensor, top: int | None = None, niter: int = 4) -> "SVDFactors":
        """Exact thin SVD; or, with ``top=k``, the top k triplets by randomized SVD (``torch.svd_lowrank``,
        Halko et al.), for large matrices where only a small rank is kept."""
        work = _svd_input(weight)
        if top is None:
            u, s, vh = torch.linalg.svd(work, full_matrices=False)
        elif top == 0:
            u, s, vh = work.new_zeros(work.shape[0], 0), work.new_zeros(0), work.new_zeros(0, work.shape[1])
        else:
            q = min(top + 10, min(work.shape))  # oversampling makes the top-k estimate accurate
            u, s, v = torch.svd_lowrank(work, q=q, niter=niter)
            u, s, vh = u[:, :top], s[:top], v[:, :top].T
        return cls(u, s, vh, weight.dtype)

    @property
    def full_rank(self) -> int:
        return self.s.numel()

    def reconstruct(self, rank: int) -> torch.Tensor:
        if not 0 <= rank <= self.full_rank:
            raise ValueError(f"rank must be in [0, {self.full_rank}] (the triplets computed), got {rank}")
        return ((self.u[:, :rank] * self.s[:rank]) @ self.vh[:rank]).to(self.dtype)


def _svd_input(weight: torch.Tensor) -> torch.Tensor:
    """The detached weight in float32 at least: half-precision SVD is unsupported or inaccurate."""
    w = weight.detach()
    return w.float() if w.dtype in (torch.float16, torch.bfloat16) else w


# --- what a LASER target may name: a matrix, several at once, or a layer's output map W_O W_V ---------------------
JOIN = "+"  # "layers.1.ff.w1+layers.1.ff.w2": both matrices of a variant, at the same rho
OV = "attn.ov"  # "layers.1.attn.ov": the product W_O W_V of layer 1's attention, truncated as one map


def is_product(name: str) -> bool:
    return name.endswith("." + OV)


def product_parts(name: str) -> tuple[str, str]:
    """``layers.1.attn.ov`` -> (``layers.1.attn.wo``, ``layers.1.attn.wv``)."""
    base = name[: -len("ov")]
    return base + "wo", base + "wv"


ROWS = re.compile(r"^(?P<param>.+)\[(?P<a>\d+):(?P<b>\d+)(?:/(?P<p>\d+))?\]$")


def row_name(param: str, start: int, stop: int, period: int | None = None) -> str:
    """The target naming rows start..stop-1 of ``param`` (in every block of ``period`` rows, if given)."""
    return f"{param}[{start}:{stop}" + (f"/{period}" if period else "") + "]"


def parameter_of(name: str) -> str:
    """The parameter a (non-product) target lives in: ``x.weight[0:8/24]`` -> ``x.weight``."""
    m = ROWS.match(name)
    return m.group("param") if m else name


def row_index(name: str, n_rows: int) -> torch.Tensor | None:
    """The rows of its parameter that a row-set target names (None: the whole matrix), checked against ``n_rows``."""
    m = ROWS.match(name)
    if m is None:
        return None
    a, b = int(m.group("a")), int(m.group("b"))
    period = int(m.group("p") or n_rows)
    if not (0 <= a < b <= period and n_rows % period == 0):
        raise ValueError(f"LASER target {name!r}: rows {a}:{b} of every {period} do not fit a matrix of {n_rows} rows")
    return torch.cat([torch.arange(start + a, start + b) for start in range(0, n_rows, period)])


def matrix_of(module: nn.Module, name: str) -> torch.Tensor:
    """The matrix a name denotes: a 2-D parameter, the product W_O W_V for ``...attn.ov``, or a parameter's rows."""
    params = dict(module.named_parameters())
    if is_product(name):
        wo, wv = product_parts(name)
        return params[wo].detach() @ params[wv].detach()
    weight = params[parameter_of(name)]
    rows = row_index(name, weight.shape[0])
    return weight if rows is None else weight.detach()[rows.to(weight.device)]


def target_shapes(module: nn.Module, patterns: str | list[str]) -> dict[str, tuple[int, int]]:
    """Like ``select_parameters`` (globs, a pattern matching nothing is an error), plus ``<layer>.attn.ov`` names
    (single-head attention: the product's rank is the model's width); {name: shape}."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    patterns = [part.strip() for p in patterns for part in p.split(JOIN)]
    out: dict[str, tuple[int, int]] = {}
    plain = [p for p in patterns if not is_product(p)]
    if plain:
        out |= {n: tuple(p.shape) for n, p in select_parameters(module, plain).items()}
    params = dict(module.named_parameters())
    for pattern in (p for p in patterns if is_product(p)):
        hits = [n[: -len("wo")] + "ov" for n in params if fnmatch.fnmatchcase(n[: -len("wo")] + "ov", pattern)
                and n.endswith(".attn.wo") and n[: -len("wo")] + "wv" in params]
        if not hits:
            raise ValueError(f"LASER target {pattern!r} matches no attention layer's W_O W_V (e.g. layers.1.attn.ov)")
        for name in hits:
            attn = module.get_submodule(name[: -len(".ov")])
            if getattr(attn, "n_heads", 1) != 1:
                raise ValueError(f"LASER target {name}: the W_O W_V product is one map only with one head "
                                 f"(model.n_heads is {attn.n_heads}); truncate attn.wv or attn.wo instead")
            out[name] = tuple((params[name[: -len("ov")] + "wo"].shape[0], params[name[: -len("ov")] + "wv"].shape[1]))
    return out


def target_groups(module: nn.Module, targets: list[str]) -> list[tuple[str, list[str]]]:
    """The variants' matrix groups a target list makes: each matrix a glob matches is its own group (one variant
    each), a ``+``-joined target is one group (all its matrices in one variant). [(group label, [names])]."""
    out = []
    for target in targets:
        if JOIN in target:
            names = [n for part in target.split(JOIN) for n in target_shapes(module, part.strip())]
            out.append((JOIN.join(names), list(dict.fromkeys(names))))
        else:
            out += [(n, [n]) for n in target_shapes(module, target)]
    return out


def factorise(module: nn.Module, variants: Iterable[Mapping[str, int]], randomized: bool = False) -> dict[str, SVDFactors]:
    """One factorisation per matrix that any variant ({name: rank}) truncates, so all the variants' ranks of a
    matrix share one SVD; ``randomized`` computes only the top directions the largest requested rank needs."""
    top: dict[str, int] = {}
    for ranks in variants:
        for name, k in ranks.items():
            top[name] = max(top.get(name, 0), k)
    return {name: SVDFactors.of(matrix_of(module, name), top=k if randomized else None) for name, k in top.items()}


def _write(params: Mapping[str, nn.Parameter], name: str, f: SVDFactors, rank: int) -> None:
    """Set matrix ``name`` to its rank-``rank`` approximation; for ``...attn.ov``: W_O = U_k and W_V = S_k V_k^T
    (zero beyond k), so that W_O W_V is the product's best rank-k approximation."""
    if not is_product(name):
        weight = params[parameter_of(name)]
        rows = row_index(name, weight.shape[0])
        if rows is None:
            weight.copy_(f.reconstruct(rank))
        else:  # the other rows of a fused matrix are not written at all
            weight.index_copy_(0, rows.to(weight.device), f.reconstruct(rank).to(weight.device))
        return
    wo, wv = (params[n] for n in product_parts(name))
    new_o, new_v = torch.zeros_like(wo), torch.zeros_like(wv)
    new_o[:, :rank] = f.u[:, :rank].to(wo.dtype)
    new_v[:rank] = (f.s[:rank, None] * f.vh[:rank]).to(wv.dtype)
    wo.copy_(new_o)
    wv.copy_(new_v)


def touched(ranks: Mapping[str, int]) -> list[str]:
    """The parameters a variant's ranks change (both W_O and W_V for a product; a row set's whole parameter), once."""
    return list(dict.fromkeys(p for name in ranks for p in (product_parts(name) if is_product(name) else (parameter_of(name),))))


def singular_values(weight: torch.Tensor) -> torch.Tensor:
    """Singular values of a matrix, largest first, in float32 at least (for spectra and their summaries)."""
    return torch.linalg.svdvals(_svd_input(weight))


def truncate(weight: torch.Tensor, rho: float | None = None, rank: int | None = None) -> torch.Tensor:
    """Best approximation of `weight` of rank floor(rho * min(m, n)), or of the given absolute `rank`."""
    if (rho is None) == (rank is None):
        raise ValueError("give exactly one of rho or rank")
    k = rank_for(tuple(weight.shape), rho) if rho is not None else int(rank)
    return SVDFactors.of(weight).reconstruct(k)


def select_parameters(module: nn.Module, patterns: str | list[str]) -> dict[str, nn.Parameter]:
    """Named 2-D parameters matching any glob pattern (e.g. ``layers.1.ff.w2`` or ``layers.*.ff.*``).

    A pattern that matches nothing is an error naming it, so a typo in a config never silently does nothing.
    """
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    params = dict(module.named_parameters())
    chosen: dict[str, nn.Parameter] = {}
    for pattern in patterns:
        hits = [n for n in params if fnmatch.fnmatchcase(n, pattern) and params[n].ndim == 2]
        if not hits:
            matrices = [n for n, p in params.items() if p.ndim == 2]
            raise ValueError(f"LASER target {pattern!r} matches no matrix; matrices are: {matrices}")
        chosen.update({n: params[n] for n in hits})
    return chosen


@torch.no_grad()
def truncate_(module: nn.Module, ranks: Mapping[str, int]) -> None:
    """In place: each named matrix (or W_O W_V product) becomes its best rank-k approximation (same Parameter
    objects)."""
    params = dict(module.named_parameters())
    for name, k in ranks.items():
        _write(params, name, SVDFactors.of(matrix_of(module, name)), k)


@contextlib.contextmanager
@torch.no_grad()
def truncated(
    module: nn.Module, ranks: Mapping[str, int], factors: Mapping[str, SVDFactors] | None = None
) -> Iterator[nn.Module]:
    """Temporarily truncate named matrices; the original weights are restored bit-for-bit on exit.

    Pass precomputed `factors` to evaluate many ranks of one matrix with a single SVD.
    """
    params = dict(module.named_parameters())
    saved = {name: params[name].detach().clone() for name in touched(ranks)}
    try:
        for name, k in ranks.items():
            f = factors[name] if factors is not None and name in factors else SVDFactors.of(matrix_of(module, name))
            _write(params, name, f, k)
        yield module
    finally:
        for name, w in saved.items():
            params[name].copy_(w)
