"""Progress of long runs: a progress bar in optimizer steps with the time left, and an early total-time estimate."""
from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import _update_n
from lightning.pytorch.utilities import rank_zero_info

from callbacks.common import log_scalars
from run_record.names import ESTIMATED_SECONDS, STEP_SECONDS
from run_record.contract import RecordedCallback


class StepProgressBar(RecordedCallback, TQDMProgressBar):
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

    def init_validation_tqdm(self):
        # one line per validation batch buries the training bar and the estimates: the validation bar stays hidden
        bar = super().init_validation_tqdm()
        bar.disable = True
        return bar

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        # Lightning's v_num is the logger's version, neither the run directory nor anything a user can use
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics

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


CPU_DEFAULT = "configs/noisy.yaml"


def long_run_advice(configs: list[str]) -> str:
    """What to say of a run estimated long on a CPU, from the config files it runs: a paper config is meant for a GPU
    and the CPU default is named; for any other (the CPU default itself), fewer steps or a GPU."""
    names = [c.replace("\\", "/") for c in configs]
    paper = [c for c in names if "configs/paper/" in c]
    if paper:
        return (f"This is a long run for a CPU: {paper[0]} is meant for a GPU (README, 'Configs'); {CPU_DEFAULT} is the "
                "CPU default.")
    return ("This is a long run for a CPU: fewer steps (--trainer.max_steps) or a GPU (--trainer.accelerator gpu) "
            "shorten it.")


class TrainingTimeEstimate(RecordedCallback, L.Callback):
    """After the first optimizer steps, prints the measured time per step and the estimated time for ``max_steps``,
    and after the first validation the same with the validations included (their measured time times their number),
    so the total covers training, callbacks and evaluation. Logs ``time/step_seconds`` and
    ``time/estimated_total_seconds``.

    The first step is not timed (it includes start-up). The first estimate comes after ``after_steps`` timed steps or
    ``after_seconds`` of training, whichever is first. Step intervals with a validation in them are timed as validation.
    """

    def __init__(self, after_steps: int = 10, after_seconds: float = 60.0, long_run_seconds: float = 1800.0):
        self.after_steps, self.after_seconds, self.long_run_seconds = after_steps, after_seconds, long_run_seconds
        self.configs: list[str] = []  # the run's --config files, set by the CLI: the advice for a long CPU run names them
        self.step_seconds: float | None = None
        self.estimate_seconds: float | None = None
        self.validation_seconds: float | None = None
        self._last: tuple[int, float] | None = None
        self._timed_steps, self._timed_seconds = 0, 0.0
        self._val_start: float | None = None
        self._with_validation = False

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = None  # the next interval holds a validation: restart the step clock after it
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._val_start is None or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        if self.validation_seconds is None:
            self.validation_seconds = time.perf_counter() - self._val_start
            if self.step_seconds is not None and not self._with_validation:
                self.report(trainer)  # the estimate again, validation included

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if self.step_seconds is not None or not (trainer.max_steps and trainer.max_steps > 0):
            return
        now, step = time.perf_counter(), trainer.global_step
        if self._last is not None and step > self._last[0]:
            self._timed_steps += step - self._last[0]
            self._timed_seconds += now - self._last[1]
        if self._last is None or step > self._last[0]:
            self._last = (step, now)
        if self._timed_steps and (self._timed_steps >= self.after_steps or self._timed_seconds >= self.after_seconds):
            self.step_seconds = self._timed_seconds / self._timed_steps
            self.report(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.step_seconds is None and self._timed_steps:  # a short run: record the speed, say nothing
            self.step_seconds = self._timed_seconds / self._timed_steps
            self.report(trainer, quiet=True)

    @staticmethod
    def validations(trainer: L.Trainer) -> int:
        every = trainer.val_check_batch if isinstance(trainer.val_check_batch, int) else None
        if not every or not trainer.max_steps or trainer.max_steps < 0:
            return 0
        return trainer.max_steps // every + (trainer.max_steps % every != 0)  # FinalValidation adds the last one

    def report(self, trainer: L.Trainer, quiet: bool = False) -> None:
        steps = trainer.max_steps
        n_val = self.validations(trainer)
        train = self.step_seconds * steps
        if self.validation_seconds is not None:
            self._with_validation = True
            self.estimate_seconds = train + self.validation_seconds * n_val
            left = self.step_seconds * (steps - trainer.global_step) + self.validation_seconds * max(
                0, n_val - trainer.global_step // max(1, trainer.val_check_batch if isinstance(trainer.val_check_batch, int) else 1))
            message = (f"Estimated time: {format_duration(self.estimate_seconds)} for {steps} steps, training "
                       f"({self.step_seconds:.3g} s/step, callbacks included) and {n_val} validations "
                       f"({self.validation_seconds:.3g} s each); about {format_duration(left)} left.")
        else:
            self.estimate_seconds = train
            message = (f"Training speed: {self.step_seconds:.3g} s/step over {self._timed_steps} steps (callbacks "
                       f"included); {steps} steps take about {format_duration(train)} of training. Validation is not "
                       f"measured yet ({n_val} ahead): the estimate with it follows the first one.")
        if self.estimate_seconds > self.long_run_seconds and trainer.accelerator.__class__.__name__ == "CPUAccelerator":
            message += " " + long_run_advice(self.configs)
        if not quiet:
            rank_zero_info(message)
        if trainer.is_global_zero:
            log_scalars(trainer, {STEP_SECONDS: self.step_seconds, ESTIMATED_SECONDS: self.estimate_seconds})

    def timing(self) -> dict[str, Any]:
        """For summary.json["timing"] (RunSummary)."""
        return {"step_seconds": self.step_seconds, "validation_seconds": self.validation_seconds,
                "estimated_total_seconds": self.estimate_seconds}
