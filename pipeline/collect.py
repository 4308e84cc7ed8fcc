"""Gather a sweep's summaries into one table: one row per (task, variant), the grid values as columns.

    python -m pipeline.collect runs/sweeps/<sweep name>     # prints the table, writes results.csv there
    (slurm/collect.py is the same command.) A task that failed or never wrote a summary is listed with its status
and the tail of its error or SLURM log.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from pipeline.run_dir import SUMMARY_FILE
from pipeline.sweep import TASK_ERROR_FILE, TASKS_FILE

RESULTS_FILE = "results.csv"


def log_tail(root: Path, task: int, lines: int = 15) -> str:
    """The end of a SLURM task's log (``<sweep dir>/logs/<array job>_<task>.out``), where a failure explains itself."""
    logs = sorted((root / "logs").glob(f"*_{task}.out"))
    return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:]) if logs else ""


class NotASweep(ValueError):
    pass


def rows(root: str | Path) -> list[dict]:
    root = Path(root)
    if not (root / TASKS_FILE).is_file():
        what = "does not exist" if not root.exists() else f"has no {TASKS_FILE}"
        hint = " (it is a single run: its results are in summary.json)" if (root / SUMMARY_FILE).is_file() else ""
        raise NotASweep(f"{root} {what}, so it is not a sweep directory{hint}; a sweep directory is what "
                        "slurm/submit.py or python -m pipeline.sweep wrote, e.g. runs/sweeps/<sweep name>")
    try:
        tasks = json.loads((root / TASKS_FILE).read_text())
    except ValueError as e:
        raise NotASweep(f"{root / TASKS_FILE} is not valid JSON ({e})") from e
    out = []
    for i, point in enumerate(tasks["points"]):
        summaries = sorted((root / str(i)).glob(f"*/*/{SUMMARY_FILE}"))
        if not summaries:
            error = root / str(i) / TASK_ERROR_FILE
            row = {"task": i, **point, "status": "missing", "log_tail": log_tail(root, i)}
            out.append(row | ({"error": error.read_text().strip()} if error.is_file() else {}))
            continue
        summary = json.loads(summaries[-1].read_text())  # the latest run of this task
        base = {"task": i, **point, "status": summary["status"], "run_dir": summary["run_dir"]}
        if summary.get("error"):
            base["error"] = summary["error"]
        if summary["status"] != "completed":
            base["log_tail"] = log_tail(root, i)
        commit = (summary.get("model") or {}).get("commit")
        if commit:
            base["commit"] = commit
        if not summary.get("variants"):
            out.append(base)
        for variant, metrics in summary.get("variants", {}).items():
            out.append({**base, "variant": variant, **metrics})
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir")
    args = parser.parse_args(argv)
    try:
        table = rows(args.sweep_dir)
    except NotASweep as e:
        raise SystemExit(f"error: {e}") from None
    columns = list(dict.fromkeys(k for row in table for k in row if k not in ("run_dir", "log_tail", "error")))
    with open(Path(args.sweep_dir) / RESULTS_FILE, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(table)
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    widths = {c: max(len(c), *(len(fmt(r.get(c, ""))) for r in table)) for c in columns}
    print("  ".join(c.rjust(widths[c]) for c in columns))
    for r in table:
        print("  ".join(fmt(r.get(c, "")).rjust(widths[c]) for c in columns))
    for r in table:
        if r.get("log_tail") or r.get("error"):
            error = f"\nerror: {r['error']}" if r.get("error") else ""
            print(f"\ntask {r['task']} {r['status']}:{error}\n{r.get('log_tail', '')}")
    print(f"\n{len(table)} rows -> {Path(args.sweep_dir) / RESULTS_FILE}")
    return table


if __name__ == "__main__":
    main()
