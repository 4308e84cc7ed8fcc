"""RunSummary: keeps ``summary.json`` in the run directory current and prints the results table at the end."""
from __future__ import annotations

import glob
import json
import math
import os
import re
import shlex
import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities import rank_zero_only

from run_record.names import TABLE_ORDER, split_metric
from run_record import files, machine, schema
from run_record.kinds import SCHEMA_VERSION
from run_record.files import CHECKPOINT_DIR, CONFIG_FILE, SUMMARY_FILE, WriteError
from run_record.contract import RecordedCallback, RecordedModule, RecordWriter
from run_record.lightning_private import experiment_started
from run_record.wandb import finish_wandb, wandb_logger

TABLE_METRICS = TABLE_ORDER  # column order of the printed table; other metrics follow in the order they were logged


def variants_table(metrics: dict[str, float], stage: str = "val") -> dict[str, dict[str, float]]:
    """``{"val/<variant>/<metric>": x}`` -> ``{variant: {metric: x}}`` (variants keep their logged order)."""
    table: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == stage:
            table.setdefault(parts[1], {})[parts[2]] = value
    return table


# metrics that count (GSM8K: documents, prompts the harness cut, answers flipped either way), printed as integers
COUNT_COLUMNS = ("n_", "truncated_prompts", "right_to_wrong", "wrong_to_right")


def format_table(table: dict[str, dict[str, float]]) -> str:
    """The main test set's metrics per variant; metrics of the other test sets (``<metric>@<set>``) follow as one row
    per (variant, set)."""
    by_set: dict[str, dict[str, float]] = {}
    main: dict[str, dict[str, float]] = {}
    for variant, row in table.items():
        for metric, value in row.items():
            name, test_set = split_metric(metric)
            target = by_set.setdefault(f"{variant} @ {test_set}", {}) if test_set else main.setdefault(variant, {})
            target[name] = value
    if not main:  # every metric names its test set (GSM8K: one per shot count)
        return _format(by_set)
    return _format(main) + ("\n\nOn the other test sets (<metric>@<set>):\n" + _format(by_set) if by_set else "")


def _format(table: dict[str, dict[str, float | None]]) -> str:
    logged = list(dict.fromkeys(m for row in table.values() for m in row))
    cols = [m for m in TABLE_METRICS if m in logged] + [m for m in logged if m not in TABLE_METRICS]
    width = max([len("variant")] + [len(v) for v in table])
    def cell(column: str, x) -> str:
        if not isinstance(x, (int, float)):
            return f"{'n/a':>9}"  # undefined: a mean over no position
        if column.startswith(COUNT_COLUMNS) and float(x).is_integer():
            return f"{int(x):>9d}"  # a count, not a measurement with 4 decimals
        return f"{x:>9.4f}"
    lines = [f"{'variant':<{width}}  " + "  ".join(f"{c:>9}" for c in cols)]
    for variant, row in table.items():
        lines.append(f"{variant:<{width}}  " + "  ".join(cell(c, row.get(c)) for c in cols))
    return "\n".join(lines)


def finite(value: Any) -> Any:
    """JSON has no NaN: a non-finite number anywhere in the record (an SNR over a zero spread...) becomes null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def sweep_task() -> dict | None:
    """The sweep task and attempt this run belongs to (set by ``pipeline.sweep``), recorded so a sweep's table counts
    a run for the attempt that made it and never for another grid point."""
    raw = os.environ.get(files.SWEEP_TASK_ENV)
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def latest_checkpoint(trainer: L.Trainer, run_dir: str) -> str | None:
    """The checkpoint a stopped run resumes from: the checkpoint callback's last save, else the newest file."""
    ckpt = trainer.checkpoint_callback
    for path in (getattr(ckpt, "last_model_path", ""), getattr(ckpt, "best_model_path", "")):
        if path and os.path.isfile(path):
            return path
    files = glob.glob(os.path.join(run_dir, CHECKPOINT_DIR, "*.ckpt")) + glob.glob(os.path.join(run_dir, "hpc_ckpt_*.ckpt"))
    return max(files, key=os.path.getmtime) if files else None


