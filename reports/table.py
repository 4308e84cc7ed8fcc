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
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from run_record import files
from run_record.names import FULL, evaluation_set, selection_evaluation, split_metric, split_prompt_group
from run_record.files import ATTEMPT_FILE, CONFIG_FILE, RESULTS_FILE, SUMMARY_FILE, TASK_ERROR_FILE, TASKS_FILE

BY_SETTING_FILE = "results_by_setting.csv"


def log_tail(root: Path, task: int, lines: int = 15) -> str:
    """The end of a SLURM task's log (``<sweep dir>/logs/<array job>_<task>.out``), where a failure explains itself."""
    logs = sorted((root / "logs").glob(f"*_{task}.out"))
    try:
        return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:]) if logs else ""
    except OSError:
        return ""


class NotASweep(ValueError):
    pass


@dataclass
class SweepTable:
    """A sweep directory as read: one row per (task, variant), the grid points, and the files that could not be read
    (each named with why, the rest of the table read anyway)."""

    rows: list[dict]
    points: list[dict]
    damaged: list[dict] = field(default_factory=list)  # {"file": path, "error": why}
    protocols: dict[int, dict] = field(default_factory=dict)  # task -> its declared selection protocol
    overrides: dict = field(default_factory=dict)  # the sweep file's fixed settings, the same for every task


def _same(want, have) -> bool:
    if isinstance(want, bool) or isinstance(have, bool):
        return want == have
    if isinstance(want, (int, float)) and isinstance(have, (int, float)):
        return math.isclose(float(want), float(have), rel_tol=1e-9, abs_tol=1e-12)
    return want == have


def config_matches(point: dict, config: dict) -> bool:
    """The run's config holds the grid point's values. Scalars are compared; lists and dicts, which the parser may
    normalise, and keys the saved config leaves out (link targets such as data.init_args.tokenizer), are checked
    through the run's recorded point instead."""
    for key, want in point.items():
        if isinstance(want, (list, dict)):
            continue
        have = config
        for part in key.split("."):
            have = have.get(part, KeyError) if isinstance(have, dict) else KeyError
        if have is not KeyError and not _same(want, have):
            return False
    return True


def _task_points(root: Path, damaged: list[dict]) -> list[dict]:
    """The grid points from tasks.json; if it is damaged, from each task's attempt.json (what each task ran)."""
    try:
        return files.read_json(root / TASKS_FILE)["points"]
    except (files.Damaged, KeyError, TypeError) as e:
        damaged.append({"file": str(root / TASKS_FILE), "error": str(getattr(e, "reason", e))})
    points = {}
    for d in root.iterdir():
        if d.is_dir() and d.name.isdigit() and (d / ATTEMPT_FILE).is_file():
            try:
                points[int(d.name)] = files.read_json(d / ATTEMPT_FILE)["point"]
            except (files.Damaged, KeyError, TypeError) as e:
                damaged.append({"file": str(d / ATTEMPT_FILE), "error": str(getattr(e, "reason", e))})
    if not points:
        raise NotASweep(f"{root / TASKS_FILE} is damaged and no task has a readable {ATTEMPT_FILE}: the grid is unknown")
    return [points.get(i, {}) for i in range(max(points) + 1)]


def _task_runs(root: Path, task: int, point: dict, attempt: dict | None, damaged: list[dict]) -> list[dict]:
    """The summaries under a task's directory that belong to its newest attempt at this grid point, newest last."""
    out = []
    for path in (root / str(task)).glob(f"*/*/{SUMMARY_FILE}"):
        try:
            summary = files.read_json(path)
            if not isinstance(summary, dict) or "status" not in summary:
                raise files.Damaged(path, "not a run summary (no status)")
        except files.Damaged as e:
            damaged.append({"file": str(path), "error": e.reason, "task": task})
            continue
        made_by = summary.get("sweep_task") or {}
        if attempt is not None and made_by.get("attempt") != attempt.get("attempt"):
            continue  # an earlier attempt's run (an earlier grid, a failed try): never this task's result
        if made_by and made_by.get("point") != point:
            continue
        try:
            config = files.read_yaml(path.parent / CONFIG_FILE)
        except (files.Damaged, OSError):
            config = None
        if config is not None and not config_matches(point, config):
            continue  # its config is not this grid point
        # where the summary is now (a sweep copied off the cluster): not the path recorded when it was written
        out.append(summary | {"_mtime": path.stat().st_mtime, "run_dir": str(path.parent)})
    return sorted(out, key=lambda s: s["_mtime"])


