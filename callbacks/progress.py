"""Progress of long runs: a progress bar in optimizer steps with the time left, and an early total-time estimate."""
from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import _update_n
from lightning.pytorch.utilities import rank_zero_info

from callbacks.common import log_scalars
from lightning_modules.metric_keys import ESTIMATED_SECONDS, STEP_SECONDS


class StepProgressBar(TQDMProgressBar):
    """Training progress as optimizer steps against ``trainer.max_steps`` (tqdm shows the time left).

    Lightning's default bar counts batches of the current epoch; on the endless noisy-recall stream it read
    ``Epoch 0/-2`` and ``1500/1249``. The CLI uses this bar whenever the progress bar is on and max_steps is set.
    """

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        super().on_train_epoch_start(trainer, *_)
        if trainer.max_steps and trainer.max_steps > 0:
            bar = self.train_progress_bar
            bar.reset(total=trainer.max_steps)
            bar.initial = bar.n = trainer.global_step  # a resumed run starts where it stopped; rates count from here
            bar.set_description("Training steps")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if not (trainer.max_steps and trainer.max_steps > 0):
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        n = trainer.global_step
        if self._should_update(n, trainer.max_steps):
            _update_n(self.train_progress_bar, n)
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class TrainingTimeEstimate(L.Callback):
    """After the first optimizer steps, prints the measured time per step and the estimated training time for
    ``max_steps`` (validation not included), and logs ``time/step_seconds`` and ``time/estimated_total_seconds``.

    The first step is not timed (it includes start-up). The estimate is made after ``after_steps`` timed steps
    or ``after_seconds`` of training, whichever comes first. Intervals with a validation in them are not counted.
    """

    def __init__(self, after_steps: int = 10, after_seconds: float = 60.0, long_run_seconds: float = 1800.0):
        self.after_steps, self.after_seconds, self.long_run_seconds = after_steps, after_seconds, long_run_seconds
        self.step_seconds: float | None = None
        self.estimate_seconds: float | None = None
        self._last: tuple[int, float] | None = None
        self._timed_steps, self._timed_seconds = 0, 0.0

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = None  # the next interval holds a validation: restart the clock after it

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if self.estimate_seconds is not None or not (trainer.max_steps and trainer.max_steps > 0):
            return
        now, step = time.perf_counter(), trainer.global_step
        if self._last is not None and step > self._last[0]:
            self._timed_steps += step - self._last[0]
            self._timed_seconds += now - self._last[1]
        if self._last is None or step > self._last[0]:
            self._last = (step, now)
        if self._timed_steps and (self._timed_steps >= self.after_steps or self._timed_seconds >= self.after_seconds):
            self.report(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.estimate_seconds is None and self._timed_steps:  # a short run: record the speed, say nothing
            self.report(trainer, quiet=True)

    def report(self, trainer: L.Trainer, quiet: bool = False) -> None:
        self.step_seconds = self._timed_seconds / self._timed_steps
        self.estimate_seconds = self.step_seconds * trainer.max_steps
        left = self.step_seconds * (trainer.max_steps - trainer.global_step)
        message = (f"Training speed: {self.step_seconds:.3g} s/step over {self._timed_steps} steps; {trainer.max_steps} "
                   f"steps take about {format_duration(self.estimate_seconds)} ({format_duration(left)} left), "
                   "validation not included.")
        if self.estimate_seconds > self.long_run_seconds and trainer.accelerator.__class__.__name__ == "CPUAccelerator":
            message += (" This is a long run for a CPU: configs/paper/ are meant for a GPU (README, 'Configs'); "
                        "configs/noisy.yaml is the CPU default.")
        if not quiet:
            rank_zero_info(message)
        if trainer.is_global_zero:
            log_scalars(trainer, {STEP_SECONDS: self.step_seconds, ESTIMATED_SECONDS: self.estimate_seconds})

    def timing(self) -> dict[str, Any]:
        """For summary.json["timing"] (RunSummary)."""
        return {"step_seconds": self.step_seconds, "estimated_total_seconds": self.estimate_seconds}
