"""AttentionProbe: when the feed-forward learns the noise token and when the induction head forms."""
from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

import os

import numpy as np

from callbacks.common import EveryNSteps, log_scalars, network, probe_batch, require_generator
from lightning_modules.attribution import attention_patterns, forward_with_attention
from lightning_modules.laser import factorise, truncated
from run_record.files import ATTENTION_EXAMPLE_FILE, atomic_path
from run_record.names import FULL, probe_key
from run_record.contract import RecordedCallback, ATTENTION_PROBE

EXAMPLE_WINDOW = 128  # positions of the example sequence kept, ending at its last scored trigger (the whole of a CPU config's)


def induction_mass(pattern: torch.Tensor, tokens: torch.Tensor, answer: torch.Tensor, mask: torch.Tensor, noise_id: int) -> dict[str, float]:
    """From each scored trigger (query t), the attention on positions p = j + 1 right after the trigger's earlier
    occurrences j < t, summed separately over those holding the in-context output token and the noise token."""
    b, t = tokens.shape
    earlier = (tokens[:, :, None] == tokens[:, None, :]) & torch.ones(t, t, dtype=torch.bool, device=tokens.device).tril(-1)
    after = F.pad(earlier[:, :, :-1], (1, 0))  # key p marked when p - 1 is an earlier occurrence of the query's token
    holds_output = tokens[:, None, :] == answer[:, :, None]
    holds_noise = (tokens == noise_id)[:, None, :]
    n = mask.sum().clamp_min(1)
    return {
        "to_output": float((pattern * (after & holds_output)).sum(-1)[mask].sum() / n),
        "to_noise": float((pattern * (after & holds_noise)).sum(-1)[mask].sum() / n),
    }


@torch.no_grad()
def ff_noise_margins(net: torch.nn.Module, triggers: torch.Tensor, noise_id: int) -> dict[int, float]:
    """Per layer with a feed-forward: mean over triggers of logit(noise) - max other logit of W_U FF(e_trigger)."""
    margins = {}
    emb = net.tok_emb[triggers]
    for i, layer in enumerate(net.layers):
        if layer.ff is None:
            continue
        logits = F.linear(layer.ff(layer.norm2(emb)), net.unemb)
        others = logits.clone()
        others[:, noise_id] = float("-inf")
        margins[i] = float((logits[:, noise_id] - others.max(-1).values).mean())
    return margins