def read_sweep(root: str | Path) -> SweepTable:
    root = Path(root)
    if not (root / TASKS_FILE).is_file():
        what = "does not exist" if not root.exists() else f"has no {TASKS_FILE}"
        hint = " (it is a single run: its results are in summary.json)" if (root / SUMMARY_FILE).is_file() else ""
        raise NotASweep(f"{root} {what}, so it is not a sweep directory{hint}; a sweep directory is what "
                        "slurm/submit.py or python -m pipeline.sweep wrote, e.g. runs/sweeps/<sweep name>")
    damaged: list[dict] = []
    points = _task_points(root, damaged)
    try:
        overrides = files.read_json(root / TASKS_FILE).get("overrides") or {}
    except (files.Damaged, AttributeError):
        overrides = {}  # a damaged tasks.json is listed by _task_points
    out, protocols = [], {}
    for i, point in enumerate(points):
        attempt, note = None, None
        if (root / str(i) / ATTEMPT_FILE).is_file():
            try:
                attempt = files.read_json(root / str(i) / ATTEMPT_FILE)
            except files.Damaged as e:
                damaged.append({"file": e.path, "error": e.reason, "task": i})
                # which attempt is the newest is unknown: no run may stand for the task (an older one would pass
                # for its result)
                out.append({"task": i, **point, "status": "damaged", "error": f"{e.path}: {e.reason} (the newest "
                            "attempt is unknown, so no run is counted for this task)", "log_tail": log_tail(root, i)})
                continue
            if attempt.get("point") != point:
                # the sweep file changed after tasks.json was written, and this task was re-run (--task): its
                # newest attempt is what it ran, and the table says that tasks.json disagrees
                note = (f"{TASKS_FILE} has {json.dumps(point, sort_keys=True)}, its newest attempt ran "
                        f"{json.dumps(attempt.get('point'), sort_keys=True)} (the sweep file changed since {TASKS_FILE} "
                        "was written): the row is the attempt's")
                point = attempt.get("point") or {}
        error_file = root / str(i) / TASK_ERROR_FILE
        error = error_file.read_text(errors="replace").strip() if error_file.is_file() else None
        runs = _task_runs(root, i, point, attempt, damaged)
        if not runs:
            hurt = [d for d in damaged if d.get("task") == i and d["file"].endswith(SUMMARY_FILE)]
            if hurt:  # its run's summary cannot be read: no numbers, and never a completed row
                status, error = "damaged", error or f"{hurt[-1]['file']}: {hurt[-1]['error']}"
            else:
                status = "failed" if error else "missing"
            row = {"task": i, **point, "status": status, "log_tail": log_tail(root, i)}
            out.append(row | ({"error": error} if error else {}) | ({"note": note} if note else {}))
            continue
        summary = runs[-1]  # the newest run of the newest attempt
        protocol = (summary.get("results") or {}).get("selection_protocol")
        if protocol:
            protocols[i] = protocol
        base = {"task": i, **point, "status": summary["status"], "run_dir": summary.get("run_dir"), "eval_step": summary.get("eval_step")}
        if note:
            base["note"] = note
        if summary.get("error") or (error and summary["status"] != "completed"):
            base["error"] = summary.get("error") or error
        if summary["status"] != "completed":
            base["log_tail"] = log_tail(root, i)
        for field_name in ("commit", "fingerprint"):
            if (summary.get("model") or {}).get(field_name):
                base[field_name] = summary["model"][field_name]
        if not summary.get("variants"):
            out.append(base)
        for variant, metrics in (summary.get("variants") or {}).items():
            out.append({**base, "variant": variant, **metrics})
    flag_same_weights(out)
    return SweepTable(out, points, damaged, protocols, overrides)


