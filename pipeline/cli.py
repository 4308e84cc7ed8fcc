"""ExperimentCLI: LightningCLI plus the run directory, W&B's mode, and clear errors for bad input.

Everything the config says is checked before any compute and before anything is written (README, "Configs and
the CLI"): the parser's errors come as one line naming the key, then the constructors' value checks, the
checkpoint, the trainer's bounds and each callback's own checks.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
from pathlib import Path

import torch
import yaml
from jsonargparse import Namespace
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import SaveConfigCallback
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.plugins.environments import ClusterEnvironment, SLURMEnvironment

from callbacks.final_validation import FinalValidation
from callbacks.progress import StepProgressBar, TrainingTimeEstimate
from run_record.summary import RunSummary
from pipeline import console, hub_mode, preflight
from run_record.lightning_private import drop_unset_wandb_anonymous
from run_record import checkpoints, lock, run_dir, wandb_mode
from pipeline.config_errors import check_config_files, fail, report_parser_exit, summarize
from run_record.history import HistoryResume, RunHistory
from pipeline.preemption import SlurmRequeue
from run_record import files
from run_record.contract import RecordedCallback, RecordedData, RecordedModule
from run_record.lightning_private import CLIHooks
from run_record.wandb import finish_wandb, is_wandb_path

# What constructors raise for bad values, missing files or unloadable datasets: shown as one line naming the field
# (set FFVA_TRACEBACK=1 for the full traceback). Anything else is a bug and keeps its traceback.
CONFIG_ERRORS = (ValueError, FileNotFoundError, RuntimeError, MisconfigurationException)


def _as_list(value) -> list:
    if value is None or isinstance(value, bool):
        return []
    return list(value) if isinstance(value, list) else [value]


def check_finite_hyperparameters(optimizers) -> None:
    """An optimizer's numbers are finite (``lr inf`` passes torch's own check and trains to NaN)."""
    import math

    found = optimizers.get("optimizer") if isinstance(optimizers, dict) else optimizers
    for opt in _as_list(found[0] if isinstance(found, tuple) else found):
        for group in getattr(opt, "param_groups", []):
            for key, value in group.items():
                if isinstance(value, float) and not math.isfinite(value):
                    raise ValueError(f"model.optimizer.init_args.{key} must be a finite number, got {value}")


class SaveAndLogConfig(RecordedCallback, SaveConfigCallback):
    """Saves config.yaml in the run directory, whole (Lightning's own save writes it in place), and logs the whole
    resolved config to the loggers, so W&B runs can be filtered by any field (``data.init_args.alpha``...)."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.run_dir = trainer.log_dir  # broadcasts: read on every rank, before the rank-zero-only save_config
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer, pl_module, stage: str) -> None:
        files.write_text(os.path.join(self.run_dir, files.CONFIG_FILE), self.parser.dump(self.config, skip_none=False))
        config = self.parser.dump(self.config, skip_none=False, format="json")
        for logger in trainer.loggers:
            logger.log_hyperparams(json.loads(config))


def _option_strings(parser) -> list[str]:
    """Every option string of the parser and its subcommands' parsers (for "did you mean")."""
    out = list(parser._option_string_actions)
    sub = getattr(parser, "_subcommands_action", None)
    for child in (sub._name_parser_map.values() if sub is not None else ()):
        out += list(child._option_string_actions)
    return list(dict.fromkeys(out))


