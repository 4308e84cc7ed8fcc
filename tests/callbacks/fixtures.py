"""Tiny real models, data and trainers for the callback tests, plus a callback that saves each rank's weights."""
from __future__ import annotations

import os

import lightning as L
import torch

from callbacks.common import network
from datamodules import NoisyRecallDataModule, SyntheticBigram
from lightning_modules import NoisyRecallModule
from lightning_modules.transformer import TransformerConfig


def tiny_model_and_data(seed: int = 0, positional: str = "absolute") -> tuple[NoisyRecallModule, NoisyRecallDataModule]:
    dm = NoisyRecallDataModule(SyntheticBigram(vocab_size=16), seq_len=16, batch_size=8, n_test=16, seed=seed)
    torch.manual_seed(seed)
    model = NoisyRecallModule(TransformerConfig(dim=16, max_seq_len=16, positional=positional), vocab_size=dm.vocab_size,
                              noise_id=dm.noise_id)
    return model, dm


def tiny_trainer(root, callbacks, max_steps: int = 8, **kw) -> L.Trainer:
    return L.Trainer(
        default_root_dir=str(root), accelerator="cpu", devices=1, max_steps=max_steps, logger=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=kw.pop("limit_val_batches", 0),
        enable_checkpointing=kw.pop("enable_checkpointing", False), callbacks=callbacks, **kw,
    )


def numerical_rank(w: torch.Tensor) -> int:
    s = torch.linalg.svdvals(w.detach().double())
    return int((s > 1e-5 * max(float(s.max()), 1.0)).sum())


class SaveWeights(L.Callback):
    """Saves each rank's network weights at the given steps to ``<log_dir>/weights/rank<r>_step<s>.pt``."""

    def __init__(self, at_steps: list[int]):
        self.at_steps = at_steps

    def setup(self, trainer, pl_module, stage):
        self.dir = os.path.join(trainer.log_dir, "weights")  # log_dir broadcasts: called on every rank

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step in self.at_steps:
            os.makedirs(self.dir, exist_ok=True)
            state = {k: v.detach().clone() for k, v in network(pl_module).state_dict().items()}
            torch.save(state, os.path.join(self.dir, f"rank{trainer.global_rank}_step{trainer.global_step}.pt"))


def measuring_callbacks_yaml(truncation: str) -> str:
    """A config piece with LaserTruncation (``truncation``: its init_args, as YAML flow) and the three measuring
    callbacks, for the tests that run them through main.py."""
    return f"""
trainer:
  callbacks:
    - class_path: callbacks.LaserTruncation
      init_args: {truncation}
    - class_path: callbacks.WeightSpectrumLogger
      init_args: {{every_n_steps: 3}}
    - class_path: callbacks.GradientNoise
      init_args: {{at_steps: [0, 3], n_sequences: 16}}
    - class_path: callbacks.AttentionProbe
      init_args: {{every_n_steps: 2, n_sequences: 16}}
    - class_path: callbacks.MemoryProbe
      init_args: {{every_n_steps: 3}}
"""
