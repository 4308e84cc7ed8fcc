"""The local report of a run or a sweep: report/index.html and report/figures/*.{png,pdf} in its directory."""
from __future__ import annotations

import html
import sys
from pathlib import Path

from lightning_modules.metric_keys import split_metric
from run_record.files import REPORT_DIR
from reports import hijack_plots, plots, pretrained_plots, series, table
from reports.page import table_html, write_page
from reports.run import ReportError, RunRecord, load_run


def _context(run: RunRecord) -> str:
    """Seed and the settings that matter, for every caption."""
    cfg = run.config or {}
    model = ((cfg.get("model") or {}).get("init_args") or {})
    data = ((cfg.get("data") or {}).get("init_args") or {})
    net = model.get("model") or {}
    bits = [f"seed {run.summary.get('seed')}"]
    for label, value in (("dim", net.get("dim")), ("ff", net.get("ff")), ("init", net.get("init")),
                         ("alpha", data.get("alpha")), ("T", data.get("seq_len")), ("model", model.get("model_name")),
                         ("revision", model.get("revision")), ("steps", run.summary.get("global_step"))):
        if value is not None:
            bits.append(f"{label} {value}")
    return f"Run {run.name}: " + ", ".join(bits) + "."


def _wandb_links(summary: dict) -> list[tuple[str, str]]:
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


def report_run(path: str | Path) -> Path:
    run = load_run(path)
    figs = plots.Figures(run.path / REPORT_DIR / "figures", _context(run))
    for name, why in run.damaged.items():
        figs.notes.append(f"{name} was not read: {why}. The figures that need it are left out.")
    events = series.truncations(run.summary)
    if run.history and any(k.startswith(("val/", "test/")) for k in run.history):
        plots.metrics_over_training(figs, run.history, events)
    plots.laser_sweep(figs, run.summary.get("variants") or {})
    plots.probes(figs, run.history, series.marked_steps(run.history), events)
    plots.spectra(figs, run.spectra, series.spectrum_rank_curves(run.history))
    plots.gradient_snr(figs, series.gradient_snr(run.summary))
    plots.truncation_jumps(figs, events)
    if series.length_generalisation(run.summary.get("variants") or {}):
        hijack_plots.length_generalisation(figs, run.summary.get("variants") or {})
    fits = series.hijack_theory_fit(run.summary)
    if (run.summary.get("callbacks") or {}).get("HijackProbe"):
        hijack_plots.hijack(figs, run.summary)
        hijack_plots.hijack_theory(figs, run.summary)
    if series.gsm8k_by_shots(run.summary):
        pretrained_plots.gsm8k(figs, run.summary)
    elif run.summary.get("model"):
        pretrained_plots.prompt_bars(figs, run.summary)
    variants = [{"variant": v, **{k: x for k, x in m.items() if split_metric(k)[1] is None}}  # the main test set's
                for v, m in (run.summary.get("variants") or {}).items()]
    marks = series.marked_steps(run.history)
    sections = [("Results", table_html(variants))]
    if fits:
        sections.append(("Hijack theory fit (logit(o) - logit(b) = w_ic a(n, T) - w_g)",
                         table_html([series.hijack_fit_row(k, f) for k, f in fits.items()])))
    if marks:
        sections.append(("When things were learned", table_html([{"event": k, "first step": v} for k, v in marks.items()])))
    status = run.summary.get("status")
    intro = (f"Status <b>{status}</b> at step {run.summary.get('global_step')} (evaluated at step "
             f"{run.summary.get('eval_step')}). {_context(run)}")
    if run.summary.get("error"):
        intro += f' <span class="failed">Error: {html.escape(str(run.summary["error"]))}</span>'
    if run.damaged:
        intro += (' <span class="failed">Damaged files, not read: '
                  + "; ".join(f"{html.escape(k)} ({html.escape(v)})" for k, v in run.damaged.items()) + "</span>")
    if run.summary.get("undefined_metrics"):
        sections.insert(1, ("Undefined metrics", "<p>A mean over no scored position has no value; these are blank "
                            "(n/a): " + ", ".join(f"<code>{html.escape(k)}</code>" for k in run.summary["undefined_metrics"])
                            + ".</p>"))
    return write_page(run.path / REPORT_DIR / "index.html", f"Run {run.name}", intro, sections, figs.figures,
                      figs.notes, run.config, _wandb_links(run.summary))


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