class RunSummary(RecordedCallback, L.Callback):
    """Writes ``summary.json`` after every validation/test (status ``running``), and at the end ``completed``
    (or ``failed`` with the error, ``interrupted`` after Ctrl-C, or ``requeued`` by SLURM), so a run that stops
    early leaves its latest numbers."""

    def __init__(self) -> None:
        self.results_text: str | None = None  # the results table, once the run has completed
        self.final: dict[str, Any] = {}  # the final summary
        self.start = time.time()
        self.eval_step: int | None = None
        self.run_dir: str | None = None
        self.stopped_by: str | None = None  # "SIGINT" (Ctrl-C) or "SIGTERM": the run was interrupted from outside

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.start = time.time()
        # trainer.log_dir broadcasts, so it is read here on every rank, never inside rank-zero-only code
        self.run_dir = os.path.abspath(trainer.log_dir)
        # checkpoints live in the run directory too (Lightning would otherwise nest them under the logger's id)
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and getattr(ckpt, "dirpath", None) is None:
            ckpt.dirpath = os.path.join(self.run_dir, CHECKPOINT_DIR)

    def _metrics(self, trainer: L.Trainer) -> tuple[dict[str, float | None], list[str]]:
        """The logged scalars (``step`` is Lightning's x axis, not a metric); undefined ones (a mean over no scored
        position, NaN) are None, and listed."""
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1 and k != "step"}
        undefined = sorted(k for k, v in metrics.items() if not math.isfinite(v))
        return {k: (None if k in undefined else v) for k, v in metrics.items()}, undefined

    def _record_files(self, trainer: L.Trainer) -> dict[str, dict[str, Any]]:
        """What the run directory holds right now, as its writers declare it (``record_files()``: the paths written,
        flushed first), with sizes and digests: a reader tells a damaged or changed file from the run's own."""
        paths = [os.path.join(self.run_dir, CONFIG_FILE)]
        for owner in [*trainer.loggers, *trainer.callbacks, trainer.lightning_module, trainer.datamodule]:
            if isinstance(owner, RecordWriter):
                paths += owner.record_files() or []
        out = {}
        for path in dict.fromkeys(paths):
            if os.path.isfile(path):
                out[os.path.relpath(path, self.run_dir)] = {"bytes": os.path.getsize(path), "sha256": files.sha256(path)}
        return out

    @rank_zero_only
    def write(self, trainer: L.Trainer, status: str, stage: str = "val", error: str | None = None) -> dict[str, Any]:
        if self.run_dir is None:  # failed before setup: nothing to summarise yet
            return {}
        metrics, undefined = self._metrics(trainer)
        module = trainer.lightning_module
        recorded = isinstance(module, RecordedModule)
        summary: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            # what experiment this is, as the writers declare it (reports/kinds/ dispatches on it)
            "kinds": self._kinds(trainer),
            "status": status,
            "run_dir": self.run_dir,
            "config": os.path.join(self.run_dir, CONFIG_FILE),
            "seed": int(os.environ["PL_GLOBAL_SEED"]) if "PL_GLOBAL_SEED" in os.environ else None,
            "global_step": trainer.global_step,
            "ckpt_path": trainer.ckpt_path,  # the checkpoint a validate/test run evaluated
            "eval_step": self.eval_step,
            "wall_time_s": round(time.time() - self.start, 3),
            "timing": next((t for cb in trainer.callbacks if isinstance(cb, RecordedCallback) and (t := cb.timing())), None),
            # evaluated with no checkpoint: the model's random initialisation (set by the CLI)
            "untrained": bool(recorded and module.evaluated_untrained),
            "weights": self._weights(trainer),
            "machine": machine.describe(trainer),  # what ran it: the digits of the metrics depend on it
            "metrics": metrics,
            # metrics that are null: a mean over no scored position (a test set without a repeated trigger)
            "undefined_metrics": {k: "no scored position (a mean over none)" for k in undefined},
            "variants": variants_table(metrics, stage),
            # what each variant is (its matrices' ranks): readers never parse a variant's name
            "variant_specs": module.variant_specs() if recorded else {},
            "sweep_task": sweep_task(),
            "wandb": self._wandb_info(trainer),
            # what was evaluated, where the module says (e.g. a pretrained checkpoint's resolved commit)
            "model": module.run_info() if recorded else None,
            # what the module measured beyond scalar metrics (e.g. GSM8K scores per setting and the selected variant)
            "results": module.results_summary() if recorded else None,
            # what callbacks measured (LaserTruncation events, GradientNoise SNRs, ...), by declared section name
            "callbacks": self._callback_summaries(trainer),
        }
        if error is not None:
            summary["error"] = error
        self._check_schema(summary)
        path = os.path.join(self.run_dir, SUMMARY_FILE)
        try:
            summary["files"] = self._record_files(trainer)
            summary = finite(summary)
            files.write_json(path, summary)  # whole: a reader sees the previous summary or this one
        except WriteError as e:
            if status == "running":
                raise  # the run stops here (the CLI prints the line); on_exception records it as failed
            # the run is ending anyway (full disk?): the final status matters more than the numbers
            short = {k: summary[k] for k in ("status", "run_dir", "config", "seed", "global_step", "eval_step", "sweep_task")}
            short["error"] = f"{error + '; ' if error else ''}{e}; the full summary could not be written"
            try:
                files.write_json(path, short)
            except WriteError as again:
                print(f"error: {again}: summary.json keeps its previous content", file=sys.stderr)
                return summary
            summary = short
        return summary

    @staticmethod
    def _weights(trainer: L.Trainer) -> str:
        """Which weights the numbers are of: ``trained`` (this fit), ``checkpoint`` (--ckpt_path), ``random
        initialisation`` (validate/test of a trained-by-fit model without a checkpoint) or ``pretrained``."""
        module = trainer.lightning_module
        if isinstance(module, RecordedModule) and module.evaluated_untrained:
            return "random initialisation"
        if trainer.state.fn == "fit":
            return "trained"
        if trainer.ckpt_path:
            return "checkpoint"
        return "pretrained" if not (isinstance(module, RecordedModule) and module.trained_by_fit) else "trained"

    def _check_schema(self, summary: dict) -> None:
        problems = schema.check(finite(summary))
        if not problems:
            return
        if os.environ.get("FFVA_STRICT_RECORD"):
            raise AssertionError("summary.json does not match run_record/schema.py:\n" + "\n".join(problems))
        if not getattr(self, "_schema_warned", False):
            self._schema_warned = True
            print(f"warning: summary.json differs from its schema (run_record/schema.py), written anyway: {problems[0]}",
                  file=sys.stderr)

    @staticmethod
    def _kinds(trainer: L.Trainer) -> list[str]:
        """The experiment kinds the module, the data and the callbacks declare (``record_kinds()``), in that order."""
        owners = [trainer.lightning_module, trainer.datamodule, *trainer.callbacks]
        return list(dict.fromkeys(k for o in owners if isinstance(o, RecordWriter) for k in o.record_kinds()))

    @staticmethod
    def _callback_summaries(trainer: L.Trainer) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for cb in trainer.callbacks:
            if isinstance(cb, RecordedCallback) and cb.record_name:
                name, n = cb.record_name, 2
                while name in out:  # two callbacks of one kind: laser_truncation, laser_truncation#2
                    name, n = f"{cb.record_name}#{n}", n + 1
                out[name] = cb.summary()
        return out

    @staticmethod
    def _wandb_info(trainer: L.Trainer) -> dict[str, Any] | None:
        lg = wandb_logger(trainer.loggers)
        if lg is not None and experiment_started(lg):
            run = lg.experiment
            try:
                url = run.url if os.environ.get("WANDB_MODE") == "online" else None  # the report links to it
            except Exception:  # noqa: BLE001  no URL without a server
                url = None
            return {"id": run.id, "project": run.project, "group": run.group, "mode": os.environ.get("WANDB_MODE"),
                    "dir": run.dir, "url": url}
        return None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.eval_step = trainer.global_step
        if trainer.state.fn == "validate":  # `main.py validate`: this is the whole run
            self._finish(trainer, "val")
        else:
            self.write(trainer, "running")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.eval_step = trainer.global_step
        self._finish(trainer, "test")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if any(isinstance(cb, RecordedCallback) and cb.stops_for_requeue for cb in trainer.callbacks):
            return  # stopped for a SLURM requeue: the summary says "requeued" until the resumed task finishes
        self._finish(trainer, "val")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.stopped_by = "SIGINT"
            self._interrupted(trainer)
        elif isinstance(exception, SIGTERMException):  # kill, scancel, a time limit: stopped from outside, not failed
            self.stopped_by = "SIGTERM"
            self._interrupted(trainer, "terminated (SIGTERM)")
        else:
            self.write(trainer, "failed", error=f"{type(exception).__name__}: {exception}")

    @rank_zero_only
    def _interrupted(self, trainer: L.Trainer, what: str = "interrupted") -> None:
        if self.run_dir is None:
            return
        ckpt = latest_checkpoint(trainer, self.run_dir) if trainer.state.fn == "fit" else None
        config = os.path.join(self.run_dir, CONFIG_FILE)
        resume = f"python main.py fit --config {shlex.quote(config)}"
        if ckpt is not None:
            resume += f" --ckpt_path {shlex.quote(ckpt)}"
            how = f"Resume it (same run directory, same W&B run) from step {self._ckpt_step(ckpt)}:\n  {resume}"
        elif trainer.state.fn == "fit":
            how = f"No checkpoint was saved yet (the first comes with the first validation). Start it again:\n  {resume}"
        else:
            how = ""
        self.write(trainer, "interrupted", error=f"{what} at step {trainer.global_step}" + (f"; {how}" if how else ""))
        finish_wandb(exit_code=130)  # release the run id now: the resume command continues this W&B run
        print(f"\n{what[0].upper() + what[1:]} at step {trainer.global_step}. Run directory: {self.run_dir}\n{how}", file=sys.stderr, flush=True)

    @staticmethod
    def _ckpt_step(path: str) -> str:
        m = re.search(r"step=(\d+)", os.path.basename(path))  # Lightning's checkpoint names: epoch=0-step=250.ckpt
        return m.group(1) if m else "?"

    @rank_zero_only
    def _finish(self, trainer: L.Trainer, stage: str) -> None:
        summary = self.write(trainer, "completed", stage)
        if summary.get("variants"):
            stale = f" (from step {self.eval_step}, not the last step {trainer.global_step})" if stage == "val" and self.eval_step != trainer.global_step else ""
            module = trainer.lightning_module
            title = module.results_title if isinstance(module, RecordedModule) else "Results"
            shown, after = module.console_results(summary["variants"]) if isinstance(module, RecordedModule) else (summary["variants"], "")
            # printed by the CLI at the very end, after W&B and the report, so that the console ends with it
            self.results_text = f"{title}{stale}:\n{format_table(shown)}" + (f"\n\n{after}" if after else "")
        self.final = summary
