"""LASER: replace a weight matrix by its best low-rank approximation (Eckart-Young, via SVD).

This is the only module that calls an SVD. Everything else (the validation sweep, callbacks, pretrained-model
evaluation) goes through `truncate`, `truncate_`, `SVDFactors`, `factorise`, `truncated` or `singular_values`.
"""
from __future__ import annotations

import contextlib
import fnmatch
import math
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


def factorise(module: nn.Module, variants: Iterable[Mapping[str, int]], randomized: bool = False) -> dict[str, SVDFactors]:
    """One factorisation per matrix that any variant ({name: rank}) truncates, so all the variants' ranks of a
    matrix share one SVD; ``randomized`` computes only the top directions the largest requested rank needs."""
    top: dict[str, int] = {}
    for ranks in variants:
        for name, k in ranks.items():
            top[name] = max(top.get(name, 0), k)
    params = dict(module.named_parameters())
    return {name: SVDFactors.of(params[name], top=k if randomized else None) for name, k in top.items()}


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
    """In place: each named matrix becomes its best rank-k approximation (same Parameter object)."""
    params = dict(module.named_parameters())
    for name, k in ranks.items():
        params[name].copy_(SVDFactors.of(params[name]).reconstruct(k))


@contextlib.contextmanager
@torch.no_grad()
def truncated(
    module: nn.Module, ranks: Mapping[str, int], factors: Mapping[str, SVDFactors] | None = None
) -> Iterator[nn.Module]:
    """Temporarily truncate named matrices; the original weights are restored bit-for-bit on exit.

    Pass precomputed `factors` to evaluate many ranks of one matrix with a single SVD.
    """
    params = dict(module.named_parameters())
    saved = {name: params[name].detach().clone() for name in ranks}
    try:
        for name, k in ranks.items():
            f = factors[name] if factors is not None and name in factors else SVDFactors.of(params[name])
            params[name].copy_(f.reconstruct(k))
        yield module
    finally:
        for name, w in saved.items():
            params[name].copy_(w)