class ExperimentCLI(CLIHooks):
    def __init__(self, args: list[str] | None = None, **kwargs):
        console.quiet()
        self.run_lock: lock.RunLock | None = None
        try:
            self._start(args, **kwargs)
        finally:  # the run directory is free for the next process (a resume) as soon as this one is done with it
            if self.run_lock is not None:
                self.run_lock.release()

    def _start(self, args, **kwargs) -> None:
        super().__init__(
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=SaveAndLogConfig,
            # run directories are unique except for a resumed run (a requeued SLURM task, `fit --ckpt_path` from
            # the run's own checkpoint), which comes back to its own directory and writes the same config again;
            # SaveAndLogConfig writes it itself, whole
            save_config_kwargs={"overwrite": True, "save_to_log_dir": False},
            trainer_defaults={"callbacks": [FinalValidation(), TrainingTimeEstimate(), RunSummary(), SlurmRequeue(),
                                            HistoryResume(), console.model_summary()]},
            auto_configure_optimizers=False,
            # argparse completes an unambiguous prefix (--trainer.max_step would set max_steps): a key must be exact
            parser_kwargs={"allow_abbrev": False, **{c: {"allow_abbrev": False} for c in ("fit", "validate", "test", "predict")}},
            args=args,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser) -> None:
        # the model's vocabulary and noise token are facts of the data, never set twice by hand
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.noise_id", "model.init_args.noise_id", apply_on="instantiate")
        # a pretrained model's prompts are tokenized by its own tokenizer at its own revision: overriding
        # model.init_args.model_name alone switches both (data classes without these arguments are left alone)
        parser.link_arguments("model.init_args.model_name", "data.init_args.tokenizer", apply_on="parse")
        parser.link_arguments("model.init_args.revision", "data.init_args.revision", apply_on="parse")
        parser.link_arguments("model.init_args.gguf_file", "data.init_args.gguf_file", apply_on="parse")
        parser.add_argument("--report", type=bool, default=True,
                            help="write the run's report (<run>/report/index.html) when it ends (python -m reports later)")

    def before_test(self) -> None:
        # Lightning's table of every logged key (thousands of lines for a search over prompt types) is off unless
        # asked for with --verbose: the results table printed last says what matters. (Its default cannot be set on
        # the parser: the subcommand's method arguments are added after add_arguments_to_parser.)
        if not any(a == "--verbose" or a.startswith("--verbose=") for a in self.argv):
            self.config_init[self.subcommand]["verbose"] = False

    before_validate = before_test

    def parse_arguments(self, parser, args) -> None:
        self.argv = list(sys.argv[1:] if args is None else args)
        check_config_files(self.argv)
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                super().parse_arguments(parser, args)
        except SystemExit as e:
            report_parser_exit(stderr.getvalue(), e, _option_strings(parser))
        sys.stderr.write(stderr.getvalue())  # warnings stay visible
        cfg = self.config[self.config.subcommand] if self.config.get("subcommand") else self.config
        try:  # before Lightning seeds (numpy refuses a seed out of its range with a raw traceback)
            preflight.check_trainer(cfg)
        except ValueError as e:
            fail(f"invalid configuration: {e}")

    def read_checkpoint_argument(self) -> None:
        """Lightning would load the checkpoint's hyperparameters over the config here. Instead: read the checkpoint
        (a clear error if it is missing or corrupt), and compare it with the model once that is built."""
        self.checkpoint = None
        path = self.config[self.config.subcommand].get("ckpt_path") if self.config.get("subcommand") else None
        if path:
            try:
                self.checkpoint = checkpoints.read(path)
            except checkpoints.CheckpointError as e:
                fail(str(e))

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        try:  # what the config's classes say about it, before any of them allocates or loads anything
            preflight.check(self.subcommand, cfg)
            files.check_writable(cfg.trainer.default_root_dir or "runs", "trainer.default_root_dir")
            for lg in _as_list(cfg.trainer.logger):
                if is_wandb_path(lg.class_path):
                    wandb_mode.check_env()
        except ModuleNotFoundError as e:  # an optional package: named with its install command, not a config error
            fail(f"missing package: {e}")
        except (ValueError, FileNotFoundError) as e:
            fail(f"invalid configuration: {e}")
        if preflight.uses_hub(cfg):  # decided once, here, before anything loads (like the W&B mode)
            mode, reason = hub_mode.choose()
            print(f"Hugging Face hub: {mode} ({reason})", file=sys.stderr)
        loggers = _as_list(cfg.trainer.logger)
        name = next((lg.init_args.get("name") for lg in loggers if lg.init_args.get("name")), None)
        name = name or (Path(str(cfg.config[0])).stem if cfg.get("config") else "run")
        resumed = self._resumed_run(cfg)
        self.run_dir = resumed or run_dir.run_dir(cfg.trainer.default_root_dir or "runs", name)
        if self.run_dir.exists():  # an existing run (a resume, a requeue): held before anything is touched in it
            self._lock_run_dir()
        if resumed is not None:
            files.remove_partials(resumed)  # what a killed earlier part of this run was writing (it holds no lock)
        os.environ[run_dir.PARENT_RUN_DIR] = str(self.run_dir)  # inherited by DDP worker processes
        self._restore: list[tuple[Namespace, str, object]] = []
        # Point the trainer and loggers at the run directory, but save the config as the user wrote it, so that
        # `main.py fit --config <run>/config.yaml` reproduces the run in a fresh directory.
        self._override(cfg.trainer, "default_root_dir", str(self.run_dir))
        for lg in loggers:
            self._override(lg.init_args, "save_dir", str(self.run_dir))
            if lg.class_path.endswith(("CSVLogger", "TensorBoardLogger")):
                self._override(lg.init_args, "name", "")
                self._override(lg.init_args, "version", "")
            if is_wandb_path(lg.class_path):
                mode, reason = wandb_mode.choose_mode()
                os.environ["WANDB_MODE"] = mode
                warn = "warning: " if reason.startswith("WANDB_MODE=online") else ""
                print(f"{warn}W&B mode: {mode} ({reason})", file=sys.stderr)
                # one W&B run per run directory: a resumed run (same directory) continues its W&B run
                if not lg.init_args.get("id"):
                    self._override(lg.init_args, "id", run_dir.wandb_id(self.run_dir))
                    self._override(lg.init_args, "resume", "allow")
                if os.environ.get("WANDB_RUN_GROUP"):  # a sweep's group (slurm/submit.py) wins over the config's
                    self._override(lg.init_args, "group", os.environ["WANDB_RUN_GROUP"])

    def _resumed_run(self, cfg: Namespace) -> Path | None:
        """``fit --ckpt_path <run>/checkpoints/x.ckpt`` with that run's own config continues that run's directory
        (and so its W&B run). With any other config it is a new run that starts from those weights."""
        path = cfg.get("ckpt_path")
        previous = run_dir.run_of_checkpoint(path) if path and self.subcommand == "fit" else None
        if previous is None:
            return None
        strip = lambda d: {k: v for k, v in (d or {}).items() if k not in ("ckpt_path", "config", "__path__")}  # noqa: E731
        try:
            saved = yaml.safe_load((previous / run_dir.CONFIG_FILE).read_text())
            now = yaml.safe_load(self._parser(self.subcommand).dump(cfg, skip_none=False))
        except Exception:  # noqa: BLE001  an unreadable old config: start a new directory
            return None
        return previous if strip(saved) == strip(now) else None

    def config_value(self, config: Namespace, key: str, default=None):
        """A config value, inside the subcommand's namespace when there is one."""
        return config.get(str(self.subcommand), config).get(key, default)

    def _lock_run_dir(self) -> None:
        """One process per run directory (run_record/lock.py): taken before anything is written into it; a new
        directory is locked once the config has passed every check, so bad input leaves no directory behind."""
        if self.run_lock is None and lock.is_launcher():
            try:
                self.run_lock = lock.RunLock(self.run_dir).acquire()
            except lock.RunDirectoryBusy as e:
                fail(str(e))

    def _override(self, ns: Namespace, key: str, value) -> None:
        self._restore.append((ns, key, ns.get(key)))
        ns[key] = value

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
            self._check_before_compute()
            self._lock_run_dir()
        except ModuleNotFoundError as e:
            fail(f"missing package: {e}" if "pip install" in str(e) else
                 f"missing package {e.name}: pip install {e.name} (or pip install -e '.[pretrained]' for pretrained models)")
        except CONFIG_ERRORS as e:
            # constructors validate their arguments and name the field; nothing has run or been written yet
            if os.environ.get("FFVA_TRACEBACK"):
                raise
            message = str(e)
            if isinstance(e, MisconfigurationException):  # raised by the Trainer: accelerator, devices, strategy...
                t = self.config_value(self.config, "trainer")
                message = f"trainer (accelerator={t.get('accelerator')!r}, devices={t.get('devices')!r}, strategy={t.get('strategy')!r}): {e}"
                if t.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
                    message += " This machine has no usable GPU: use --trainer.accelerator cpu (or auto)."
            nested = "Does not validate against" in message or 'Parser key "' in message  # wrapped by jsonargparse
            fail(f"invalid configuration: {summarize(message) if nested else message}")

    def config_files(self) -> list[str]:
        """The --config files of the command line, in order."""
        out = []
        for i, arg in enumerate(self.argv):
            if arg == "--config" and i + 1 < len(self.argv):
                out.append(self.argv[i + 1])
            elif arg.startswith("--config="):
                out.append(arg.split("=", 1)[1])
        return out

    def _check_before_compute(self) -> None:
        model, data, trainer = self.model, self.datamodule, self.trainer
        for callback in trainer.callbacks:
            if isinstance(callback, TrainingTimeEstimate):  # its advice for a long CPU run names the run's own config
                callback.configs = self.config_files()
        if self.config_value(self.config, "trainer").get("enable_model_summary") is False:
            # the summary is a default callback here, which Lightning's flag alone would not remove
            trainer.callbacks[:] = [c for c in trainer.callbacks if type(c).__name__ != "ModelSummaryWithoutZeroFlops"]
        for logger in trainer.loggers:
            drop_unset_wandb_anonymous(logger)
        if data is not None and isinstance(model, RecordedModule):
            model.check_data(data)
        if isinstance(data, RecordedData):
            data.check_trainer(trainer, self.subcommand)
        for callback in trainer.callbacks:  # e.g. parameter patterns that match nothing, steps that never come
            if isinstance(callback, RecordedCallback):
                callback.check_config(model, data)
                if self.subcommand == "fit":
                    callback.check_trainer(trainer)
        if self.checkpoint is not None:
            checkpoints.check_fits(self.config_value(self.config, "ckpt_path"), self.checkpoint, model)
        elif self.subcommand in ("validate", "test") and isinstance(model, RecordedModule) and model.trained_by_fit:
            model.evaluated_untrained = True
            print(f"warning: no --ckpt_path: `{self.subcommand}` evaluates the model at its random initialisation "
                  "(untrained); summary.json records untrained: true", file=sys.stderr)
        if self.subcommand == "fit":
            try:  # a bad optimizer setting (negative lr...) fails here, not after the run directory is written
                optimizers = model.configure_optimizers()
            except (ValueError, TypeError) as e:
                raise ValueError(f"model.optimizer / model.scheduler: {e}") from e
            check_finite_hyperparameters(optimizers)

    def instantiate_trainer(self, **kwargs):
        if SLURMEnvironment.detect():
            # SlurmRequeue checkpoints at a step boundary instead of Lightning's handler. Added here rather than
            # as a config default, so the saved config.yaml stays loadable (the plugin has no YAML form).
            plugins = _as_list(kwargs.get("plugins", self.config_value(self.config_init, "trainer").get("plugins")))
            if not any(isinstance(p, ClusterEnvironment) for p in plugins):
                kwargs["plugins"] = [*plugins, SLURMEnvironment(auto_requeue=False)]
        trainer_cfg = self.config_value(self.config_init, "trainer")
        plugins = _as_list(kwargs.get("plugins", trainer_cfg.get("plugins")))
        if not any(isinstance(p, CheckpointIO) for p in plugins):  # checkpoints written whole
            kwargs["plugins"] = [*plugins, checkpoints.AtomicCheckpointIO()]
        # the full metric history in the run directory (metrics.csv), whatever else logs: curves without W&B
        logger = kwargs.get("logger", trainer_cfg.get("logger"))
        loggers = [] if logger in (None, True, False) else _as_list(logger)
        if not any(isinstance(lg, RunHistory) for lg in loggers):
            kwargs["logger"] = [*loggers, RunHistory(save_dir=str(self.run_dir))]
        callbacks = _as_list(trainer_cfg.get("callbacks"))
        if trainer_cfg.get("enable_progress_bar") is not False and not any(
            isinstance(c, ProgressBar) for c in callbacks
        ):  # steps against max_steps with the time left (the same place Lightning would add its own bar)
            self.trainer_defaults = {**self.trainer_defaults, "callbacks": [*self.trainer_defaults["callbacks"], StepProgressBar()]}
        return super().instantiate_trainer(**kwargs)

    def after_instantiate_classes(self) -> None:
        for ns, key, value in reversed(self._restore):
            ns[key] = value

    def run_subcommand_guarded(self, run) -> None:
        try:
            run()
        except SIGTERMException:  # Lightning's exits with code 0; a terminated run must not look like a finished one
            raise SystemExit(128 + signal.SIGTERM) from None
        except SystemExit as e:
            summary = self._run_summary()
            if summary is not None and summary.stopped_by == "SIGINT":
                # Lightning ends a Ctrl-C with exit(1), and leaves SIGINT ignored: the shell's convention is 130, and
                # the next run in this process (a local sweep's next task) must be interruptible again
                signal.signal(signal.SIGINT, signal.default_int_handler)
                raise SystemExit(128 + signal.SIGINT) from None
            raise e
        except FloatingPointError as e:  # a diverged run: summary.json already says failed, with this error
            fail(f"{e} (run directory: {self.run_dir})", code=1)
        except OSError as e:  # a full disk, a directory gone read-only: summary.json says failed, with this line
            if os.environ.get("FFVA_TRACEBACK"):
                raise
            where = e.filename or self.run_dir
            fail(f"{e.strerror or e} ({where}); run directory: {self.run_dir}" if not isinstance(e, files.WriteError)
                 else f"{e}; run directory: {self.run_dir}", code=1)

    def _run_summary(self) -> RunSummary | None:
        return next((cb for cb in self.trainer.callbacks if isinstance(cb, RunSummary)), None)

    def _finish(self) -> None:
        # Lightning leaves the W&B run open; close it so the next run in this process (a notebook, a test) is its own
        finish_wandb()
        if self.trainer.is_global_zero:
            summary = self._run_summary()
            console.finish(summary, self.run_dir, bool(self.config_value(self.config, "report", True)))

    after_fit = after_validate = after_test = after_predict = _finish
