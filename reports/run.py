"""Reading what one run wrote: summary.json, config.yaml, metrics.csv (the history) and spectra.npz."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from pipeline.run_dir import CONFIG_FILE, METRICS_FILE, SPECTRA_FILE, SUMMARY_FILE, TASKS_FILE

History = dict[str, list[tuple[int, float]]]  # metric key -> [(step, value)], in logged order


class ReportError(ValueError):
    """The directory cannot be reported on (named, with what is missing); raised before anything is drawn."""


@dataclass
class RunRecord:
    path: Path
    summary: dict
    config: dict
    history: History
    spectra: dict[str, np.ndarray] = field(default_factory=dict)  # matrix -> (n steps, min(m, n)); "steps" -> (n,)

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"


def read_history(path: Path) -> History:
    """Lightning's CSVLogger file: a ``step`` column and one column per metric, empty where not logged that row."""
    history: History = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if key in ("step", "epoch") or value in (None, ""):
                    continue
                history.setdefault(key, []).append((step, float(value)))
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


def load_run(path: str | Path, require_history: bool = True) -> RunRecord:
    path = Path(path)
    if not (path / SUMMARY_FILE).is_file():
        raise ReportError(f"{path}: no {SUMMARY_FILE}, so it is not a run directory")
    summary = json.loads((path / SUMMARY_FILE).read_text())
    config = yaml.safe_load((path / CONFIG_FILE).read_text()) if (path / CONFIG_FILE).is_file() else {}
    metrics = path / METRICS_FILE
    if not metrics.is_file():
        if require_history:
            raise ReportError(f"{path}: no recorded history ({METRICS_FILE} is missing; runs write it since the CLI "
                              "adds a CSVLogger to every run), so there are no curves to draw")
        history: History = {}
    else:
        history = read_history(metrics)
    spectra = {}
    if (path / SPECTRA_FILE).is_file():
        with np.load(path / SPECTRA_FILE) as z:
            spectra = {k: z[k] for k in z.files}
    return RunRecord(path, summary, config, history, spectra)
