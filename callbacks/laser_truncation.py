"""LaserTruncation: replace chosen weight matrices by their best low-rank approximation in the middle of training."""
from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from callbacks.common import log_scalars, network
from lightning_modules.laser import rank_for, target_shapes, touched, truncate_
from run_record.names import LASER_COUNT, laser_key
from run_record.contract import RecordedCallback, LASER_TRUNCATION


class LaserTruncation(RecordedCallback, L.Callback):
    """At the given optimizer steps (or epoch starts), truncate the matrices matching ``targets`` in place.

    The parameters stay the same objects, so the optimizer (and its state) keeps working on them.

    Args:
        targets: parameter-name patterns (globs), e.g. ``[layers.1.ff.w2]``, all truncated at once; ``a+b`` and a
            layer's output map ``layers.1.attn.ov`` (W_O W_V as one map) too (``lightning_modules/laser.py``).
        rho: keep rank floor(rho * min(m, n)); or give ``rank``, an absolute rank.
        at_steps: truncate when ``trainer.global_step`` reaches each of these (0 = before the first step), i.e.
            the weights of step s (and a checkpoint taken at s) have the requested rank.
        at_epochs: truncate at the start of each of these epochs instead.
        mode: ``once`` (truncate, then train freely) or ``project`` (also re-project after every later optimizer
            step: training restricted to rank k).
        evaluate: log the model's validation metrics right before and right after each truncation, as
            ``laser/before/<metric>`` and ``laser/after/<metric>`` (needs ``pl_module.evaluate(dataloader)``).

    Under DDP every rank truncates and then takes rank 0's result, so all ranks hold identical weights. Which
    truncations are done is part of the checkpoint: a resumed run neither repeats nor skips one.
    """

    record_name = LASER_TRUNCATION  # its section of summary.json callbacks

    def __init__(
        self,
        targets: list[str],
        rho: float | None = None,
        rank: int | None = None,
        at_steps: list[int] | None = None,
        at_epochs: list[int] | None = None,
        mode: Literal["once", "project"] = "once",
        evaluate: bool = True,
    ):
        if (rho is None) == (rank is None):
            raise ValueError("LaserTruncation: give exactly one of rho or rank")
        if rho is not None and not 0.0 <= rho <= 1.0:
            raise ValueError(f"LaserTruncation.rho must be in [0, 1], got {rho}")
        if rank is not None and rank < 0:
            raise ValueError(f"LaserTruncation.rank must be >= 0, got {rank}")
        if (at_steps is None) == (at_epochs is None):
            raise ValueError("LaserTruncation: give exactly one of at_steps or at_epochs")
        points = at_steps if at_steps is not None else at_epochs
        if not points or any(p < 0 for p in points):
            raise ValueError(f"LaserTruncation.at_steps / at_epochs must be non-empty and >= 0, got {points}")
        if mode not in ("once", "project"):
            raise ValueError(f"LaserTruncation.mode must be once | project, got {mode!r}")
        self.targets, self.rho, self.rank, self.mode, self.evaluate = list(targets), rho, rank, mode, evaluate
        self.unit = "step" if at_steps is not None else "epoch"
        self.points = sorted(set(points))
        self.done: list[int] = []  # schedule points already applied (checkpointed)
        self.events: list[dict[str, Any]] = []  # what this process did, for summary.json and tests
        self._last_step: int | None = None

    # --- configuration ---------------------------------------------------------------------------------------
    def ranks(self, pl_module: torch.nn.Module) -> dict[str, int]:
        ranks = {}
        for name, shape in target_shapes(network(pl_module), self.targets).items():  # globs, a+b, <layer>.attn.ov
            k = rank_for(shape, self.rho) if self.rho is not None else self.rank
            if k > min(shape):
                raise ValueError(f"LaserTruncation.rank {k} exceeds the full rank {min(shape)} of {name}")
            ranks[name] = k
        return ranks

    def check_config(self, model: torch.nn.Module, datamodule: Any) -> None:
        self.ranks(model)  # raises, naming the pattern or the rank, before anything runs

    def check_trainer(self, trainer: L.Trainer) -> None:
        """Before a fit: every scheduled truncation must come (a step beyond max_steps never does)."""
        if self.unit == "step" and trainer.max_steps is not None and trainer.max_steps > 0:
            never = [p for p in self.points if p > trainer.max_steps]
            if never:
                raise ValueError(f"LaserTruncation.at_steps {never} come after trainer.max_steps ({trainer.max_steps}): "
                                 "they would never truncate")
        if self.unit == "epoch" and trainer.max_epochs is not None and trainer.max_epochs > 0:
            never = [p for p in self.points if p >= trainer.max_epochs]
            if never:
                raise ValueError(f"LaserTruncation.at_epochs {never} are not before trainer.max_epochs ({trainer.max_epochs}): "
                                 "they would never truncate")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._ranks = self.ranks(pl_module)

    # --- checkpointing: which truncations happened travels with the weights -----------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"done": list(self.done), "unit": self.unit}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("unit", self.unit) == self.unit:
            self.done = list(state["done"])

    # --- schedule ----------------------------------------------------------------------------------------------
    def _due(self, now: int) -> list[int]:
        return [p for p in self.points if p <= now and p not in self.done]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_step = trainer.global_step
        due = self._due(trainer.global_step) if self.unit == "step" else []
        if due:
            late = [p for p in due if p < trainer.global_step]
            if late:  # e.g. resumed from a checkpoint written without this callback
                rank_zero_warn(f"LaserTruncation: steps {late} were passed without truncating; truncating now")
            self._truncate(trainer, pl_module, due)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        due = self._due(trainer.current_epoch) if self.unit == "epoch" else []
        if due:
            self._truncate(trainer, pl_module, due)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if self._last_step is not None and step == self._last_step:
            return  # a gradient-accumulation micro-batch: no optimizer step happened
        self._last_step = step
        due = self._due(step) if self.unit == "step" else []
        if due:
            self._truncate(trainer, pl_module, due)
        elif self.mode == "project" and self.done:
            self._apply(trainer, pl_module)

    # --- the operation -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def _apply(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        net = network(pl_module)
        truncate_(net, self._ranks)
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            # SVD may differ in the last bits between devices; rank 0's result is the one every rank keeps
            params = dict(net.named_parameters())
            for name in touched(self._ranks):
                torch.distributed.broadcast(params[name].data, src=0)

    def _truncate(self, trainer: L.Trainer, pl_module: L.LightningModule, points: list[int]) -> None:
        before = self._evaluate(trainer, pl_module)
        self._apply(trainer, pl_module)
        after = self._evaluate(trainer, pl_module)
        self.done.extend(points)
        event = {self.unit: points[-1], "global_step": trainer.global_step, "ranks": dict(self._ranks), "mode": self.mode,
                 "before": before, "after": after}
        self.events.append(event)
        metrics = {laser_key("before", k): v for k, v in before.items()} | {laser_key("after", k): v for k, v in after.items()}
        log_scalars(trainer, metrics | {LASER_COUNT: len(self.done)})

    def _evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        if not self.evaluate:
            return {}
        evaluate = getattr(pl_module, "evaluate", None)
        dm = trainer.datamodule
        loader = dm.val_dataloader() if dm is not None else trainer.val_dataloaders
        if isinstance(loader, (list, tuple)):  # more validation sets (length generalisation): the main one
            loader = loader[0]
        if evaluate is None or loader is None:
            rank_zero_warn("LaserTruncation: no pl_module.evaluate or validation data; logging no before/after metrics")
            self.evaluate = False
            return {}
        return evaluate(loader)

    def summary(self) -> dict[str, Any]:
        return {"done": self.done, "unit": self.unit, "events": self.events}
