"""Gather a sweep's task summaries into one table (CSV and printed): `python slurm/collect.py <sweep dir>`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from reports.table import main  # noqa: E402

if __name__ == "__main__":
    main()
