"""Metrics at trigger positions, one torchmetrics object per model variant (full, each LASER truncation)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from run_record.names import RECALL_METRICS as METRIC_NAMES  # noqa: F401


class TriggerRecallMetrics(Metric):
    """Means over scored positions of: P(in-context answer), P(noise token), argmax == answer, cross-entropy.

    Scored positions are ``mask`` (for ``loss``) and ``mask & answer >= 0`` (for the other three). States are
    sums, so DDP reduction is exact. Over no scored position every mean is NaN (undefined), never 0.
    """

    full_state_update = False

    def __init__(self, noise_id: int, global_answer: torch.Tensor | None = None, **kwargs):
        super().__init__(**kwargs)
        self.noise_id = noise_id
        # with each token's global bigram answer, also P(global answer of the trigger) at the same positions
        self.global_answer = global_answer
        for name in ("p_correct", "p_noise", "acc", "n_answer", "loss", "n_loss", "p_global"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, targets: torch.Tensor, answer: torch.Tensor, mask: torch.Tensor,
               inputs: torch.Tensor | None = None) -> None:
        logp = logits[mask].float().log_softmax(-1)
        self.loss += F.nll_loss(logp, targets[mask], reduction="sum").double()
        self.n_loss += logp.shape[0]
        ans = answer[mask]
        has = ans >= 0
        logp, ans = logp[has], ans[has]
        self.p_correct += logp.gather(-1, ans[:, None]).exp().sum().double()
        self.p_noise += logp[:, self.noise_id].exp().sum().double()
        self.acc += (logp.argmax(-1) == ans).sum().double()
        self.n_answer += ans.numel()
        if self.global_answer is not None and inputs is not None:
            best = self.global_answer.to(inputs.device)[inputs[mask][has]]
            self.p_global += logp.gather(-1, best[:, None]).exp().sum().double()

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
