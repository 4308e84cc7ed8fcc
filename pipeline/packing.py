"""Several runs of a sweep in one SLURM array task, sharing its GPU: one process per run, started and watched here.

A small run (the CPU default, the hijack config) leaves an H200 nearly idle, so ``slurm: {runs_per_gpu: k}`` in a
sweep file makes each array task run k grid points at once (``python -m pipeline.sweep <file> --pack k --task g``
runs tasks g k .. g k + k - 1). Each run is its own process, with its own run directory (``<array job>_<task>``), its
summary, W&B run, attempt record and resume, so a failure of one loses none of the others. Signals from SLURM
(USR1 before the time limit, SIGTERM) are passed on to every run; runs that checkpointed for a requeue leave the
requeue to this packer, which asks SLURM once all of them have stopped. A requeued task runs again only the runs
that had not completed.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.preemption import PACKED, requeue
from run_record import files
from run_record.files import SUMMARY_FILE


def group(n_tasks: int, pack: int, index: int) -> list[int]:
    """The sweep tasks of array task ``index`` when ``pack`` runs share one."""
    return list(range(index * pack, min(n_tasks, (index + 1) * pack)))


def n_groups(n_tasks: int, pack: int) -> int:
    return -(-n_tasks // pack)


def status_of(root: Path, task: int, attempt: str) -> str | None:
    """The status in the summary of the task's run of this attempt (one run directory per attempt), None if unreadable."""
    for path in (root / str(task)).glob(f"*/*/{SUMMARY_FILE}"):
        try:
            summary = files.read_json(path)
        except (files.Damaged, OSError):
            continue
        if (summary.get("sweep_task") or {}).get("attempt") == attempt:
            return summary.get("status")
    return None


def run_group(sweep_file: str, root: Path, tasks: list[int], array_job: str | None, threads: int | None = None) -> int:
    """Start one process per task (``pipeline.sweep --task j``), pass signals on, wait for all; requeue the array task
    if any run stopped for it. Returns the exit code: 0 when every run completed."""
    procs: dict[int, subprocess.Popen] = {}
    for task in tasks:
        attempt = f"{array_job}_{task}" if array_job else None
        if attempt and status_of(root, task, attempt) == "completed":  # a requeued array task skips it
            print(f"task {task}: completed before the requeue, not run again", flush=True)
            continue
        env = {**os.environ, PACKED: "1"}  # --attempt below names the run directory a requeued run finds again
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)  # k runs on the task's CPUs, not k times all of them
        procs[task] = subprocess.Popen([sys.executable, "-m", "pipeline.sweep", sweep_file, "--root", str(root), "--task",
                                        str(task), *(["--attempt", attempt] if attempt else [])], env=env)
    passed = {signal.SIGUSR1, signal.SIGTERM, signal.SIGINT}

    def forward(signum, frame) -> None:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in passed}
    try:
        codes = {task: p.wait() for task, p in procs.items()}
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    requeued = [t for t in procs if array_job and status_of(root, t, f"{array_job}_{t}") == "requeued"]
    # a run stopped from outside (the SIGTERM passed on to it, Ctrl-C) is interrupted, not failed
    interrupted = {t: c for t, c in codes.items() if c in (128 + signal.SIGTERM, 128 + signal.SIGINT) and t not in requeued}
    failed = {t: c for t, c in codes.items() if c != 0 and t not in requeued and t not in interrupted}
    for task, code in interrupted.items():
        print(f"task {task} interrupted (exit code {code}): it resumes from its checkpoint when run again", flush=True)
    for task, code in failed.items():
        print(f"task {task} failed (exit code {code}); the other runs of this array task are not affected", flush=True)
    if requeued and array_job:
        job = f"{os.environ.get('SLURM_ARRAY_JOB_ID')}_{os.environ.get('SLURM_ARRAY_TASK_ID')}"
        error = requeue(job)
        if error is None:
            print(f"scontrol requeue {job}: ok ({len(requeued)} runs continue)", flush=True)
            time.sleep(300)  # SLURM stops and queues this task again
            return 0
        print(f"error: SLURM did not requeue {job} ({error}); runs {requeued} saved checkpoints to resume from", flush=True)
        return 1
    if failed:
        return 1
    return max(interrupted.values()) if interrupted else 0
