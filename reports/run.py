"""Reading what one run wrote: summary.json, config.yaml, metrics.csv (the history) and spectra.npz.

A file that cannot be what the run wrote (truncated, corrupt, or changed since the run recorded its size and digest
in summary.json) is never read as a result: it is listed in ``RunRecord.damaged`` with the reason, and the figures
that need it are left out, saying so. Without a readable summary.json there is no run to report.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from run_record import files
from run_record.files import CONFIG_FILE, METRICS_FILE, SPECTRA_FILE, SUMMARY_FILE, TASKS_FILE

History = dict[str, list[tuple[int, float]]]  # metric key -> [(step, value)], in logged order
FINISHED = ("completed", "failed", "interrupted", "requeued")  # the summary's file list is the run's last word


class ReportError(ValueError):
    """The directory cannot be reported on (named, with what is missing); raised before anything is drawn."""


@dataclass
class RunRecord:
    path: Path
    summary: dict
    config: dict
    history: History
    spectra: dict[str, np.ndarray] = field(default_factory=dict)  # matrix -> (n steps, min(m, n)); "steps" -> (n,)
    damaged: dict[str, str] = field(default_factory=dict)  # file name -> why it was not read

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"


def unless_unread(run: RunRecord, name: str, reason: str) -> str:
    """Why a figure is not drawn: ``name`` was not read (damaged, changed) when that is the case, never "logged
    nothing" for a file that was skipped."""
    return f"{name} was not read ({run.damaged[name]})" if name in run.damaged else reason


def declared_records(run: RunRecord, name: str | None) -> list[dict] | None:
    """The records of a JSON-lines file the run declared (``name``, from its summary), or None where it has none or
    the file cannot be read (a damaged one is listed in ``run.damaged``)."""
    if not name or name in run.damaged or not (run.path / name).is_file():
        return None
    try:
        return files.read_jsonl(run.path / name)
    except files.Damaged as e:
        run.damaged[name] = e.reason
        return None


def read_history(path: Path) -> History:
    """Lightning's CSVLogger file: a ``step`` column and one column per metric, empty where not logged that row."""
    history: History = {}
    for row in files.read_csv_rows(path):
        try:
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if key in ("step", "epoch") or value in (None, ""):
                    continue
                history.setdefault(key, []).append((step, float(value)))
        except ValueError as e:
            raise files.Damaged(path, f"a value is not a number ({e})") from e
    return history


def kind_of(path: Path) -> str:
    """``run`` (a run directory), ``sweep`` (a sweep directory), or a ReportError naming what is missing."""
    if (path / TASKS_FILE).is_file():
        return "sweep"
    if (path / SUMMARY_FILE).is_file():
        return "run"
    if not path.exists():
        raise ReportError(f"{path} does not exist")
    raise ReportError(f"{path} is neither a run directory (no {SUMMARY_FILE}) nor a sweep directory (no {TASKS_FILE}); "
                      "give runs/<run name>/<version> or runs/sweeps/<sweep name>")


def changed_files(path: Path, summary: dict) -> dict[str, str]:
    """Files whose size or digest differ from what the finished run recorded in summary.json (damaged or replaced)."""
    if summary.get("status") not in FINISHED:
        return {}  # a running run rewrites its history between summaries
    out = {}
    for name, recorded in (summary.get("files") or {}).items():
        p = path / name
        if not p.is_file():
            continue
        size = os.path.getsize(p)
        if size != recorded.get("bytes"):
            out[name] = f"{size} bytes, but the run recorded {recorded.get('bytes')}: truncated or changed since"
        elif recorded.get("sha256") and files.sha256(p) != recorded["sha256"]:
            out[name] = "its contents differ from what the run recorded (sha256): damaged or changed since"
    return out


def load_run(path: str | Path, require_history: bool = True) -> RunRecord:
    path = Path(path)
    if not (path / SUMMARY_FILE).is_file():
        raise ReportError(f"{path}: no {SUMMARY_FILE}, so it is not a run directory")
    try:
        summary = files.read_json(path / SUMMARY_FILE)
        if not isinstance(summary, dict) or "status" not in summary:
            raise files.Damaged(path / SUMMARY_FILE, "not a run summary (no status)")
    except files.Damaged as e:
        raise ReportError(f"{e.path} is damaged ({e.reason}): without the run's summary there is nothing to report") from e
    damaged = changed_files(path, summary)
    config: dict = {}
    if (path / CONFIG_FILE).is_file() and CONFIG_FILE not in damaged:
        try:
            config = files.read_yaml(path / CONFIG_FILE, required=("trainer", "model"))
        except files.Damaged as e:
            damaged[CONFIG_FILE] = e.reason
    history: History = {}
    if not (path / METRICS_FILE).is_file():
        if require_history:
            raise ReportError(f"{path}: no recorded history ({METRICS_FILE} is missing; runs write it since the CLI "
                              "adds a CSVLogger to every run), so there are no curves to draw")
    elif METRICS_FILE not in damaged:
        try:
            history = read_history(path / METRICS_FILE)
        except files.Damaged as e:
            damaged[METRICS_FILE] = e.reason
    spectra = {}
    if (path / SPECTRA_FILE).is_file() and SPECTRA_FILE not in damaged:
        try:
            spectra = files.read_npz(path / SPECTRA_FILE)
        except files.Damaged as e:
            damaged[SPECTRA_FILE] = e.reason
    return RunRecord(path, summary, config, history, spectra, damaged)
