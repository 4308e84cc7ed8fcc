"""The one place that decides where a run writes.

Layout: ``<trainer.default_root_dir>/<run name>/<version>/`` holding ``config.yaml`` (the resolved config),
``summary.json`` (final metrics, read by slurm/collect.py), ``metrics.csv`` (the metric history), ``spectra.npz``,
``checkpoints/``, ``wandb/`` and, once written, ``report/``.

The version is unique per run: a timestamp and a random suffix (prefixed by the SLURM job id inside a job, so two
runs in one ``salloc`` session or sbatch script never share a directory). Stable versions exist only where a run
must find its directory again:
- a sweep's array task (``pipeline.sweep --task`` sets ``FFVA_RUN_VERSION`` to ``<array job>_<task>``), so a
  requeued task resumes its own run;
- the ranks of one multi-process ``srun`` step agree on ``<job>.<step>`` (each rank starts main.py by itself);
- a requeued plain SLURM job (``SLURM_RESTART_COUNT`` > 0) continues its run that was marked ``requeued``;
- ``main.py fit --ckpt_path <run>/checkpoints/x.ckpt`` with that run's own config continues that run (resume).
"""
from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path
from typing import Mapping

# the file names of a run and a sweep directory live in run_record/files.py (writers and readers share them)
from run_record.files import CONFIG_FILE, SUMMARY_FILE, read_json

# Set by `pipeline.sweep --task` for an array task: the version that a requeued task finds again.
RUN_VERSION = "FFVA_RUN_VERSION"
# Set by the CLI to the directory it chose; the DDP worker processes Lightning starts (LOCAL_RANK > 0) re-run
# main.py and must write to their parent's directory, not one with a fresh timestamp.
PARENT_RUN_DIR = "FFVA_RUN_DIR"


def run_version(env: Mapping[str, str] = os.environ) -> str:
    if env.get(RUN_VERSION):
        return env[RUN_VERSION]
    stamp = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
    job = env.get("SLURM_JOB_ID")
    if not job:
        return stamp
    if int(env.get("SLURM_NTASKS") or 1) > 1 and env.get("SLURM_STEP_ID"):
        return f"{job}.{env['SLURM_STEP_ID']}"  # every rank of this srun step computes the same name
    return f"{job}-{stamp}"


def read_summary(directory: str | os.PathLike) -> dict:
    try:
        summary = read_json(Path(directory) / SUMMARY_FILE)
    except (OSError, ValueError):  # missing or damaged: not a run to continue
        return {}
    return summary if isinstance(summary, dict) else {}


def requeued_run(root: Path, name: str, job: str) -> Path | None:
    """The latest run of SLURM job ``job`` under ``root/name`` that stopped for a requeue, if any."""
    candidates = sorted((root / name).glob(f"{job}-*"), key=lambda p: p.stat().st_mtime)
    for path in reversed(candidates):
        if read_summary(path).get("status") == "requeued":
            return path
    return None


def run_dir(root: str | os.PathLike, name: str, env: Mapping[str, str] = os.environ) -> Path:
    if env.get(PARENT_RUN_DIR) and int(env.get("LOCAL_RANK") or 0) > 0:
        return Path(env[PARENT_RUN_DIR])
    if env.get("SLURM_JOB_ID") and int(env.get("SLURM_RESTART_COUNT") or 0) > 0 and not env.get(RUN_VERSION):
        previous = requeued_run(Path(root), name, env["SLURM_JOB_ID"])
        if previous is not None:
            return previous
    return Path(root) / name / run_version(env)


def run_of_checkpoint(ckpt_path: str | os.PathLike) -> Path | None:
    """The run directory a checkpoint was written in (``<run>/checkpoints/x.ckpt`` or ``<run>/hpc_ckpt_n.ckpt``)."""
    path = Path(ckpt_path).resolve()
    for candidate in (path.parent.parent, path.parent):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    return None


def wandb_id(path: str | os.PathLike) -> str:
    """A W&B run id that is a function of the run directory (W&B ids allow [a-z0-9]; 16 hex digits)."""
    return hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:16]
