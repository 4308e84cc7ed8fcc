"""The run's metric history, ``metrics.csv``: Lightning's CSVLogger, but a resumed run keeps what came before.

Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts (with the warning "Previous log files in
this directory will be deleted"), so a run resumed into its own directory lost every row before its checkpoint, and
the report dated "FF learns the noise" at the resume step. Here the rows already in the file are kept: when training
(re)starts at step s, the rows logged at steps <= s stay, later ones are dropped (the resumed run logs them again),
and a value logged again at a kept step replaces the old one. The file is rewritten whole on every flush
(run_record.files.atomic_writer), so a reader never sees part of a row.
"""
from __future__ import annotations

import csv
import io
import os
import sys

import lightning as L
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from run_record.lightning_private import experiment_or_none, experiment_started, set_experiment
from run_record.files import HPARAMS_FILE, METRICS_FILE, Damaged, WriteError, atomic_path, read_csv_rows, write_text
from run_record.contract import RecordWriter, RecordedCallback


class HistoryWriter(ExperimentWriter):
    def __init__(self, log_dir: str) -> None:
        # not the parent's __init__: it warns about, and deletes, the history of a resumed run
        self.metrics: list[dict] = []
        self.metrics_keys: list[str] = []
        self.hparams: dict = {}
        self.log_dir = log_dir
        self.metrics_file_path = os.path.join(log_dir, METRICS_FILE)
        os.makedirs(log_dir, exist_ok=True)
        self.previous: list[dict] = []  # rows of an earlier part of this run
        if os.path.isfile(self.metrics_file_path):
            try:
                self.previous = read_csv_rows(self.metrics_file_path)
            except Damaged as e:  # kept on disk until this run writes; never silently merged
                print(f"warning: {e}; the history restarts here", file=sys.stderr)
        self.metrics_keys = sorted({k for r in self.previous for k, v in r.items() if v != ""} - {"step"})
        self.rows: list[dict] = []  # this process's rows (all of them: the file is rewritten whole)
        self.dirty = False

    def resume_at(self, step: int) -> None:
        """Training (re)starts at optimizer step ``step``: keep the earlier rows up to it, drop those after."""
        self.previous = [r for r in self.previous if int(float(r["step"])) <= step]
        self.dirty = True

    def log_hparams(self, params: dict) -> None:
        from lightning.pytorch.core.saving import save_hparams_to_yaml

        self.hparams.update(params)
        with atomic_path(os.path.join(self.log_dir, HPARAMS_FILE)) as tmp:  # Lightning's YAML, written whole
            save_hparams_to_yaml(tmp, self.hparams)

    def log_metrics(self, metrics_dict: dict, step: int | None = None) -> None:
        super().log_metrics(metrics_dict, step)
        self.dirty = True

    def save(self) -> None:
        if not self.dirty and not self.metrics:
            return
        self.rows += self.metrics
        self.metrics = []
        new = {}  # (step, key) logged by this process: it replaces an earlier part's value at that step
        for r in self.rows:
            for k in r:
                if k != "step":
                    new.setdefault(int(r["step"]), set()).add(k)
        kept = []
        for r in self.previous:
            step = int(float(r["step"]))
            row = {k: v for k, v in r.items() if v != "" and k not in new.get(step, ())}
            if set(row) - {"step"}:
                kept.append(row)
        rows = kept + self.rows
        self.metrics_keys = sorted({k for r in rows for k in r} - {"step"})
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=["step", *self.metrics_keys], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.metrics_file_path, out.getvalue())
        self.dirty = False


class RunHistory(RecordWriter, CSVLogger):
    """``metrics.csv`` and ``hparams.yaml`` in the run directory (the CLI adds it to every run)."""

    def __init__(self, save_dir: str, flush_logs_every_n_steps: int = 100):
        super().__init__(save_dir=save_dir, name="", version="", flush_logs_every_n_steps=flush_logs_every_n_steps)

    @property
    @rank_zero_experiment  # one writer, on global rank zero (other ranks get Lightning's no-op)
    def experiment(self) -> HistoryWriter:
        if not experiment_started(self):
            set_experiment(self, HistoryWriter(self.log_dir))
        return experiment_or_none(self)

    @rank_zero_only
    def record_files(self) -> list[str]:
        """Flushed now, for summary.json's file list (RunSummary): the history the summary was written with."""
        if not experiment_started(self):
            return []
        self.save()
        return [self.experiment.metrics_file_path] if os.path.isfile(self.experiment.metrics_file_path) else []

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if not experiment_started(self):
            return
        try:
            self.save()
        except WriteError as e:
            if status == "success":
                raise
            # the run is already failing (full disk...): the last complete metrics.csv stays; say what was not added
            print(f"warning: {e}; metrics.csv keeps the rows of its last complete write", file=sys.stderr)


class HistoryResume(RecordedCallback, L.Callback):
    """Tells the history at which step training (re)starts: the step restored from a checkpoint, or 0."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, RunHistory) and trainer.is_global_zero:
                logger.experiment.resume_at(trainer.global_step)
