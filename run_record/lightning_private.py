"""The one module that touches Lightning's private API (names starting with ``_``), so a Lightning upgrade that
changes one of them fails one test (tests/test_lightning_private.py) instead of a run. ``pyproject.toml`` pins
Lightning to the range the suite has run on; tests/test_layering.py counts the private names used anywhere else (0).

Each entry says what it is for. Eight at most (the issue of round 3 counted 22 call sites).
"""
from __future__ import annotations

from typing import Any, Callable

from lightning.pytorch.cli import LightningCLI

# The private names used here, one per entry below: the test checks each exists with the behaviour relied on.
PRIVATE_NAMES = (
    "LightningCLI._parse_ckpt_path",  # 1. the CLI reads --ckpt_path itself (the config wins over its hparams)
    "LightningCLI._run_subcommand",  # 2. the CLI maps a run's exceptions to one line and an exit code
    "Logger._experiment",  # 3. a logger's run exists (W&B, metrics.csv) without starting one by asking
    "_TrainingEpochLoop._should_accumulate",  # 4. a micro-batch of gradient accumulation: no optimizer step yet
    "_TrainingEpochLoop._num_ready_batches_reached",  # 5. the epoch's last batch
    "Trainer._checkpoint_connector.hpc_save_path",  # 6. where Lightning's SLURM resume looks for a checkpoint
    "WandbLogger._wandb_init",  # 7. the arguments the logger passes to wandb.init (anonymous=None makes W&B warn)
)


class CLIHooks(LightningCLI):
    """LightningCLI with its two private steps exposed as public hooks of the project's CLI."""

    def read_checkpoint_argument(self) -> None:  # replaces Lightning's loading of the checkpoint's hparams
        raise NotImplementedError

    def run_subcommand_guarded(self, run: Callable[[], None]) -> None:  # wraps the subcommand's run
        run()

    def _parse_ckpt_path(self) -> None:
        self.read_checkpoint_argument()

    def _run_subcommand(self, subcommand: str) -> None:
        self.run_subcommand_guarded(lambda: super(CLIHooks, self)._run_subcommand(subcommand))


def experiment_started(logger: Any) -> bool:
    """The logger has made its run (W&B) or writer (CSV) already: ``logger.experiment`` would start one otherwise."""
    return getattr(logger, "_experiment", None) is not None


def experiment_or_none(logger: Any) -> Any:
    return getattr(logger, "_experiment", None)


def set_experiment(logger: Any, experiment: Any) -> None:
    logger._experiment = experiment


def accumulating(trainer: Any) -> bool:
    """This batch is a gradient-accumulation micro-batch: no optimizer step was taken."""
    return trainer.fit_loop.epoch_loop._should_accumulate()


def last_batch_of_epoch(trainer: Any) -> bool:
    return trainer.fit_loop.epoch_loop._num_ready_batches_reached()


def hpc_checkpoint_path(trainer: Any) -> str:
    """``<root>/hpc_ckpt_<n>.ckpt``, the file Lightning's SLURM resume loads when the requeued task starts."""
    return trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir)


def drop_unset_wandb_anonymous(logger: Any) -> None:
    """WandbLogger passes ``anonymous=None`` to wandb.init when the config sets nothing, and W&B warns on every run that
    the setting has no effect: leave it out unless it was set."""
    init = getattr(logger, "_wandb_init", None)
    if isinstance(init, dict) and "anonymous" in init and init["anonymous"] is None:
        del init["anonymous"]
