"""The one place that decides where a run writes.

Layout: ``<trainer.default_root_dir>/<run name>/<version>/`` holding ``config.yaml`` (the resolved config),
``summary.json`` (final metrics, read by slurm/collect.py), ``checkpoints/`` and ``wandb/``.
The version is ``<array job>_<task>`` or ``<job id>`` under SLURM, so a requeued task finds its own directory
again, and a timestamp otherwise.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path
from typing import Mapping

CONFIG_FILE, SUMMARY_FILE, CHECKPOINT_DIR = "config.yaml", "summary.json", "checkpoints"


def run_version(env: Mapping[str, str] = os.environ) -> str:
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    if env.get("SLURM_JOB_ID"):
        return env["SLURM_JOB_ID"]
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


# Set by the CLI to the directory it chose; the DDP worker processes Lightning starts (LOCAL_RANK > 0) re-run
# main.py and must write to their parent's directory, not one with a fresh timestamp.
PARENT_RUN_DIR = "FFVA_RUN_DIR"


def run_dir(root: str | os.PathLike, name: str, env: Mapping[str, str] = os.environ) -> Path:
    if env.get(PARENT_RUN_DIR) and int(env.get("LOCAL_RANK") or 0) > 0:
        return Path(env[PARENT_RUN_DIR])
    return Path(root) / name / run_version(env)


def wandb_id(path: str | os.PathLike) -> str:
    """A W&B run id that is a function of the run directory (W&B ids allow [a-z0-9]; 16 hex digits)."""
    return hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:16]
