"""Gather a sweep's summaries into one table: one row per (task, variant), the grid values as columns.

    python slurm/collect.py runs/sweeps/<sweep name>     # prints the table, writes results.csv there
    python -m reports.table runs/sweeps/<sweep name>     # the same

A task that failed or never wrote a summary is listed with its status and the tail of its error or SLURM log.
Each row carries the task's run directory and evaluation step. ``results_by_setting.csv`` holds the mean and
standard deviation over seeds of every metric, per swept setting and variant.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import statistics

from pipeline.run_dir import RESULTS_FILE, SUMMARY_FILE, TASK_ERROR_FILE, TASKS_FILE

BY_SETTING_FILE = "results_by_setting.csv"


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
        base = {"task": i, **point, "status": summary["status"], "run_dir": summary["run_dir"], "eval_step": summary.get("eval_step")}
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


SEED_KEYS = ("seed_everything",)


def is_seed_key(key: str) -> bool:
    return key in SEED_KEYS or key.endswith(".seed")


def by_setting(table: list[dict], grid_keys: list[str]) -> list[dict]:
    """Mean and standard deviation over seeds of every numeric metric, per swept setting (the grid values other
    than seeds) and variant; ``n`` is the number of completed tasks averaged."""
    settings = [k for k in grid_keys if not is_seed_key(k)]
    groups: dict[tuple, list[dict]] = {}
    for row in table:
        if row.get("status") == "completed" and row.get("variant") is not None:
            key = tuple(json.dumps(row.get(k), sort_keys=True) for k in settings) + (row["variant"],)
            groups.setdefault(key, []).append(row)
    out = []
    for key, members in groups.items():
        entry = {k: members[0].get(k) for k in settings} | {"variant": key[-1], "n": len(members)}
        metrics = [m for m in members[0] if isinstance(members[0][m], float) and m not in settings]
        for m in metrics:
            values = [r[m] for r in members if isinstance(r.get(m), float)]
            entry[f"{m}_mean"] = statistics.fmean(values)
            entry[f"{m}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        out.append(entry)
    return out


SELECTED_FILE = "selected.csv"
VARIANT_KEYS = ("model.init_args.laser", "model.init_args.search")  # grid keys that only choose LASER variants


def selected(table: list[dict], keys: list[str], by: str | None = None) -> list[dict]:
    """The selection protocol across a sweep's tasks: per setting (the grid values other than seeds, shot counts and
    the variant-choosing keys) and evaluation (a GSM8K shot count, or the prompt set), the variant with the best
    ``<by>@selection[:<k>shot]`` (ties keep the full model), with its test score ``<by>[@<k>shot]`` and the full
    model's. Test scores play no part in the choice. ``by``: em_flexible for GSM8K, log_ratio for prompt sets."""
    from lightning_modules.metric_keys import split_metric

    settings = [k for k in keys if not is_seed_key(k) and k not in VARIANT_KEYS and not k.endswith("num_fewshot")]
    done = [r for r in table if r.get("status") == "completed" and r.get("variant") is not None]
    if by is None:
        by = next((m for m in ("em_flexible", "log_ratio") if any(f"{m}@selection" in k for r in done for k in r)), None)
        if by is None:
            return []
    full = {r["task"]: r for r in done if r["variant"] == "full"}
    best: dict[tuple, tuple[float, dict, str]] = {}
    for r in sorted(done, key=lambda r: r["variant"] != "full"):
        for key, value in r.items():
            name, test_set = split_metric(key)
            if name != by or not (test_set or "").startswith("selection") or not isinstance(value, float):
                continue
            evaluation = test_set.partition(":")[2]  # "1shot" for GSM8K, "" for a prompt set
            group = tuple(json.dumps(r.get(k), sort_keys=True) for k in settings) + (evaluation,)
            if group not in best or value > best[group][0]:
                best[group] = (value, r, evaluation)
    out = []
    for value, r, evaluation in best.values():
        test_key = f"{by}@{evaluation}" if evaluation else by
        base = full.get(r["task"], {})
        out.append({**{k: r.get(k) for k in settings}, "evaluation": evaluation or "prompts", "selected": r["variant"],
                    f"{by} (selection)": value, f"{by} (test)": r.get(test_key),
                    f"{by}_stderr (test)": r.get(f"{by}_stderr@{evaluation}") if evaluation else None,
                    f"full {by} (test)": base.get(test_key), "task": r["task"]})
    return out


def write_csv(path: Path, table: list[dict], skip: tuple[str, ...] = ()) -> list[str]:
    columns = list(dict.fromkeys(k for row in table for k in row if k not in skip))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(table)
    return columns


def grid_keys(root: str | Path, varying: bool = False) -> list[str]:
    """The sweep's grid keys; with ``varying``, only those that take more than one value (what was swept)."""
    points = json.loads((Path(root) / TASKS_FILE).read_text())["points"]
    keys = list(dict.fromkeys(k for p in points for k in p))
    if varying:
        keys = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True) for p in points}) > 1]
    return keys


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir")
    args = parser.parse_args(argv)
    try:
        table = rows(args.sweep_dir)
    except NotASweep as e:
        raise SystemExit(f"error: {e}") from None
    root = Path(args.sweep_dir)
    columns = write_csv(root / RESULTS_FILE, table, skip=("log_tail", "error"))
    write_csv(root / BY_SETTING_FILE, by_setting(table, grid_keys(root)))
    choice = selected(table, grid_keys(root))
    shown = [c for c in columns if c != "run_dir"]
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    widths = {c: max(len(c), *(len(fmt(r.get(c, ""))) for r in table)) for c in shown}
    print("  ".join(c.rjust(widths[c]) for c in shown))
    for r in table:
        print("  ".join(fmt(r.get(c, "")).rjust(widths[c]) for c in shown))
    for r in table:
        if r.get("log_tail") or r.get("error"):
            error = f"\nerror: {r['error']}" if r.get("error") else ""
            print(f"\ntask {r['task']} {r['status']}:{error}\n{r.get('log_tail', '')}")
    if choice:
        write_csv(root / SELECTED_FILE, choice)
        print("\nSelected on the selection split, reported on test:")
        for c in choice:
            print("  " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in c.items()))
    print(f"\n{len(table)} rows -> {root / RESULTS_FILE}; mean and std over seeds -> {root / BY_SETTING_FILE}"
          + (f"; selected variants -> {root / SELECTED_FILE}" if choice else ""))
    return table


if __name__ == "__main__":
    main()
