"""Metrics at trigger positions, one torchmetrics object per model variant (full, each LASER truncation)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from run_record.names import RECALL_METRICS as METRIC_NAMES  # noqa: F401

INTERVAL_OF = ("p_correct", "p_noise", "acc", "loss", "p_global")  # every mean compute() returns


def wilson_interval(p: float, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval of a proportion p of n (stays inside [0, 1], unlike a normal interval near 0 or 1)."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


class TriggerRecallMetrics(Metric):
    """Means over scored positions of: P(in-context answer), P(noise token), argmax == answer, cross-entropy.

    Scored positions are ``mask`` (for ``loss``) and ``mask & answer >= 0`` (for the other three). States are
    sums, so DDP reduction is exact. Over no scored position every mean is NaN (undefined), never 0.

    ``intervals()``: a 95% interval of each mean over test sequences. A mean over positions is a ratio of per-sequence
    sums (sum_i y_i / sum_i m_i, m_i the sequence's scored positions); its standard error treats sequences as the
    independent units (positions of one sequence share a context), by the delta method:
    se^2 = sum_i (y_i - R m_i)^2 / (n (n - 1) mean(m)^2). Its parts are sums too, so DDP stays exact; a bootstrap
    over sequences gives the same width (tests/lightning_modules/test_metric_intervals.py).
    """

    full_state_update = False

    def __init__(self, noise_id: int, global_answer: torch.Tensor | None = None, **kwargs):
        super().__init__(**kwargs)
        self.noise_id = noise_id
        # with each token's global bigram answer, also P(global answer of the trigger) at the same positions
        self.global_answer = global_answer
        for name in ("p_correct", "p_noise", "acc", "n_answer", "loss", "n_loss", "p_global", "n_seq", "mm_answer",
                     "mm_loss", *(f"{k}_{part}" for k in INTERVAL_OF for part in ("yy", "ym"))):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def _per_sequence(self, name: str, values: torch.Tensor, rows: torch.Tensor, counts: torch.Tensor) -> None:
        """Add the sum of ``values`` (one per scored position, of the sequence ``rows``) and its per-sequence parts."""
        y = torch.zeros_like(counts).index_add_(0, rows, values.double())
        setattr(self, name, getattr(self, name) + y.sum())
        setattr(self, f"{name}_yy", getattr(self, f"{name}_yy") + (y * y).sum())
        setattr(self, f"{name}_ym", getattr(self, f"{name}_ym") + (y * counts).sum())

    def update(self, logits: torch.Tensor, targets: torch.Tensor, answer: torch.Tensor, mask: torch.Tensor,
               inputs: torch.Tensor | None = None) -> None:
        rows = mask.nonzero(as_tuple=True)[0]  # the sequence of each scored position, in logits[mask]'s order
        zeros = torch.zeros(mask.shape[0], dtype=torch.float64, device=mask.device)
        self.n_seq += mask.shape[0]
        logp = logits[mask].float().log_softmax(-1)
        counts = zeros.index_add(0, rows, torch.ones_like(rows, dtype=torch.float64))
        self._per_sequence("loss", F.nll_loss(logp, targets[mask], reduction="none"), rows, counts)
        self.n_loss += logp.shape[0]
        self.mm_loss += (counts * counts).sum()
        ans = answer[mask]
        has = ans >= 0
        logp, ans, rows = logp[has], ans[has], rows[has]
        counts = zeros.index_add(0, rows, torch.ones_like(rows, dtype=torch.float64))
        self._per_sequence("p_correct", logp.gather(-1, ans[:, None]).exp()[:, 0], rows, counts)
        self._per_sequence("p_noise", logp[:, self.noise_id].exp(), rows, counts)
        self._per_sequence("acc", (logp.argmax(-1) == ans).double(), rows, counts)
        self.n_answer += ans.numel()
        self.mm_answer += (counts * counts).sum()
        if self.global_answer is not None and inputs is not None:
            best = self.global_answer.to(inputs.device)[inputs[mask][has]]
            self._per_sequence("p_global", logp.gather(-1, best[:, None]).exp()[:, 0], rows, counts)

    def intervals(self, z: float = 1.96) -> dict[str, list[float] | None]:
        """{metric: [low, high]}, the 95% interval over sequences (the class docstring); None where it is undefined
        (fewer than 2 sequences, no scored position). Probabilities are clipped to [0, 1]."""
        n = float(self.n_seq)
        out: dict[str, list[float] | None] = {}
        for name in INTERVAL_OF:
            if name == "p_global" and self.global_answer is None:
                continue
            total, mm = (self.n_loss, self.mm_loss) if name == "loss" else (self.n_answer, self.mm_answer)
            if n < 2 or float(total) == 0:
                out[name] = None
                continue
            ratio = float(getattr(self, name) / total)
            spread = float(getattr(self, f"{name}_yy") - 2 * ratio * getattr(self, f"{name}_ym") + ratio ** 2 * mm)
            se = max(spread, 0.0) ** 0.5 / (n * (n - 1)) ** 0.5 / (float(total) / n)
            low, high = ratio - z * se, ratio + z * se
            out[name] = [low, high] if name == "loss" else [max(low, 0.0), min(high, 1.0)]
        return out

    def compute(self) -> dict[str, torch.Tensor]:
        # a mean over no position is undefined, not 0: NaN here, null with the reason in summary.json
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=self.n_answer.device)
        n = torch.where(self.n_answer > 0, self.n_answer, nan)
        out = {
            "p_correct": self.p_correct / n,
            "p_noise": self.p_noise / n,
            "acc": self.acc / n,
            "loss": self.loss / torch.where(self.n_loss > 0, self.n_loss, nan),
        }
        if self.global_answer is not None:
            out["p_global"] = self.p_global / n
        # the intervals of the same (DDP-reduced) states: compute() runs on them, and restores the rank's own after
        self.computed_intervals, self.computed_sequences = self.intervals(), int(self.n_seq)
        return out


@torch.no_grad()
def evaluate_recall(net: torch.nn.Module, dataloader, noise_id: int, global_answer: torch.Tensor | None = None,
                    device: torch.device | None = None) -> dict[str, float]:
    """``net``'s metrics on ``dataloader`` outside Lightning's loops, not reduced across DDP ranks (each rank
    evaluates the whole dataloader); with ``global_answer``, also ``p_global``."""
    device = device if device is not None else next(net.parameters()).device
    metric = TriggerRecallMetrics(noise_id, global_answer, sync_on_compute=False).to(device)
    for batch in dataloader:
        tokens = batch["tokens"].to(device)
        metric.update(net(tokens[:, :-1]), tokens[:, 1:], batch["answer"].to(device), batch["mask"].to(device), tokens[:, :-1])
    return {k: float(v) for k, v in metric.compute().items()}
