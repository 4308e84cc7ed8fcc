"""Real faults for the fault-injection tests: a tiny file system that fills up, and one mounted read-only."""
import subprocess
import uuid

import pytest


def _mount(path, options: str) -> str | None:
    """Mount a tmpfs at ``path``; the reason when this machine refuses (not root, no mount namespace...)."""
    path.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", options, f"ffva-{uuid.uuid4().hex[:8]}", str(path)],
                         capture_output=True, text=True)
    return None if out.returncode == 0 else (out.stderr.strip() or f"mount exited {out.returncode}")


def _mounted(path, options: str, what: str):
    reason = _mount(path, options)
    if reason:
        pytest.skip(f"cannot mount {what} here: {reason}")
    yield path
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def small_fs(tmp_path):
    """A directory on a 160 KiB tmpfs: room for a tiny run's files and one checkpoint, not for two."""
    yield from _mounted(tmp_path / "small", "size=160k", "a small tmpfs")


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory on a tmpfs mounted read-only (root can write through permission bits, not through ro)."""
    yield from _mounted(tmp_path / "ro", "size=1m,ro", "a read-only tmpfs")
