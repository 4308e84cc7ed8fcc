"""The associative-memory account of knowledge hijack, fitted to measured prompts.

At the final trigger q, the logit gap between the in-context answer o and the global answer b is modelled as

    logit(o) - logit(b)  =  w_ic * a(n, T)  -  w_g,      a(n, T) = n e^beta / (n e^beta + T - n)

The in-context term is the induction head's value read-out of o, scaled by a(n, T): the softmax attention mass that
the final q puts on the n positions right after earlier q's, when each of them scores beta above the T - n other
keys. So it grows with n and shrinks with T. The global term w_g is the feed-forward memory's preference for b,
the same for every prompt (the gap at n = 0). o wins once w_ic * a > w_g, which gives the hijack boundary

    n*(T) = r T / (e^beta (1 - r) + r),   r = w_g / w_ic   (never, if r >= 1).

With k pairs (q, b) in the context as well, the induction head also reads out b from its k positions, so the
in-context term is the difference of the two masses (the n and k keys share one softmax):

    logit(o) - logit(b)  =  w_ic * (a_o - a_b) - w_g,   a_o = n e^beta / D,  a_b = k e^beta / D,
    D = (n + k) e^beta + T - n - k

(k = 0 gives the form above), and o wins from n*(T, k) = (w_g (k (e^beta - 1) + T) + w_ic e^beta k) /
(w_ic e^beta - w_g (e^beta - 1)).

Fitted per setting (placement x FF variant) over all probed (n, k, T): beta on a grid, w_ic and w_g by least squares
for each beta. A second fit uses the *measured* attention mass instead of a(n, T) (gap = w_ic' * attn - w_g'): if
the closed form fits badly but this one fits well, the attention pattern, not the memory read-out, is what the form
gets wrong (APE beyond the training length: the previous-token head breaks, so a(n, T) overestimates the mass).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

BETAS = np.linspace(-4.0, 12.0, 321)


def on_grid_edge(beta: float) -> bool:
    """The fitted beta is the grid's first or last value: the best fit may lie beyond it, and where the attention
    mass saturates or vanishes only w_ic e^beta is determined (a table flags it)."""
    return bool(np.isclose(beta, BETAS[0]) or np.isclose(beta, BETAS[-1]))


@dataclass
class Point:
    n: int
    length: int
    gap: float  # mean measured logit(o) - logit(b)
    attention: float  # mean measured last-layer attention mass after the (q, o) pairs, minus that after the (q, b) pairs
    k: int = 0  # pairs (q, b) in the context


@dataclass
class HijackFit:
    w_ic: float
    w_g: float
    beta: float
    r2: float | None  # of the closed form, over the points' mean gaps
    r2_attention: float | None  # of the measured-attention form
    w_ic_attention: float
    w_g_attention: float
    n_points: int

    def mass(self, n: float, length: int, k: int = 0) -> float:
        """a_o - a_b: the in-context term's attention difference."""
        return in_context_mass(np.array([n], dtype=float), np.array([length], dtype=float), self.beta, np.array([k], dtype=float))[0]

    def predict(self, n: float, length: int, k: int = 0) -> float:
        return self.w_ic * self.mass(n, length, k) - self.w_g

    def boundary(self, length: int, k: int = 0) -> float | None:
        """The (real-valued) n at which the predicted gap crosses 0 with k global pairs; None if o never wins."""
        if self.w_g <= 0 and k == 0:
            return 0.0  # the global term does not oppose o: it wins from the first pair
        e = math.exp(self.beta)
        denominator = self.w_ic * e - self.w_g * (e - 1)
        if self.w_ic <= 0 or denominator <= 0:
            return None
        n = (self.w_g * (k * (e - 1) + length) + self.w_ic * e * k) / denominator
        return max(n, 0.0) if n <= length - k else None

    def as_dict(self) -> dict:
        return asdict(self)


def attention_mass(n: np.ndarray, length: np.ndarray, beta: float, k: np.ndarray | float = 0.0) -> np.ndarray:
    """a_o: the softmax mass on the n keys scoring beta above the other length - n keys (k of which also score beta)."""
    e = math.exp(beta)
    return n * e / np.maximum((n + k) * e + (length - n - k), 1e-12)


def in_context_mass(n: np.ndarray, length: np.ndarray, beta: float, k: np.ndarray | float = 0.0) -> np.ndarray:
    """a_o - a_b: the mass after the (q, o) pairs minus the mass after the (q, b) pairs."""
    return attention_mass(n, length, beta, k) - attention_mass(np.asarray(k, dtype=float) + 0 * n, length, beta, n)


def _lstsq(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """y ~ w * x - c: (w, c, sum of squared errors)."""
    design = np.stack([x, -np.ones_like(x)], 1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    sse = float(((design @ coef - y) ** 2).sum())
    return float(coef[0]), float(coef[1]), sse


def _r2(sse: float, y: np.ndarray) -> float | None:
    sst = float(((y - y.mean()) ** 2).sum())
    return None if sst <= 1e-12 else 1.0 - sse / sst


def fit(points: list[Point]) -> HijackFit | None:
    """The least-squares fit of the form above; None with fewer than 4 points or no variation in n."""
    if len(points) < 4 or len({p.n for p in points}) < 2:
        return None
    n = np.array([p.n for p in points], dtype=float)
    length = np.array([p.length for p in points], dtype=float)
    gap = np.array([p.gap for p in points], dtype=float)
    k = np.array([p.k for p in points], dtype=float)
    best = None
    for beta in BETAS:
        w, c, sse = _lstsq(in_context_mass(n, length, float(beta), k), gap)
        if best is None or sse < best[3] - 1e-12:
            best = (w, c, float(beta), sse)
    w, c, beta, sse = best
    wa, ca, sse_a = _lstsq(np.array([p.attention for p in points], dtype=float), gap)
    return HijackFit(w_ic=w, w_g=c, beta=beta, r2=_r2(sse, gap), r2_attention=_r2(sse_a, gap),
                     w_ic_attention=wa, w_g_attention=ca, n_points=len(points))


def measured_boundary(o_wins: dict[int, float]) -> int | None:
    """The hijack boundary measured: the smallest probed n at which the in-context answer o is the argmax on at
    least half of the prompts (``o_wins`` >= 0.5), whatever order n was probed in; None if it never is. HijackProbe's
    boundary and the fit's "measured" one are this one function."""
    return next((n for n in sorted(o_wins) if o_wins[n] >= 0.5), None)


def gap_boundary(gaps: dict[int, float]) -> int | None:
    """The smallest probed n whose mean measured gap is positive: what the form's n* predicts (it models mean gaps).
    It comes before ``measured_boundary`` when a few prompts have large gaps."""
    return next((n for n in sorted(gaps) if gaps[n] > 0), None)
