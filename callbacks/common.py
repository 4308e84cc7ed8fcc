"""What the callbacks share: which module's parameter names configs refer to, and how they log.

A callback connects to the rest of the pipeline through the hooks run_record/contract.py declares
(``RecordedCallback``): ``check_config(model, datamodule)``, called by the CLI right after building everything (a typo in
a parameter pattern is a configuration error before any step runs), and ``summary()``, which ``RunSummary`` stores
under ``summary.json["callbacks"][<record_name>]``.
"""
from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn


def network(pl_module: nn.Module) -> nn.Module:
    """The module whose parameter names configs use: ``pl_module.net`` when the LightningModule wraps its
    network there (so patterns read ``layers.1.ff.w2``, as in the model's ``laser_targets``), else the module."""
    net = getattr(pl_module, "net", None)
    return net if isinstance(net, nn.Module) else pl_module


def trainable_matrices(module: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in module.named_parameters() if p.ndim == 2 and p.requires_grad}


def log_scalars(trainer: L.Trainer, metrics: dict[str, float], step: int | None = None) -> None:
    """Log to every logger at ``step`` (default: the current optimizer step).

    Straight to the loggers rather than through ``LightningModule.log``, which drops step-level values between
    ``log_every_n_steps`` and cannot be called from every hook.
    """
    step = trainer.global_step if step is None else step
    for logger in trainer.loggers:
        logger.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def require_generator(callback: L.Callback, datamodule: Any) -> None:
    if not hasattr(datamodule, "gen"):
        raise ValueError(f"{type(callback).__name__} needs a noisy-recall datamodule (with .gen); got {type(datamodule).__name__}")


def probe_batch(trainer: L.Trainer, n_sequences: int, seed: int) -> dict[str, torch.Tensor]:
    """A fixed batch from the training distribution (noise tokens in context), the same at every step."""
    return trainer.datamodule.gen.sample(n_sequences, torch.Generator().manual_seed(seed))


class EveryNSteps:
    """A callback mixin (before ``L.Callback`` in the bases): calls ``at_step(trainer, pl_module, step)`` at step 0,
    every ``every_n_steps`` optimizer steps and at ``early_steps``, once per step, on global rank zero (the probes read
    weights that are the same on every rank). Subclasses set ``every_n_steps`` and ``early_steps`` (a set)."""

    every_n_steps: int
    early_steps: set[int]
    _last_step: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._maybe_probe(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        self._maybe_probe(trainer, pl_module)

    def _maybe_probe(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        if (step % self.every_n_steps and step not in self.early_steps) or step == self._last_step or not trainer.is_global_zero:
            return
        self._last_step = step
        self.at_step(trainer, pl_module, step)

    def at_step(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        raise NotImplementedError
