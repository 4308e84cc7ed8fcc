"""The local report of a run or a sweep: report/index.html and report/figures/*.{png,pdf} in its directory.

What every page has is here (status, errors, damaged files, the W&B link, the config, failed tasks); what an
experiment shows is its kind's (reports/kinds/), in the order of the kinds the run declared.
"""
from __future__ import annotations

import html
import os
import sys
from pathlib import Path

from reports import series, table
from reports.kinds import SweepRecord, declared
from reports.page import Markup, Page, table_html
from reports.style import VariantEncoding
from reports.run import ReportError, RunRecord, load_run
from run_record.files import REPORT_DIR, SUMMARY_FILE, TASKS_FILE


def context(run: RunRecord) -> str:
    """Seed and the settings that matter, for every caption."""
    cfg = run.config or {}
    model = ((cfg.get("model") or {}).get("init_args") or {})
    data = ((cfg.get("data") or {}).get("init_args") or {})
    net = model.get("model") or {}
    bits = [f"seed {run.summary.get('seed')}"]
    loaded = run.summary.get("model") if isinstance(run.summary.get("model"), dict) else None
    if loaded:  # a pretrained model, evaluated only: named by what was loaded (its file, its hub revision), no steps
        gguf = (loaded.get("gguf_file") or {}).get("name")
        name = f"{gguf} (GGUF, in {loaded.get('model_name')})" if gguf else loaded.get("model_name")
        settings = (("model", name), ("revision", loaded.get("revision")))
    else:
        settings = (("model", model.get("model_name")), ("revision", model.get("revision")),
                    ("steps", run.summary.get("global_step")))
    for label, value in (("dim", net.get("dim")), ("ff", net.get("ff")), ("positional", net.get("positional")),
                         ("init", net.get("init")), ("alpha", data.get("alpha")), ("T", data.get("seq_len")), *settings):
        if value is not None:
            bits.append(f"{label} {value}")
    return f"Run {run.name}: " + ", ".join(bits) + "."


def wandb_links(summary: dict) -> list[tuple[str, str]]:
    """The W&B run: its URL when it was online; the sync command when it was offline and its files exist; nothing
    for a disabled W&B (no files were written)."""
    info = summary.get("wandb") or {}
    if not info.get("id"):
        return []
    if info.get("mode") == "online" and info.get("url"):
        return [("W&B run", info["url"])]
    offline = Path(info.get("dir") or "").parent
    if info.get("mode") in ("offline", "dryrun") and info.get("dir") and offline.is_dir():
        return [("W&B run (offline; upload with)", f"wandb sync {offline}")]
    return []


def _unknown(page: Page, names: list[str]) -> None:
    for name in names:
        page.notes.append(f"kind {name!r}: no report module is registered for it (reports/kinds/), so its figures are not drawn.")


def report_run(path: str | Path, run: RunRecord | None = None, variants: VariantEncoding | None = None) -> Path:
    """The run's page; ``variants``: the colours to draw its variants in (a sweep's, for its tasks' pages)."""
    run = run or load_run(path)
    kinds, unknown = declared([run.summary])
    if not kinds and not unknown:
        raise ReportError(f"{run.path / SUMMARY_FILE} declares no experiment kind (schema {run.summary.get('schema', 1)}; "
                          "runs declare them since schema 2): re-run it with this version to report on it")
    page = Page(f"Run {run.name}", run.path / REPORT_DIR / "figures", context(run),
                variants=variants or VariantEncoding.of([run.summary]))
    status = run.summary.get("status")
    when = ("(a pretrained model, evaluated only)" if isinstance(run.summary.get("model"), dict) else
            f"at step {run.summary.get('global_step')} (evaluated at step {run.summary.get('eval_step')})")
    page.intro = (f"<b>{' + '.join(k.title for k in kinds) or ', '.join(unknown)}</b>. Status <b>{status}</b> {when}. "
                  f"{html.escape(context(run))}")
    weights, precision = run.summary.get("weights"), (run.summary.get("machine") or {}).get("precision")
    if weights == "random initialisation":
        page.intro += ' <span class="failed">Untrained: the numbers are of the random initialisation (no --ckpt_path).</span>'
    elif weights:
        page.intro += f" Weights: {html.escape(weights)}."
    if precision:
        page.intro += f" Precision that ran: {html.escape(precision)}."
    if run.summary.get("error"):
        page.intro += f' <span class="failed">Error: {html.escape(str(run.summary["error"]))}</span>'
    if run.damaged:
        page.intro += (' <span class="failed">Damaged files, not read: '
                       + "; ".join(f"{html.escape(k)} ({html.escape(v)})" for k, v in run.damaged.items()) + "</span>")
        page.notes += [f"{name} was not read: {why}. The figures that need it are left out." for name, why in run.damaged.items()]
    for kind in kinds:
        kind.run_page(page, run)
    _unknown(page, unknown)
    if run.summary.get("undefined_metrics"):
        page.section("Undefined metrics", "<p>A mean over no scored position has no value; these are n/a: "
                     + ", ".join(f"<code>{html.escape(k)}</code>" for k in run.summary["undefined_metrics"]) + ".</p>")
    return page.write(run.path / REPORT_DIR / "index.html", run.config, wandb_links(run.summary))


