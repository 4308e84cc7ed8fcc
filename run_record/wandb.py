"""The run's W&B side, found one way everywhere: by the logger's class, never by its name as a string."""
from __future__ import annotations

import sys
from typing import Any


def is_wandb(logger: Any) -> bool:
    from lightning.pytorch.loggers import WandbLogger  # importing the logger class does not import wandb

    return isinstance(logger, WandbLogger)


def is_wandb_path(class_path: str) -> bool:
    """A config's ``trainer.logger`` entry is Lightning's WandbLogger (before anything is built)."""
    return class_path in ("lightning.pytorch.loggers.WandbLogger", "lightning.pytorch.loggers.wandb.WandbLogger",
                          "pytorch_lightning.loggers.WandbLogger", "WandbLogger")


def wandb_logger(loggers: list) -> Any | None:
    return next((lg for lg in loggers if is_wandb(lg)), None)


def wandb_run(trainer: Any) -> Any | None:
    """The W&B run of the first WandbLogger on global rank zero, or None."""
    if not trainer.is_global_zero:
        return None
    logger = wandb_logger(trainer.loggers)
    return logger.experiment if logger is not None else None


def finish_wandb(exit_code: int | None = None) -> None:
    """Close this process's W&B run, if any, and wandb's process-wide state (its settings, the mode among them), so
    the run id is released now and the next run in this process starts afresh."""
    wandb = sys.modules.get("wandb")  # never imported here: runs without W&B stay without it
    if wandb is None:
        return
    if wandb.run is not None:
        wandb.finish(exit_code=exit_code)
    wandb.teardown()
