"""Answer vs generic token at the end of a prompt, per prompt type (torchmetrics, sum states: exact under DDP)."""
from __future__ import annotations

import torch
from torchmetrics import Metric

from run_record.names import PROMPT_METRICS  # noqa: F401


def prompt_scores(logits: torch.Tensor, answer: torch.Tensor, generic: torch.Tensor, competitor: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per prompt, from the (B, V) logits of its last position: log P(answer), log P(generic), logit(answer) -
    logit(competitor) (NaN where there is no competitor), the argmax token and the top 3 tokens with their log
    probabilities. The metrics and predictions.jsonl both read these."""
    logits = logits.double()
    logp = logits.log_softmax(-1)
    rows = torch.arange(len(answer), device=logits.device)
    has = competitor >= 0
    diff = torch.where(has, logits[rows, answer] - logits[rows, competitor.clamp_min(0)], float("nan"))
    top = logp.topk(min(3, logp.shape[-1]), dim=-1)
    return {"lp_answer": logp[rows, answer], "lp_generic": logp[rows, generic], "logit_diff": diff,
            "argmax": logits.argmax(-1), "top_ids": top.indices, "top_lp": top.values}


class AnswerVsGenericMetrics(Metric):
    """For the next-token distribution after each prompt: P(answer), P(generic token, e.g. " the"),
    log P(answer) / P(generic), argmax == answer, and for prompts with a competing name (IOI: the subject S)
    the logit difference answer - competitor. Means per prompt type and over all prompts.
    """

    full_state_update = False

    def __init__(self, prompt_types: list[str], **kwargs):
        super().__init__(**kwargs)
        self.prompt_types = list(prompt_types)
        n = len(self.prompt_types)
        for name in ("p_answer", "p_generic", "log_ratio", "acc", "count", "logit_diff", "n_diff"):
            self.add_state(name, default=torch.zeros(n, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, answer: torch.Tensor, generic: torch.Tensor, competitor: torch.Tensor, kind: torch.Tensor) -> None:
        """logits (B, V) at the last prompt position; answer, generic, competitor (-1: none), kind: (B,) ids."""
        s = prompt_scores(logits, answer, generic, competitor)
        lp_answer, lp_generic, has = s["lp_answer"], s["lp_generic"], competitor >= 0
        for state, value in (
            ("p_answer", lp_answer.exp()), ("p_generic", lp_generic.exp()), ("log_ratio", lp_answer - lp_generic),
            ("acc", (s["argmax"] == answer).double()), ("count", torch.ones_like(lp_answer)),
            ("logit_diff", torch.nan_to_num(s["logit_diff"], nan=0.0)), ("n_diff", has.double()),
        ):
            getattr(self, state).index_add_(0, kind, value)

    def compute(self) -> dict[str, dict[str, torch.Tensor]]:
        """{"all": {...}, <type>: {...}}; logit_diff only where some prompt has a competitor."""
        out = {}
        groups = [("all", slice(None))] + [(t, slice(i, i + 1)) for i, t in enumerate(self.prompt_types)]
        for name, idx in groups:
            n = self.count[idx].sum()
            if n == 0:
                continue
            row = {k: getattr(self, k)[idx].sum() / n for k in ("p_answer", "p_generic", "log_ratio", "acc")}
            if self.n_diff[idx].sum() > 0:
                row["logit_diff"] = self.logit_diff[idx].sum() / self.n_diff[idx].sum()
            out[name] = row
        return out
