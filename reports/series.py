"""The data behind figures that every kind draws the same way, from what runs recorded (tested on numbers; the kinds
in reports/kinds/ hold their own series next to their figures)."""
from __future__ import annotations

import statistics
from typing import Any

from reports.run import History, RunRecord
from run_record.names import FULL, split_eval_key

Curve = list[tuple[int, float]]


def eval_curves(history: History, metric: str, stage: str = "val") -> dict[str, Curve]:
    """{variant: [(step, value)]} of ``<stage>/<variant>/<metric>``, variants in logged order (``full`` first)."""
    out: dict[str, Curve] = {}
    for key, points in history.items():
        parts = split_eval_key(key)
        if parts and parts[0] == stage and parts[2] == metric:
            out[parts[1]] = sorted(points)
    return dict(sorted(out.items(), key=lambda kv: kv[0] != FULL))


def first_step(curve: Curve, above: float) -> int | None:
    return next((step for step, value in curve if value > above), None)


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for a single value) and count: each point of an over-seeds curve."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


def final_vs_key(rows: list[dict], key: str, metric: str) -> dict[str, list[tuple[Any, float, float, int]]]:
    """{variant: [(value of the swept key, mean, std, n)]} of a final metric over completed tasks, averaged over
    everything else that varies (seeds and other keys)."""
    groups: dict[tuple[str, str], list[float]] = {}
    xs: dict[str, Any] = {}
    for r in rows:
        if r.get("status") != "completed" or r.get("variant") is None or not isinstance(r.get(metric), (int, float)):
            continue
        x = r.get(key)
        xs[repr(x)] = x
        groups.setdefault((r["variant"], repr(x)), []).append(float(r[metric]))
    out: dict[str, list[tuple[Any, float, float, int]]] = {}
    for (variant, x), values in groups.items():
        out.setdefault(variant, []).append((xs[x], *mean_std(values)))
    order = lambda item: (not isinstance(item[0], (int, float)), item[0] if isinstance(item[0], (int, float)) else str(item[0]))  # noqa: E731
    return {v: sorted(points, key=order) for v, points in sorted(out.items(), key=lambda kv: kv[0] != FULL)}


def failed_tasks(rows: list[dict]) -> list[dict]:
    """One entry per task that did not complete and is not still running: task, status, error (or the log's last
    line). A running task is counted as running (``task_counts``), never as failed."""
    seen, out = set(), []
    for r in rows:
        if r.get("status") not in ("completed", "running") and r["task"] not in seen:
            seen.add(r["task"])
            error = r.get("error") or (r.get("log_tail") or "").strip().splitlines()[-1:] or ["no summary and no log"]
            out.append({"task": r["task"], "status": r.get("status"), "error": error if isinstance(error, str) else error[0]})
    return out


def task_counts(rows: list[dict]) -> dict[str, int]:
    """How many tasks are in each status (completed, running, failed, interrupted, missing, damaged...)."""
    status = {r["task"]: r.get("status") for r in rows}
    return {s: sum(v == s for v in status.values()) for s in dict.fromkeys(status.values())}


def setting_curves(runs: dict[int, RunRecord], settings: dict[int, Any], metric: str) -> dict[Any, dict[str, list[tuple]]]:
    """{setting: {variant: [(step, mean, low, high, n)]}}: every variant's curve of ``val/<variant>/<metric>``, over
    the tasks (seeds) of each setting (``settings``: task -> its setting), at the steps every one of them logged;
    low and high: the smallest and largest seed's value (the spread over seeds, not an interval)."""
    grouped: dict[Any, dict[str, list[dict[int, float]]]] = {}
    for task, run in runs.items():
        for variant, curve in eval_curves(run.history, metric).items():
            if curve:
                grouped.setdefault(settings.get(task), {}).setdefault(variant, []).append(dict(curve))
    out: dict[Any, dict[str, list[tuple]]] = {}
    for setting, by_variant in grouped.items():
        for variant, curves in by_variant.items():
            steps = sorted(set.intersection(*(set(c) for c in curves)))
            out.setdefault(setting, {})[variant] = [
                (step, statistics.fmean(vs), min(vs), max(vs), len(vs)) for step in steps for vs in [[c[step] for c in curves]]]
    return out


def variant_rows(variants: dict[str, dict], metrics: tuple[str, ...] | None = None, test_set: str | None = None) -> list[dict]:
    """Table rows of summary.json's ``variants``: the main test set's metrics (or ``<metric>@<test_set>``), one row per
    variant, the full model first."""
    from run_record.names import split_metric

    rows = []
    for variant in sorted(variants, key=lambda v: v != FULL):
        row = {}
        for key, value in variants[variant].items():
            name, at = split_metric(key)
            if at == test_set and (metrics is None or name in metrics):
                row[name] = value
        if row:
            rows.append({"variant": variant, **{m: row[m] for m in (metrics or row) if m in row}})
    return rows


def intervals(summary: dict) -> dict:
    """The run's recorded 95% intervals (results.intervals: over, method, n, variants), or {} for a run without."""
    return (summary.get("results") or {}).get("intervals") or {}


def with_intervals(rows: list[dict], recorded: dict, test_set: str | None = None) -> list[dict]:
    """``variant_rows`` rows with a ``<metric> 95% CI`` column after each metric that has a recorded interval."""
    by_variant = recorded.get("variants") or {}
    out = []
    for row in rows:
        cis = by_variant.get(row["variant"]) or {}
        new = {}
        for key, value in row.items():
            new[key] = value
            ci = cis.get(key + (f"@{test_set}" if test_set else ""))
            if key != "variant" and ci:
                new[f"{key} 95% CI"] = f"[{ci[0]:.4f}, {ci[1]:.4f}]"
        out.append(new)
    return out


def interval_note(recorded: dict, test_set: str = "main") -> str:
    """One sentence for a caption: what the intervals are over, and n."""
    n = (recorded.get("n") or {}).get(test_set)
    if not n:
        return ""
    return (f"95% intervals over the {n} test sequences (each sequence one unit: its positions share a context; "
            "the ratio estimator's standard error, which a bootstrap over sequences matches).")
