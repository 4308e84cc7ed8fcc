"""Emulates the GPU machine's image here: on PYTHONPATH with FFVA_GPU_IMAGE=1 (benchmarks/gpu.py --smoke sets both),
the modules in missing.txt are not found, as there, in this process and in every Python it starts. The tests use it
too, with FFVA_MISSING_MODULES=a,b: an environment without those optional packages (tests/pipeline/test_extras.py)."""
import os
import sys
from pathlib import Path

_MISSING = {line.strip() for line in (Path(__file__).parent / "missing.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")} if os.environ.get("FFVA_GPU_IMAGE") == "1" else set()
_MISSING |= {m for m in os.environ.get("FFVA_MISSING_MODULES", "").split(",") if m}


class _WithoutMissing:
    """Stands in for the path finder: a missing module is not found (find_spec gives None, import raises)."""

    def __init__(self, finder) -> None:
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        return None if name.partition(".")[0] in _MISSING else self.finder.find_spec(name, path, target)

    def __getattr__(self, attr):
        return getattr(self.finder, attr)


if _MISSING:
    sys.meta_path[:] = [_WithoutMissing(f) if getattr(f, "__name__", "") == "PathFinder" else f for f in sys.meta_path]
