"""The files of a run directory and of a sweep directory, and how every one of them is written and read.

Written whole: ``atomic_writer`` writes a hidden partial file next to the target, syncs it and renames it over the
target, so a reader (or a job killed mid-write, or a full disk) sees the old file or the complete new one, never
part of one. A failed write removes its partial file (a full disk gets its space back) and raises ``WriteError``,
which names the target.

Read defensively: ``read_json`` / ``read_yaml`` / ``read_npz`` raise ``Damaged`` (naming the file and what is wrong)
for a file that exists but cannot be what a writer wrote, so readers can list it and go on with the rest.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
from typing import IO, Any, Iterator

# --- a run directory: <root>/<run name>/<version>/ (run_record/run_dir.py chooses it) ---------------------------------
CONFIG_FILE = "config.yaml"  # the config as the user wrote it (reproduces the run)
SUMMARY_FILE = "summary.json"  # the run record: status, kinds, final metrics, what each callback measured
METRICS_FILE = "metrics.csv"  # every logged scalar by step (the history; run_record/history.py)
HPARAMS_FILE = "hparams.yaml"
SPECTRA_FILE = "spectra.npz"  # WeightSpectrumLogger's singular values
ATTENTION_EXAMPLE_FILE = "attention_example.npz"  # AttentionProbe: one sequence's attention patterns, full and a variant
CHECKPOINT_DIR = "checkpoints"
REPORT_DIR = "report"  # python -m reports writes report/index.html and report/figures/
REPORT_FIGURES_FILE = "figures.json"  # report/figures.json: each figure's title, caption and legend colours
GENERATIONS_FILE = "generations.jsonl"  # GSM8K: one generation per (variant, document)
PREDICTIONS_FILE = "predictions.jsonl"  # prompt sets: one record per prompt, every variant's numbers
SINGULAR_EFFECTS_FILE = "singular_effects.json"  # prompt sets: each singular component's effect on the gap, per matrix
# --- a sweep directory: tasks.json, <task>/<run name>/<version>/ per task ---------------------------------------------
TASKS_FILE = "tasks.json"  # the grid points
ATTEMPT_FILE = "attempt.json"  # <task>/attempt.json: the task's newest attempt (pipeline/sweep.py)
TASK_ERROR_FILE = "error.txt"  # <task>/error.txt: why the newest attempt failed before its run wrote a summary
RESULTS_FILE = "results.csv"

# set by pipeline.sweep for the run of a sweep task: {"sweep", "task", "attempt", "point"}, recorded in summary.json
SWEEP_TASK_ENV = "FFVA_SWEEP_TASK"

PARTIAL = ".partial-"  # hidden partial files are ".<name>.partial-<pid>": never globbed as *.ckpt, *.json ...


class WriteError(OSError):
    """A run file could not be written (full disk, read-only directory...); the old file, if any, is intact."""

    def __init__(self, path: str | os.PathLike, cause: OSError):
        super().__init__(cause.errno or errno.EIO, f"could not write {path}: {cause.strerror or cause}", str(path))
        self.path, self.cause = str(path), cause

    def __str__(self) -> str:
        return self.strerror


def no_space(path: str | os.PathLike, margin: int = 1 << 20) -> bool:
    """The file system of ``path`` has (almost) no free space left."""
    import shutil

    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free < margin
    except OSError:
        return False


def partial_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}{PARTIAL}{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Write to the yielded (partial) path; once the block ends it is synced and replaces ``path`` whole. For writers
    that want a file name (``save_hparams_to_yaml``); ``atomic_writer`` gives a file object."""
    path = Path(path)
    tmp = partial_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise e if isinstance(e, WriteError) else WriteError(path, e) from e
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """``with atomic_writer(p) as f: f.write(...)``: the target appears whole, or stays as it was. The file is
    closed before the partial is removed, so a failed write gives its space back."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **open_kwargs) as f:
            yield f


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_writer(path, "w") as f:
        f.write(text)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_writer(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 2) -> Path:
    # allow_nan=False: a NaN in a run record is a bug upstream (undefined metrics are written as null)
    return write_text(path, json.dumps(data, indent=indent, allow_nan=False) + "\n")


def write_jsonl(path: str | os.PathLike, records: list[dict]) -> Path:
    return write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def sha256(path: str | os.PathLike) -> str:
    """The digest summary.json records for each run file (readers compare it to tell a damaged file)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def remove_partials(directory: str | os.PathLike) -> None:
    """Partial files left by a process that was killed while writing (SIGKILL, a node failure)."""
    for p in Path(directory).rglob(f".*{PARTIAL}*"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(p.name.rsplit(PARTIAL, 1)[1])
            if pid != os.getpid():
                p.unlink()


def check_writable(path: str | os.PathLike, what: str) -> None:
    """Raise ValueError naming ``what`` when ``path`` (or, if it does not exist yet, its nearest existing ancestor)
    cannot be written. Nothing is created: a refused run leaves no directory behind."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{what} {path}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):  # EROFS counts for root too
        raise ValueError(f"{what} {path}: {probe} cannot be written (read-only or no permission); choose another directory")


# --- reading -----------------------------------------------------------------------------------------------------

class Damaged(ValueError):
    """A file exists but cannot be what its writer wrote (truncated, corrupt, not of its format)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError) as e:
        raise Damaged(path, f"not valid JSON ({e})") from e


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (UnicodeDecodeError, ValueError) as e:
        raise Damaged(path, f"not valid JSON lines ({e})") from e


def read_yaml(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict:
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
        data = yaml.safe_load(text)
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise Damaged(path, f"not valid YAML ({type(e).__name__})") from e
    if not isinstance(data, dict) or (text and not text.endswith("\n")):
        raise Damaged(path, "truncated (not a whole YAML mapping)")
    missing = [k for k in required if k not in data]
    if missing:
        raise Damaged(path, f"truncated (no {', '.join(missing)})")
    return data


def read_npz(path: str | os.PathLike) -> dict:
    import zipfile

    import numpy as np

    path = Path(path)
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise Damaged(path, f"not a readable .npz ({type(e).__name__}: {e})") from e


def read_csv_rows(path: str | os.PathLike, required: str = "step") -> list[dict[str, str]]:
    """The rows of a CSV file written whole (every line ends in a newline); Damaged for a truncated or malformed one."""
    import csv
    import io

    with open(path, newline="") as f:
        try:
            text = f.read()
        except UnicodeDecodeError as e:
            raise Damaged(path, f"not text ({e})") from e
    if text and not text.endswith("\n"):
        raise Damaged(path, "truncated (the last row is incomplete)")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or required not in header:
        raise Damaged(path, f"no header with a {required} column")
    rows = []
    for line, values in enumerate(reader, 2):
        if len(values) != len(header):
            raise Damaged(path, f"line {line} has {len(values)} fields, the header {len(header)}")
        rows.append(dict(zip(header, values)))
    return rows