class AttentionProbe(RecordedCallback, EveryNSteps, L.Callback):
    """Every ``every_n_steps`` optimizer steps (and at step 0), on a fixed batch of *noisy* training sequences:

    - ``probe/layers.<i>.attn/prev_token``: attention of each position to the previous one, and
      ``.../prev_token_after_trigger`` the same at positions right after a trigger, where the induction head
      needs it (layer 0's previous-token head);
    - ``probe/layers.<i>.attn/to_output`` and ``.../to_noise``: attention from a repeated trigger to the
      positions right after its earlier occurrences, holding the in-context output or the noise token (the
      induction head, in the last layer);
    - ``probe/layers.<i>.ff/noise_margin``: logit(noise) - max other logit through W_U FF(e_trigger), the
      feed-forward's own trigger -> noise association.

    ``early_steps``: more probes at these steps, where the order of events (the FF's noise margin first, the induction
    head later) is decided faster than every_n_steps resolves.

    At the end of training, an example (``example`` in its summary section, the patterns in attention_example.npz):
    one probe sequence up to its last scored trigger, each position's role (trigger, in-context output, noise), every
    layer's attention pattern and the top 3 next tokens there, for the full model and for the module's most truncated
    LASER variant (the smallest kept rank).

    For the toy transformer (``lightning_modules.transformer``) on ``NoisyRecallDataModule``.
    """

    record_name = ATTENTION_PROBE  # its section of summary.json callbacks

    def __init__(self, every_n_steps: int = 50, n_sequences: int = 64, seed: int = 0, early_steps: list[int] | None = None):
        if every_n_steps < 1 or n_sequences < 1:
            raise ValueError(f"AttentionProbe.every_n_steps and n_sequences must be >= 1, got {every_n_steps}, {n_sequences}")
        if any(s < 0 for s in early_steps or []):
            raise ValueError(f"AttentionProbe.early_steps must be >= 0, got {early_steps}")
        self.every_n_steps, self.n_sequences, self.seed = every_n_steps, n_sequences, seed
        self.early_steps = set(early_steps or [])
        self.latest: dict[str, float] = {}
        self._last_step: int | None = None
        self.example: dict[str, Any] | None = None
        self._example_path: str | None = None

    def check_config(self, model: torch.nn.Module, datamodule: Any) -> None:
        net = network(model)
        if not hasattr(net, "layers") or not all(hasattr(layer, "attn") for layer in net.layers):
            raise ValueError(f"AttentionProbe needs the toy transformer (net.layers[i].attn); {type(model).__name__} has none")
        require_generator(self, datamodule)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.batch = probe_batch(trainer, self.n_sequences, self.seed)

    def at_step(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        self.latest = self.probe(pl_module)
        log_scalars(trainer, self.latest, step)

    def probe(self, pl_module: torch.nn.Module) -> dict[str, float]:
        net, noise_id = network(pl_module), pl_module.hparams.noise_id
        batch = {k: v.to(pl_module.device) for k, v in self.batch.items()}
        tokens, mask, answer = batch["tokens"][:, :-1], batch["mask"], batch["answer"]
        out = {}
        for i, pattern in enumerate(attention_patterns(net, tokens)):
            prev = pattern.diagonal(-1, -2, -1)  # (B, T-1): query t+1 -> key t
            out[probe_key(i, "attn", "prev_token")] = float(prev.mean())
            # where it matters for induction: the query right after a trigger reads the trigger
            after_trigger = (answer[:, :-1] >= 0)
            out[probe_key(i, "attn", "prev_token_after_trigger")] = float(prev[after_trigger].mean()) if after_trigger.any() else 0.0
            for k, v in induction_mass(pattern, tokens, answer, mask, noise_id).items():
                out[probe_key(i, "attn", k)] = v
        for i, margin in ff_noise_margins(net, tokens[mask].unique(), noise_id).items():
            out[probe_key(i, "ff", "noise_margin")] = margin
        return out

    def summary(self) -> dict[str, Any]:
        return {"step": self._last_step, **self.latest, **({"example": self.example} if self.example else {})}

    def record_files(self) -> list[str]:
        return [self._example_path] if self._example_path and os.path.isfile(self._example_path) else []

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and trainer.log_dir:
            self.write_example(pl_module, os.path.join(os.path.abspath(trainer.log_dir), ATTENTION_EXAMPLE_FILE))

    @torch.no_grad()
    def write_example(self, pl_module: L.LightningModule, path: str) -> None:
        """The end-of-training example (class docstring), written to ``path``."""
        net, noise_id = network(pl_module), pl_module.hparams.noise_id
        batch = {k: v.to(pl_module.device) for k, v in self.batch.items()}
        tokens, mask, answer = batch["tokens"][:, :-1], batch["mask"], batch["answer"]
        scored = mask & (answer >= 0)
        if not scored.any():
            return
        # a sequence whose last scored trigger the data follows with the noise token, where there is one
        last = torch.where(scored, torch.arange(tokens.shape[1], device=tokens.device), -1).max(1).values
        noisy = (last >= 0) & (batch["tokens"][torch.arange(len(last)), (last + 1).clamp_min(0)] == noise_id)
        b = int(noisy.nonzero()[0]) if noisy.any() else int((last >= 0).nonzero()[0])
        q = int(last[b])
        start = max(0, q + 1 - EXAMPLE_WINDOW)
        seq = tokens[b:b + 1, : q + 1]
        variants = {v: r for v, r in getattr(pl_module, "variants", {}).items() if v != FULL}
        chosen = min(variants, key=lambda v: sum(variants[v].values()), default=None)
        models = {FULL: {}} | ({chosen: variants[chosen]} if chosen else {})
        factors = factorise(net, models.values())
        patterns, top = {}, {}
        was_training = net.training
        net.eval()
        for name, ranks in models.items():
            with truncated(net, ranks, factors):
                logits, layers = forward_with_attention(net, seq)
            patterns[name] = np.stack([p[0, start:, start:].float().cpu().numpy() for p in layers])
            probs = logits[0, q].float().softmax(-1)
            best = probs.topk(3)
            top[name] = [[int(t), float(p)] for t, p in zip(best.indices, best.values)]
        net.train(was_training)
        window = seq[0, start:].tolist()
        triggers = set(tokens[b][scored[b]].tolist())
        after = [i > 0 and window[i - 1] in triggers for i in range(len(window))]
        roles = ["noise" if t == noise_id else "trigger" if t in triggers else "output" if after[i] else ""
                 for i, t in enumerate(window)]
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **{f"patterns:{name}": p for name, p in patterns.items()})
        self._example_path = path
        self.example = {"file": ATTENTION_EXAMPLE_FILE, "start": start, "query": q, "tokens": window, "roles": roles,
                        "noise_id": noise_id, "next_token": int(batch["tokens"][b, q + 1]), "answer": int(answer[b, q]),
                        "variants": list(models), "top": top}