def report_sweep(path: str | Path, progress=None) -> Path:
    root = Path(path)
    try:
        read = table.read_sweep(root)
    except table.NotASweep as e:
        raise ReportError(str(e)) from e
    rows, damaged = read.rows, list(read.damaged)
    keys = table.grid_keys(read.points, varying=True)
    swept = [k for k in keys if not table.is_seed_key(k)]
    figs = plots.Figures(root / REPORT_DIR / "figures", f"Sweep {root.name}: {len({r['task'] for r in rows})} tasks over {', '.join(keys)}.")
    runs = task_runs(rows, progress, damaged)
    pretrained = any(isinstance(r.get("p_answer"), float) for r in rows)
    metrics = ["p_answer", "p_generic", "log_ratio", "logit_diff"] if pretrained else ["p_noise", "p_correct", "acc"]
    revision = next((k for k in swept if k.endswith("revision")), None)
    if revision:
        pretrained_plots.revision_sweep(figs, rows, revision)
    for key in swept:
        if key != revision:
            plots.sweep_final(figs, rows, key, metrics)
    if not pretrained:
        groups = {t: next((r.get(swept[0]) for r in rows if r["task"] == t), None) for t in runs} if swept else {t: t for t in runs}
        plots.sweep_curves(figs, series.task_curves(runs, "p_noise"), groups, swept[0] if swept else None)
    encoding = next((k for k in swept if k.endswith("positional")), None)
    if encoding:
        hijack_plots.sweep_length_generalisation(figs, rows, encoding, [k for k in swept if k != encoding])
        rates = series.sweep_hijack_rates(runs, rows, encoding)
        if rates:
            hijack_plots.sweep_hijack_rates(figs, rates)
    hijack_fits = series.sweep_hijack_fits(runs, rows, keys)
    failed = series.failed_tasks(rows)
    by_setting = table.by_setting(rows, keys)
    columns = [c for c in dict.fromkeys(k for r in by_setting for k in r) if not c.endswith("_std")]
    # a metric only some variants have (a delta against the full model) is blank for the others
    shown = [{**r, **{c: f"{r[c]:.4f} ± {r[c.replace('_mean', '_std')]:.4f}" for c in columns if c.endswith("_mean") and c in r}}
             for r in by_setting]
    sections = [("Mean ± std over seeds, per setting", table_html(shown, columns))]
    choice = table.selected(rows, keys)
    if choice:
        sections.append(("Selected LASER variant per setting and shot count (chosen on the selection split, reported on "
                         "test)", table_html(choice)))
    if hijack_fits:
        sections.append(("Hijack theory fit per task (logit(o) - logit(b) = w_ic a(n, T) - w_g)", table_html(hijack_fits)))
    if failed:
        sections.append(("Failed tasks", '<div class="failed">' + table_html(failed) + "</div>"))
    if damaged:
        sections.append(("Files not read (damaged)", '<div class="failed">' + table_html(damaged) + "</div>"))
    intro = (f"{len({r['task'] for r in rows})} tasks, {len(failed)} failed. Per-task rows: <code>results.csv</code>; "
             "per setting: <code>results_by_setting.csv</code>.")
    return write_page(root / REPORT_DIR / "index.html", f"Sweep {root.name}", intro, sections, figs.figures, figs.notes,
                      None, [])


def report(path: str | Path) -> Path:
    from reports.run import kind_of

    path = Path(path)
    if kind_of(path) == "sweep":
        def progress(i: int, n: int) -> None:
            if n >= 20 and (i % max(1, n // 10) == 0 or i == n):
                print(f"read {i}/{n} task runs", file=sys.stderr)
        return report_sweep(path, progress)
    return report_run(path)