def task_runs(rows: list[dict], progress=None, unreadable: list[dict] | None = None) -> dict[int, RunRecord]:
    """{task: its run} for every task of a sweep table that wrote a run directory (readable ones; the others, and
    the damaged files of readable ones, are added to ``unreadable``)."""
    tasks = {r["task"]: r["run_dir"] for r in rows if r.get("run_dir")}
    runs = {}
    for i, (task, path) in enumerate(tasks.items()):
        try:
            runs[task] = load_run(path, require_history=False)
            for name, why in runs[task].damaged.items():
                if unreadable is not None:
                    unreadable.append({"file": str(Path(path) / name), "error": why, "task": task})
        except ReportError as e:
            if unreadable is not None:
                unreadable.append({"file": path, "error": str(e), "task": task})
        if progress:
            progress(i + 1, len(tasks))
    return runs


def load_sweep(root: str | Path, progress=None) -> SweepRecord:
    root = Path(root)
    try:
        read = table.read_sweep(root)
    except table.NotASweep as e:
        raise ReportError(str(e)) from e
    damaged = list(read.damaged)
    keys = table.grid_keys(read.points, varying=True)
    runs = task_runs(read.rows, progress, damaged)
    return SweepRecord(root, read.rows, read.points, keys, [k for k in keys if not table.is_seed_key(k)], runs,
                       damaged, read.protocols, read.overrides)


def task_pages(page: Page, sweep: SweepRecord) -> None:
    """A table of the tasks, each linked to its run's page. A task run without its page (``report: false``) gets it
    built here, with the sweep's colours; a task with no readable run says why."""
    pages, missing = {}, [t for t, run in sweep.runs.items() if not (run.path / REPORT_DIR / "index.html").is_file()]
    for i, task in enumerate(missing):
        try:
            report_run(sweep.runs[task].path, sweep.runs[task], page.variants)
        except (ReportError, OSError) as e:  # a page that cannot be written: the others still are
            pages[task] = f"not built: {e}"
        if len(missing) >= 20 and (i + 1) % max(1, len(missing) // 10) == 0:
            print(f"built {i + 1}/{len(missing)} task pages", file=sys.stderr)
    status = {r["task"]: r.get("status") for r in sweep.rows}
    rows = []
    for task in sorted({r["task"] for r in sweep.rows}):
        run = sweep.runs.get(task)
        target = run.path / REPORT_DIR / "index.html" if run else None
        if target is not None and target.is_file():
            href = os.path.relpath(target, sweep.root / REPORT_DIR)
            cell = Markup(f'<a href="{html.escape(href)}">{html.escape(run.name)}</a>')
        else:
            cell = pages.get(task, "no run directory")
        rows.append({"task": task, **{k: sweep.point(task).get(k) for k in sweep.keys}, "status": status.get(task), "page": cell})
    fixed = "; ".join(f"{k} = {v}" for k, v in sweep.overrides.items())
    page.table("Tasks and their pages", rows, note=f"Fixed for every task (the sweep file's overrides): {fixed}." if fixed else "")


def report_sweep(path: str | Path, progress=None, sweep: SweepRecord | None = None) -> Path:
    sweep = sweep or load_sweep(path, progress)
    rows, root = sweep.rows, sweep.root
    kinds, unknown = declared([r.summary for r in sweep.runs.values()])
    tasks = len({r["task"] for r in rows})
    page = Page(f"Sweep {root.name}", root / REPORT_DIR / "figures",
                f"Sweep {root.name}: {tasks} tasks over {', '.join(sweep.keys) or 'one setting'}.",
                variants=VariantEncoding.of(r.summary for r in sweep.runs.values()))
    failed = series.failed_tasks(rows)
    counts = ", ".join(f"{n} {status}" for status, n in series.task_counts(rows).items())
    page.intro = (f"<b>{' + '.join(k.title for k in kinds) or 'no completed task'}</b>. {tasks} tasks: {counts}. "
                  "Per-task rows: <code>results.csv</code>; per setting: <code>results_by_setting.csv</code>.")
    disagree = [r for r in rows if r.get("note")]
    if disagree:
        page.notes += list(dict.fromkeys(f"task {r['task']}: {r['note']}" for r in disagree))
    for kind in kinds:
        kind.sweep_page(page, sweep)
    _unknown(page, unknown)
    by_setting = table.by_setting(rows, sweep.keys)
    columns = [c for c in dict.fromkeys(k for r in by_setting for k in r) if not c.endswith("_std")]
    shown = [{**r, **{c: f"{r[c]:.4f} ± {r[c.replace('_mean', '_std')]:.4f}" for c in columns if c.endswith("_mean") and c in r}}
             for r in by_setting]
    page.table("Every metric, mean ± std over seeds, per setting", shown, columns)
    task_pages(page, sweep)
    if failed:
        page.section("Tasks that did not complete", '<div class="failed">' + table_html(failed) + "</div>")
    if sweep.damaged:
        page.section("Files not read (damaged)", '<div class="failed">' + table_html(sweep.damaged) + "</div>")
    return page.write(root / REPORT_DIR / "index.html")


def load(path: str | Path) -> RunRecord | SweepRecord:
    """A run directory's record, or a sweep directory's (with its tasks' runs), read once."""
    path = Path(path)
    if (path / TASKS_FILE).is_file():
        def progress(i: int, n: int) -> None:
            if n >= 20 and (i % max(1, n // 10) == 0 or i == n):
                print(f"read {i}/{n} task runs", file=sys.stderr)
        return load_sweep(path, progress)
    return load_run(path)


def report(path: str | Path, record: RunRecord | SweepRecord | None = None) -> Path:
    record = record or load(path)
    if isinstance(record, SweepRecord):
        return report_sweep(path, sweep=record)
    return report_run(path, run=record)