CHECKPOINT_KEYS = ("model.init_args.model_name", "model.init_args.revision", "model.init_args.gguf_file")


def flag_same_weights(table: list[dict]) -> None:
    """Rows whose weights' fingerprint equals that of a task that asked for another checkpoint (model, revision or
    file) get ``same_weights_as`` (those tasks, with what they asked for): some Pythia branches serve the final
    checkpoint's weights, and a checkpoint curve must not plot one model many times unnoticed."""
    asked = {r["task"]: {k: r.get(k) for k in CHECKPOINT_KEYS if k in r} for r in table if r.get("fingerprint")}
    prints = {r["task"]: r["fingerprint"] for r in table if r.get("fingerprint")}
    for r in table:
        if not r.get("fingerprint"):
            continue
        twins = [t for t, f in sorted(prints.items()) if f == r["fingerprint"] and t != r["task"] and asked[t] != asked[r["task"]]]
        if twins:
            r["same_weights_as"] = "; ".join(f"task {t} (" + ", ".join(f"{k.rsplit('.', 1)[-1]} {v}" for k, v in asked[t].items())
                                             + ")" for t in twins)


def rows(root: str | Path) -> list[dict]:
    return read_sweep(root).rows


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


def selected(table: list[dict], keys: list[str], protocols: dict[int, dict]) -> list[dict]:
    """The selection protocol across a sweep's tasks, as each task's summary declares it (``selection_protocol``: the
    metric ``by``, the grid keys that only choose variants, the keys that are evaluations within a task): per setting
    (the other grid values, seeds aside) and evaluation, the variant with the best ``<by>@selection[:<evaluation>]``
    (ties keep the full model), with its test score and the full model's. Test scores play no part in the choice."""
    # candidates are whole variants (not a variant's numbers over one prompt type, ``<variant>:<type>``)
    done = [r for r in table if r.get("status") == "completed" and r.get("variant") is not None and r["task"] in protocols
            and split_prompt_group(r["variant"])[1] is None]
    full = {r["task"]: r for r in done if r["variant"] == FULL}
    done = [r for r in done if _keeps(r, full.get(r["task"], {}), protocols[r["task"]].get("keeping"))]
    best: dict[tuple, tuple[float, dict, str | None, str, list[str]]] = {}
    for r in sorted(done, key=lambda r: r["variant"] != FULL):
        protocol = protocols[r["task"]]
        by, skip = protocol["by"], {*protocol.get("variant_keys", ()), *protocol.get("evaluation_keys", ())}
        settings = [k for k in keys if not is_seed_key(k) and k not in skip]
        for key, value in r.items():
            name, test_set = split_metric(key)
            is_selection, evaluation = selection_evaluation(test_set)
            if name != by or not is_selection or not isinstance(value, float):
                continue
            group = tuple(json.dumps(r.get(k), sort_keys=True) for k in settings) + (evaluation,)
            if group not in best or value > best[group][0]:
                best[group] = (value, r, evaluation, by, settings)
    out = []
    for value, r, evaluation, by, settings in best.values():
        test_key = eval_metric(by, evaluation_set(evaluation, selection=False))
        out.append({**{k: r.get(k) for k in settings}, "evaluation": evaluation or "prompts", "selected": r["variant"],
                    f"{by} (selection)": value, f"{by} (test)": r.get(test_key),
                    f"{by}_stderr (test)": r.get(eval_metric(f"{by}_stderr", evaluation)) if evaluation else None,
                    f"full {by} (test)": full.get(r["task"], {}).get(test_key), "task": r["task"]})
    return out


