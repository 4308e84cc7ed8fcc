"""MemoryProbe: when each weight matrix becomes the associative memory the theory describes, read from the weights."""
from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch

from callbacks.common import EveryNSteps, log_scalars, network, require_generator
from lightning_modules import memory
from run_record.contract import MEMORY_PROBE, RecordedCallback
from run_record.names import memory_key


def query_weights(gen: Any) -> torch.Tensor:
    """(vocab,) how often the data asks a memory about each token: its fixed triggers alike, or the trigger draw."""
    w = torch.zeros(gen.vocab_size, dtype=torch.float64)
    if gen.trigger_mode == "fixed":
        w[gen.fixed_triggers] = 1.0
    else:
        w[: len(gen.trigger_weights)] = gen.trigger_weights.double()
    return w / w.sum()


class MemoryProbe(RecordedCallback, EveryNSteps, L.Callback):
    """Every ``every_n_steps`` optimizer steps (and at step 0, and at ``early_steps``), from the weights and embeddings
    alone (``lightning_modules/memory.py``, no forward pass over data), for every layer i:

    - ``memory/layers.<i>.attn.wk/positional_{inside,beyond,overlap}``: recall of the previous position by its
      attention on positions alone, inside T_train and beyond it (up to the longest test length), and W_Q^T W_K
      against sum_t p_t p_{t-1}^T (the relative bias against offset 1);
    - ``memory/layers.<i>.attn.wk/induction_{recall,overlap}`` (i >= 1): e_z queried against the keys layer i-1's
      output map writes after z, and W_Q^T W_K against sum_z e_z phi_z^T;
    - ``memory/layers.<i>.attn.ov/output_{recall,overlap}``: W_U W_O W_V e_z read out as z, and W_O W_V against
      sum_z u_z e_z^T;
    - ``memory/layers.<i>.ff/global_{top1,kl,overlap}`` per layer with an FF (the last layer's output map,
      ``attn.ov``, when no layer has one): the context-free next-token memory against the data's
      (``NoisyRecallGenerator.global_next_token``).

    The induction and global memories weigh each token z as the data queries it (``query_weights``): the fixed
    triggers when the data has them, else the trigger distribution; the positional and output memories weigh every
    position and token alike.

    summary.json ``callbacks.memory_probe``: the last values, the step, and the seconds spent.
    """

    record_name = MEMORY_PROBE

    def __init__(self, every_n_steps: int = 50, early_steps: list[int] | None = None):
        if every_n_steps < 1 or any(s < 0 for s in early_steps or []):
            raise ValueError(f"MemoryProbe.every_n_steps must be >= 1 and early_steps >= 0, got {every_n_steps}, {early_steps}")
        self.every_n_steps, self.early_steps = every_n_steps, set(early_steps or [])
        self.latest: dict[str, float] = {}
        self.seconds, self.calls = 0.0, 0
        self._last_step: int | None = None

    def check_config(self, model: torch.nn.Module, datamodule: Any) -> None:
        net = network(model)
        if not hasattr(net, "tok_emb") or not hasattr(net, "layers"):
            raise ValueError(f"MemoryProbe needs the toy transformer (tok_emb, layers); {type(model).__name__} has none")
        require_generator(self, datamodule)

    def at_step(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        dm = trainer.datamodule
        start = time.perf_counter()
        self.latest = self.probe(network(pl_module), dm.gen, dm.seq_len)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        log_scalars(trainer, {k: v for k, v in self.latest.items() if v is not None}, step)

    @staticmethod
    @torch.no_grad()
    def probe(net: torch.nn.Module, gen: Any, longest: int) -> dict[str, float | None]:
        t_train = gen.seq_len
        next_token = gen.global_next_token()
        weights = query_weights(gen)
        out: dict[str, float | None] = {}
        for i, layer in enumerate(net.layers):
            for k, v in memory.positional_memory(net, i, t_train, longest).items():
                out[memory_key(i, "attn.wk", f"positional_{k}")] = v
            if i >= 1:
                for k, v in memory.induction_key_memory(net, i - 1, i, weights).items():
                    out[memory_key(i, "attn.wk", f"induction_{k}")] = v
            for k, v in memory.output_memory(net, i).items():
                out[memory_key(i, "attn.ov", f"output_{k}")] = v
        holders = [(i, "ff") for i, layer in enumerate(net.layers) if layer.ff is not None] or [(len(net.layers) - 1, "attn.ov")]
        for i, matrix in holders:
            for k, v in memory.global_memory(net, i, next_token, weights).items():
                out[memory_key(i, matrix, f"global_{k}")] = v
        return out

    def summary(self) -> dict[str, Any]:
        return {"step": self._last_step, "calls": self.calls, "seconds": self.seconds, **self.latest}
