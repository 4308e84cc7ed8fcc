"""FinalValidation: every fit that completes evaluates its final weights, once, and checkpoints them."""
from __future__ import annotations

import lightning as L

from run_record.lightning_private import accumulating, last_batch_of_epoch
from run_record.contract import RecordedCallback


def is_last_step(trainer: L.Trainer) -> bool:
    """The optimizer step just taken is the last of the fit (max_steps reached, or the last batch of the last epoch)."""
    if accumulating(trainer):
        return False  # a gradient-accumulation micro-batch: no optimizer step yet
    if trainer.max_steps is not None and trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
        return True
    last_epoch = trainer.max_epochs is not None and trainer.max_epochs > 0 and trainer.current_epoch + 1 >= trainer.max_epochs
    return last_epoch and last_batch_of_epoch(trainer)


class FinalValidation(RecordedCallback, L.Callback):
    """Asks Lightning to stop after the last optimizer step, which makes it validate there (and the checkpoint
    callback save), unless ``val_check_interval`` already falls on that step: one validation either way.

    Without it, a run whose ``max_steps`` is not a multiple of ``val_check_interval`` ends with the metrics and the
    checkpoint of an earlier step (or none at all, when it ends before the first validation). The CLI adds it to
    every run.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if is_last_step(trainer):
            trainer.should_stop = True