def _keeps(row: dict, full: dict, keeping: dict | None) -> bool:
    """A candidate keeps the declared fraction of the full model's ``keeping.metric`` on every selection split it has
    (the task's own protocol: CausalLMModule's ``select_keeping``)."""
    if not keeping or not keeping.get("fraction"):
        return True
    metric, fraction = keeping["metric"], keeping["fraction"]
    for key, value in row.items():
        name, test_set = split_metric(key)
        if name == metric and selection_evaluation(test_set)[0] and isinstance(value, float) and isinstance(full.get(key), float):
            if value < fraction * full[key]:
                return False
    return True


def eval_metric(metric: str, test_set: str | None) -> str:
    """A variant row's column: ``<metric>`` or ``<metric>@<test set>``."""
    return f"{metric}@{test_set}" if test_set else metric


def write_csv(path: Path, table: list[dict], skip: tuple[str, ...] = ()) -> list[str]:
    columns = list(dict.fromkeys(k for row in table for k in row if k not in skip))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    files.write_text(path, out.getvalue())
    return columns


def grid_keys(points: list[dict] | str | Path, varying: bool = False) -> list[str]:
    """The sweep's grid keys (of its points, or of a sweep directory); with ``varying``, only those that take more
    than one value (what was swept)."""
    if not isinstance(points, list):
        points = read_sweep(points).points
    keys = list(dict.fromkeys(k for p in points for k in p))
    if varying:
        keys = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True) for p in points}) > 1]
    return keys


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir")
    args = parser.parse_args(argv)
    try:
        read = read_sweep(args.sweep_dir)
    except NotASweep as e:
        raise SystemExit(f"error: {e}") from None
    table, keys = read.rows, grid_keys(read.points)
    root = Path(args.sweep_dir)
    try:
        columns = write_csv(root / RESULTS_FILE, table, skip=("log_tail", "error", "note"))
        write_csv(root / BY_SETTING_FILE, by_setting(table, keys))
    except files.WriteError as e:
        raise SystemExit(f"error: {e}") from None
    choice = selected(table, keys, read.protocols)
    shown = [c for c in columns if c not in ("run_dir", "same_weights_as")]  # the twins are printed below
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    widths = {c: max(len(c), *(len(fmt(r.get(c, ""))) for r in table)) for c in shown}
    print("  ".join(c.rjust(widths[c]) for c in shown))
    for r in table:
        print("  ".join(fmt(r.get(c, "")).rjust(widths[c]) for c in shown))
    for r in table:
        if r.get("log_tail") or r.get("error"):
            error = f"\nerror: {r['error']}" if r.get("error") else ""
            print(f"\ntask {r['task']} {r['status']}:{error}\n{r.get('log_tail', '')}")
    for note in dict.fromkeys(f"task {r['task']}: {r['note']}" for r in table if r.get("note")):
        print(f"\nnote: {note}")
    for twin in dict.fromkeys(f"task {r['task']} has the same weights as {r['same_weights_as']}" for r in table
                              if r.get("same_weights_as")):
        print(f"\nwarning: {twin}: the checkpoint was not what was asked for, or the two are one model")
    if choice:
        try:
            write_csv(root / SELECTED_FILE, choice)
        except files.WriteError as e:
            raise SystemExit(f"error: {e}") from None
        print("\nSelected on the selection split, reported on test:")
        for c in choice:
            print("  " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in c.items()))
    for d in read.damaged:
        print(f"\nnot read (damaged): {d['file']}: {d['error']}")
    print(f"\n{len(table)} rows -> {root / RESULTS_FILE}; mean and std over seeds -> {root / BY_SETTING_FILE}"
          + (f"; selected variants -> {root / SELECTED_FILE}" if choice else ""))
    return table


if __name__ == "__main__":
    main()
