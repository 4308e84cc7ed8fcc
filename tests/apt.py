"""Debian packages the test setup installs when missing (SLURM, munge, chromium). apt holds one lock for the whole
machine, so parallel test workers (pytest -n) take turns here instead of failing on it."""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from typing import Callable

LOCK = "/tmp/ff-vs-attention-apt.lock"


def apt_install(packages: list[str], installed: Callable[[], bool], timeout: float = 1200) -> str | None:
    """Install ``packages`` unless ``installed()``; None once they are there, else the reason they cannot be had."""
    if installed():
        return None
    names = " ".join(packages)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return f"{names} not installed, and installing needs root and apt-get"
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be installing them right now
        if installed():
            return None
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        out = subprocess.run(f"apt-get install -y -q {names} || (apt-get update -q && apt-get install -y -q {names})",
                             shell=True, env=env, capture_output=True, text=True, timeout=timeout)
    return None if out.returncode == 0 else f"apt-get install {names} failed: {out.stderr[-500:]}"
