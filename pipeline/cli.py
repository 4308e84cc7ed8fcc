"""ExperimentCLI: LightningCLI plus the run directory, W&B's mode, and clear errors for bad configs."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.environments import ClusterEnvironment, SLURMEnvironment

from callbacks.run_summary import RunSummary
from pipeline import run_dir, wandb_mode
from pipeline.preemption import SlurmRequeue

# What constructors raise for bad values, missing files or unloadable datasets: shown as one line naming the field
# (set FFVA_TRACEBACK=1 for the full traceback). Anything else is a bug and keeps its traceback.
CONFIG_ERRORS = (ValueError, FileNotFoundError, RuntimeError)


def _as_list(value) -> list:
    if value is None or isinstance(value, bool):
        return []
    return list(value) if isinstance(value, list) else [value]


class SaveAndLogConfig(SaveConfigCallback):
    """Saves config.yaml in the run directory (Lightning's behaviour) and logs the whole resolved config to the
    loggers, so W&B runs can be filtered by any field (``data.init_args.alpha``, ``seed_everything``...)."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        config = self.parser.dump(self.config, skip_none=False, format="json")
        for logger in trainer.loggers:
            logger.log_hyperparams(json.loads(config))


class ExperimentCLI(LightningCLI):
    def __init__(self, args: list[str] | None = None, **kwargs):
        super().__init__(
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=SaveAndLogConfig,
            # run directories are unique (timestamp + random suffix) except for a requeued SLURM task, which
            # comes back to its own directory and must be allowed to write its config again
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"callbacks": [RunSummary(), SlurmRequeue()]},
            auto_configure_optimizers=False,
            args=args,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser) -> None:
        # the model's vocabulary and noise token are facts of the data, never set twice by hand
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.noise_id", "model.init_args.noise_id", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        loggers = _as_list(cfg.trainer.logger)
        name = next((lg.init_args.get("name") for lg in loggers if lg.init_args.get("name")), None)
        name = name or (Path(str(cfg.config[0])).stem if cfg.get("config") else "run")
        self.run_dir = run_dir.run_dir(cfg.trainer.default_root_dir or "runs", name)
        os.environ[run_dir.PARENT_RUN_DIR] = str(self.run_dir)  # inherited by DDP worker processes
        # Point the trainer and loggers at the run directory, but save the config as the user wrote it, so that
        # `main.py fit --config <run>/config.yaml` reproduces the run in a fresh directory.
        self._restore: list[tuple[Namespace, str, object]] = []
        self._override(cfg.trainer, "default_root_dir", str(self.run_dir))
        for lg in loggers:
            self._override(lg.init_args, "save_dir", str(self.run_dir))
            if lg.class_path.endswith(("CSVLogger", "TensorBoardLogger")):
                self._override(lg.init_args, "name", "")
                self._override(lg.init_args, "version", "")
            if lg.class_path.endswith("WandbLogger"):
                mode, reason = wandb_mode.choose_mode()
                os.environ["WANDB_MODE"] = mode
                print(f"W&B mode: {mode} ({reason})", file=sys.stderr)
                # one W&B run per run directory: a requeued SLURM task (same directory) continues its run
                if not lg.init_args.get("id"):
                    self._override(lg.init_args, "id", run_dir.wandb_id(self.run_dir))
                    self._override(lg.init_args, "resume", "allow")
                if os.environ.get("WANDB_RUN_GROUP"):  # a sweep's group (slurm/submit.py) wins over the config's
                    self._override(lg.init_args, "group", os.environ["WANDB_RUN_GROUP"])

    def _override(self, ns: Namespace, key: str, value) -> None:
        self._restore.append((ns, key, ns.get(key)))
        ns[key] = value

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
            if self.datamodule is not None and hasattr(self.model, "check_data"):
                self.model.check_data(self.datamodule)
            if self.datamodule is not None and hasattr(self.datamodule, "check_trainer"):
                self.datamodule.check_trainer(self.trainer)
            for callback in self.trainer.callbacks:  # e.g. parameter patterns that match nothing
                if hasattr(callback, "check_config"):
                    callback.check_config(self.model, self.datamodule)
        except CONFIG_ERRORS as e:
            # constructors validate their arguments and name the field; nothing has run or been written yet
            if os.environ.get("FFVA_TRACEBACK"):
                raise
            print(f"error: invalid configuration: {e}", file=sys.stderr)
            raise SystemExit(2) from e

    def instantiate_trainer(self, **kwargs):
        if SLURMEnvironment.detect():
            # SlurmRequeue checkpoints at a step boundary instead of Lightning's handler. Added here rather than
            # as a config default, so the saved config.yaml stays loadable (the plugin has no YAML form).
            plugins = _as_list(kwargs.get("plugins", self._get(self.config_init, "trainer").get("plugins")))
            if not any(isinstance(p, ClusterEnvironment) for p in plugins):
                kwargs["plugins"] = [*plugins, SLURMEnvironment(auto_requeue=False)]
        return super().instantiate_trainer(**kwargs)

    def after_instantiate_classes(self) -> None:
        for ns, key, value in reversed(self._restore):
            ns[key] = value

    def _finish_wandb(self) -> None:
        # Lightning leaves the W&B run open; close it so the next run in this process (a notebook, a test) is its own
        wandb = sys.modules.get("wandb")
        if wandb is not None and wandb.run is not None:
            wandb.finish()

    after_fit = after_validate = after_test = after_predict = _finish_wandb
