"""One process per run directory: a POSIX record lock on ``<run>/.lock``, taken before anything is written.

Two processes in one run directory (a manual resume while SLURM requeues the task, a doubled array task) overwrote
each other's files. The CLI takes this lock right after choosing the directory; a second process is refused in one
line naming the holder (pid, host, start time, command), which the holder wrote into the lock file.

``fcntl.lockf`` (fcntl(F_SETLK)) is a POSIX lock: the kernel drops it when its process dies, so a lock left by a dead
process is taken over by the next one without any clean-up, and on NFS it goes through the NFS lock manager (NFSv3's
lockd, NFSv4's own locking), so two nodes sharing a run directory exclude each other. On a file system without locks
(ENOLCK, EOPNOTSUPP: some Lustre or SMB mounts) the run goes on with a warning that nothing excludes a second process.
Only the launching process (global rank zero) locks: the DDP workers it starts write into its directory.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from pathlib import Path

LOCK_FILE = ".lock"


class RunDirectoryBusy(RuntimeError):
    """Another live process holds the run directory."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process (it wrote no details)"
    return (f"pid {info.get('pid')} on {info.get('host')}, since {info.get('started')}: "
            f"{' '.join(info.get('argv') or [])[:160]}")


def is_launcher(env=os.environ) -> bool:
    """This process is global rank zero (not a DDP worker or a later rank of a multi-process srun step)."""
    return all(int(env.get(k) or 0) == 0 for k in ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID"))


class RunLock:
    """Held from ``acquire`` until ``release`` or the end of the process (the kernel then drops it)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EAGAIN):
                os.close(fd)  # (closing our own descriptor drops none of the holder's lock)
                raise RunDirectoryBusy(f"{self.path.parent} is in use by {_holder(self.path)}; one process per run "
                                       "directory (wait for it to end, or stop it, then resume)") from None
            if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                print(f"warning: the file system of {self.path.parent} has no file locks ({e.strerror}): nothing stops "
                      "a second process from writing into this run directory", file=sys.stderr)
                os.close(fd)
                return self
            os.close(fd)
            raise
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "argv": sys.argv}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)  # in place: a new file would be a new lock
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        import fcntl

        try:  # the details stay: they are read only while someone holds the lock, and say who held it last
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            self.fd = None
