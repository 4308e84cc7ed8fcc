"""Noisy in-context recall (Chen, Bruna & Bietti): where the noise token lives, and in what order things are learned.

Run page: the results per LASER variant, the clean-test curves from step 0 (full model in black), the LASER sweep
against rho, the probes with the steps where the FF learns the noise and the induction head forms, the spectra and
ranks, the gradient SNR per parameter group, and the jumps around mid-training truncations. Sweep page: each final
metric against each swept key, per variant, and every task's P(noise) curve.
"""
from __future__ import annotations

import numpy as np

from reports import series
from reports.kinds import ReportKind, SweepRecord, register
from reports.page import Page
from reports import attention, attribution, memory
from reports.run import History, RunRecord, unless_unread
from run_record.files import METRICS_FILE, SPECTRA_FILE
from reports.style import EVENT_COLOUR, METRIC_LABELS, PAGE_WIDTH_IN, ordered, panel_grid, plt, slots
from run_record.kinds import NOISY_RECALL
from run_record.contract import GRADIENT_NOISE, LASER_TRUNCATION, section, sections
from run_record.names import FULL, RECALL_METRICS, RECALL_PLOTTED, eval_key, probe_key


# --- series ------------------------------------------------------------------------------------------------------

def laser_grid(summary: dict) -> dict[str, list[tuple[float, dict[str, float]]]]:
    """{target matrix: [(rho, metrics)]} sorted by rho, from the module's declared LASER grid (a full-rank rho reads
    the full model's numbers)."""
    variants = summary.get("variants") or {}
    out: dict[str, list[tuple[float, dict[str, float]]]] = {}
    for cell in (summary.get("results") or {}).get("laser_grid") or []:
        if cell["variant"] in variants:
            out.setdefault(cell["target"], []).append((cell["rho"], variants[cell["variant"]]))
    return {k: sorted(v, key=lambda x: x[0]) for k, v in out.items()}


def laser_grid_intervals(summary: dict) -> dict[str, dict[float, dict[str, list[float] | None]]]:
    """{target: {rho: {metric: [low, high]}}} from the recorded intervals of the LASER grid's variants."""
    by_variant = series.intervals(summary).get("variants") or {}
    out: dict[str, dict[float, dict]] = {}
    for cell in (summary.get("results") or {}).get("laser_grid") or []:
        if cell["variant"] in by_variant:
            out.setdefault(cell["target"], {})[cell["rho"]] = by_variant[cell["variant"]]
    return out


def accuracy_swing(history: History, above: float = 0.2) -> tuple[float, float, int, float, float] | None:
    """(lowest, highest, evaluations, lowest P(noise), highest P(noise)) of the full model over the last half of its
    evaluations, when its accuracies there are further apart than ``above``; else None."""
    curves = series.eval_curves(history, "acc").get(FULL) or []
    tail = curves[len(curves) // 2:]
    acc = [v for _, v in tail]
    if len(acc) < 3 or max(acc) - min(acc) <= above:
        return None
    steps = {s for s, _ in tail}
    noise = [v for s, v in series.eval_curves(history, "p_noise").get(FULL) or [] if s in steps] or [float("nan")]
    return min(acc), max(acc), len(acc), min(noise), max(noise)


def probe_curves(history: History) -> dict[str, series.Curve]:
    """Every AttentionProbe series: ``probe/layers.<i>.attn/<name>`` and ``probe/layers.<i>.ff/noise_margin``."""
    return {k: sorted(v) for k, v in history.items() if k.startswith("probe/")}


def marked_steps(history: History) -> dict[str, int | None]:
    """The paper's order of events: per layer with an FF, the first probed step where its noise margin is positive
    (``ff_learns_noise:layers.<i>``), and per layer, the first where the induction attention to the in-context
    outputs passes 0.5 (``induction_head:layers.<i>``)."""
    out: dict[str, int | None] = {}
    for key, curve in probe_curves(history).items():
        layer = key.split("/")[1].rsplit(".", 1)[0]
        if key.endswith(".ff/noise_margin"):
            out[f"ff_learns_noise:{layer}"] = series.first_step(curve, 0.0)
        elif key.endswith(".attn/to_output"):
            out[f"induction_head:{layer}"] = series.first_step(curve, 0.5)
    return out


def spectrum_rank_curves(history: History) -> dict[str, dict[str, series.Curve]]:
    """{matrix: {stable_rank | effective_rank: curve}} from WeightSpectrumLogger's scalars."""
    out: dict[str, dict[str, series.Curve]] = {}
    for key, curve in history.items():
        if key.startswith("spectrum/") and key.rsplit("/", 1)[1] in ("stable_rank", "effective_rank"):
            matrix, stat = key[len("spectrum/"):].rsplit("/", 1)
            out.setdefault(matrix, {})[stat] = sorted(curve)
    return out


def gradient_snr(summary: dict) -> dict[int, dict[str, float]]:
    """{step: {parameter group: SNR}} measured by GradientNoise (summary.json)."""
    raw = section(summary, GRADIENT_NOISE)
    return {int(step): {g: s["snr"] for g, s in groups.items()} for step, groups in sorted(raw.items(), key=lambda kv: int(kv[0]))}


def truncations(summary: dict) -> list[dict]:
    """LaserTruncation events: {step, ranks, before: metrics, after: metrics} (from every LaserTruncation callback)."""
    events = [{"step": e["global_step"], "ranks": e["ranks"], "before": e["before"], "after": e["after"]}
              for record in sections(summary, LASER_TRUNCATION) for e in record.get("events", [])]
    return sorted(events, key=lambda e: e["step"])


# --- figures -----------------------------------------------------------------------------------------------------

def _steps_axis(ax, marks: dict[str, int | None] | None = None, events: list[dict] = ()) -> None:
    """Optimizer steps on a symmetric-log axis (step 0 and the early steps visible next to the late ones)."""
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(left=0)
    ax.set_xlabel("optimizer step (log scale after 10)")
    ax.grid(alpha=0.3)
    for label, step in (marks or {}).items():
        if step is not None:
            ax.axvline(step, linestyle="--" if label.startswith("ff") else "-.", linewidth=1.2, color=EVENT_COLOUR)
    for e in events:
        ax.axvline(e["step"], color=EVENT_COLOUR, linestyle=":", linewidth=1)


def metrics_over_training(page: Page, run: RunRecord, marks: dict, events: list[dict]) -> None:
    title = "Clean-test metrics over training"
    panels = [(m, series.eval_curves(run.history, m)) for m in RECALL_PLOTTED]
    if not any(curves for _, curves in panels):
        return page.skip(title, unless_unread(run, METRICS_FILE, "the run logged no validation metrics"))
    fig, axes = plt.subplots(1, 3, figsize=(PAGE_WIDTH_IN, 3.6), sharex=True)
    for ax, (metric, curves) in zip(axes, panels):
        for variant in ordered(curves):
            steps, values = zip(*curves[variant])
            ax.plot(steps, values, marker="o", markersize=3, **page.variants.style(variant))
        ax.set_ylabel(METRIC_LABELS[metric])
        ax.set_ylim(-0.02, 1.02)
        _steps_axis(ax, marks, events)
    axes[0].legend(fontsize=8)
    when = "; ".join(f"{k.replace(':', ' ')} at step {v}" for k, v in marks.items() if v is not None)
    page.save(fig, "metrics_over_training", title,
              "At repeated triggers of the clean test set (alpha = 0). The full model (black) puts about alpha on the "
              "noise token once its FF has learned it; without layer 2's FF (rank 0) it answers from context. Grey "
              f"dashed: an FF's noise margin turns positive; grey dash-dot: the induction attention passes 0.5{' (' + when + ')' if when else ''}."
              + (" Grey dotted: mid-training LASER truncations." if events else ""))


def laser_sweep(page: Page, run: RunRecord) -> None:
    title = "LASER at the end of training: metrics against the kept rank fraction"
    grid = laser_grid(run.summary)
    if not grid:
        return page.skip(title, "the run evaluated no LASER variant")
    fig, axes = plt.subplots(1, 3, figsize=(PAGE_WIDTH_IN, 3.4))
    rhos, xs = slots({target: [rho for rho, _ in points] for target, points in grid.items()})
    cis = laser_grid_intervals(run.summary)
    for ax, metric in zip(axes, RECALL_PLOTTED):
        for target, points in grid.items():
            # the rhos measured as slots, markers only: no line stands for the ranks between two measured ones
            ys = [m[metric] for _, m in points]
            bounds = [(cis.get(target, {}).get(rho) or {}).get(metric) or [y, y] for (rho, _), y in zip(points, ys)]
            ax.errorbar(xs[target], ys, yerr=[[y - b[0] for y, b in zip(ys, bounds)], [b[1] - y for y, b in zip(ys, bounds)]],
                        marker="o", linestyle="none", capsize=3, **page.variants.style(target))
        ax.set_xticks(range(len(rhos)), [f"{r:g}" for r in rhos])
        ax.set_xlim(-0.5, len(rhos) - 0.5)
        ax.set_xlabel("rho (kept rank fraction)")
        ax.set_ylabel(METRIC_LABELS[metric])
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    page.save(fig, "laser_sweep", title, "Each target matrix truncated alone, at the rhos measured (one slot each, "
              "evenly spaced whatever their values), keeping rank floor(rho min(m, n)); rho 1 is the full model. "
              "Where the noise sits in a matrix's top singular directions, P(noise) stays high until rho = 0. "
              + (series.interval_note(series.intervals(run.summary)) or "No intervals: the run predates them."))


def probes(page: Page, run: RunRecord, marks: dict, events: list[dict]) -> None:
    title = "Attention probes and FF noise margins over training"
    curves = probe_curves(run.history)
    if not curves:
        return page.skip(title, unless_unread(run, METRICS_FILE, "AttentionProbe was off in this run"))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 3.8))
    layers = sorted({k.split("/")[1].rsplit(".", 1)[0] for k in curves})
    colour = {layer: plt.get_cmap("tab10")(i) for i, layer in enumerate(layers)}
    dash = {"to_output": "-", "to_noise": "--", "prev_token": ":"}  # colour: the layer; line: what is measured
    for key, curve in curves.items():
        steps, values = zip(*curve)
        layer, what = key.split("/")[1].rsplit(".", 1)[0], key.rsplit("/", 1)[1]
        if what == "noise_margin":
            ax2.plot(steps, values, marker=".", color=colour[layer], label=f"{layer} FF")
        elif what in dash:
            ax1.plot(steps, values, marker=".", color=colour[layer], linestyle=dash[what], label=f"{layer} {what}")
    ax1.set_ylabel("attention mass")
    ax2.set_ylabel("logit(noise) - max other logit, W_U FF(trigger)")
    ax2.axhline(0, color="gray", linewidth=0.8)
    for ax in (ax1, ax2):
        _steps_axis(ax, marks, events)
        ax.legend(fontsize=8)
    when = "; ".join(f"{k.replace(':', ' ')} at step {v}" for k, v in marks.items() if v is not None) or "neither event happened"
    page.save(fig, "probes", title, "Grey dashed: an FF's noise margin turns positive (it maps the trigger to the noise); "
              f"grey dash-dot: the induction attention passes 0.5. The paper: the FF learns the noise first. Here: {when}.")


def spectra(page: Page, run: RunRecord) -> None:
    title = "Singular-value spectra over training"
    matrices = [k for k in run.spectra if k != "steps"]
    if not matrices:
        return page.skip(title, unless_unread(run, SPECTRA_FILE, "WeightSpectrumLogger was off in this run"))
    steps = run.spectra["steps"]
    fig, axes = panel_grid(len(matrices), 4, 2.5)
    for ax, name in zip(axes, matrices):
        s = np.maximum(run.spectra[name], 1e-8)
        im = ax.imshow(np.log10(s).T, aspect="auto", origin="lower", cmap="viridis",
                       extent=(steps[0], steps[-1] if len(steps) > 1 else steps[0] + 1, 0, s.shape[1]))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("index", fontsize=8)
        fig.colorbar(im, ax=ax, label="log10 s")
    page.save(fig, "spectra", title, "Each matrix's singular values (colour, log scale) by index and step. A truncation "
              "shows as the upper indices dropping to zero.")
    ranks = spectrum_rank_curves(run.history)
    if ranks:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 3.6))
        for i, (name, stats) in enumerate(ranks.items()):
            for ax, stat in ((a1, "stable_rank"), (a2, "effective_rank")):
                if stat in stats:
                    st, v = zip(*stats[stat])
                    ax.plot(st, v, label=name, linewidth=2.2 if ".ff." in name else 1.0, color=plt.get_cmap("tab20")(i % 20))
        a1.set_ylabel("stable rank ||W||_F^2 / ||W||_2^2")
        a2.set_ylabel("effective rank exp(H(s / sum s))")
        for ax in (a1, a2):
            ax.set_xlabel("optimizer step")
            ax.grid(alpha=0.3)
        a2.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        page.save(fig, "ranks", "Stable and effective rank over training", "Thick lines: the FF matrices. A matrix that "
                  "stores one association (trigger -> noise) has a low stable rank.")


def gradient_snr_figure(page: Page, run: RunRecord) -> None:
    title = "Gradient signal-to-noise ratio towards the noise token"
    snr = gradient_snr(run.summary)
    if not snr:
        return page.skip(title, "GradientNoise was off in this run")
    groups = list(dict.fromkeys(g for s in snr.values() for g in s))
    first = min(snr)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 3.8), gridspec_kw={"width_ratios": [1.3, 1]})
    colours = ["tab:red" if ".ff" in g else "tab:blue" for g in groups]
    a1.barh(range(len(groups)), [snr[first].get(g, np.nan) for g in groups], color=colours)
    a1.set_yticks(range(len(groups)), groups)
    a1.invert_yaxis()
    a1.set_xlabel(f"SNR at step {first}")
    a1.axvline(0, color="gray", linewidth=0.8)
    a1.grid(alpha=0.3, axis="x")
    for g, c in zip(groups, colours):
        a2.plot(list(snr), [snr[s].get(g, np.nan) for s in snr], marker="o", color=c, linewidth=2.2 if ".ff" in g else 0.8,
                alpha=1.0 if ".ff" in g else 0.6, label=g if ".ff" in g else None)
    a2.plot([], [], color="tab:blue", label="attention matrices")
    a2.set_xlabel("optimizer step")
    a2.set_ylabel("SNR")
    a2.axhline(0, color="gray", linewidth=0.8)
    a2.grid(alpha=0.3)
    a2.legend(fontsize=8)
    page.save(fig, "gradient_snr", title, "Per parameter group (red: feed-forward, blue: attention), mean / std of the "
              "examples' gradient projections on the direction that raises the noise logit. The paper: at "
              "initialisation it is highest for the feed-forward layer.")


def truncation_jumps(page: Page, run: RunRecord) -> None:
    events = truncations(run.summary)
    if not events:
        return None  # no LaserTruncation in this run: nothing to say
    metrics = [m for m in RECALL_PLOTTED if m in events[0]["before"]]
    fig, ax = plt.subplots(figsize=(min(PAGE_WIDTH_IN, 5 + len(events) * 1.5), 3.4))
    labels, x = [], 0
    for e in events:
        for m in metrics:
            ax.bar([x, x + 0.35], [e["before"][m], e["after"][m]], 0.35, color=["tab:gray", "tab:blue"])
            labels.append((x + 0.17, f"{m}\nstep {e['step']}"))
            x += 1
    ax.set_xticks([p for p, _ in labels], [t for _, t in labels], fontsize=8)
    ax.set_ylabel("value (grey: before, blue: after)")
    ax.set_ylim(0, 1.02)
    page.save(fig, "truncation", "Mid-training LASER truncation: right before and right after", "Evaluated on the clean "
              "test set around each truncation (" + "; ".join(f"step {e['step']}: " + ", ".join(
                  f"{k} -> rank {v}" for k, v in e["ranks"].items()) for e in events) + ").")


def run_page(page: Page, run: RunRecord) -> None:
    variants, recorded = run.summary.get("variants") or {}, series.intervals(run.summary)
    page.table("Results on the clean test set, at repeated triggers",
               series.with_intervals(series.variant_rows(variants, RECALL_METRICS), recorded),
               note="One row per LASER variant; the full model once (a rho that keeps the full rank is the full model). "
                    + (series.interval_note(recorded) or "No intervals: the run predates them."))
    spread = accuracy_swing(run.history)
    if spread:
        alpha = ((run.config or {}).get("data") or {}).get("init_args", {}).get("alpha")
        page.section("Why the full model's accuracy swings", (
            f"<p>Over its last {spread[2]} evaluations the full model's accuracy moves between {spread[0]:.2f} and "
            f"{spread[1]:.2f}, while its P(noise) stays between {spread[3]:.2f} and {spread[4]:.2f}. It puts about alpha"
            f"{f' = {alpha:g}' if isinstance(alpha, (int, float)) else ''} on the noise token and the rest on the in-context "
            "one, so near alpha 0.5 the argmax flips between the two on many triggers with a small change of weights. "
            "Read P(noise) and P(in-context token), and the intervals above, rather than one evaluation's accuracy.</p>"))
    marks, events = marked_steps(run.history), truncations(run.summary)
    metrics_over_training(page, run, marks, events)
    laser_sweep(page, run)
    attention.example_figure(page, run)
    attribution.figure(page, run)
    probes(page, run, marks, events)
    memory.figure(page, run)
    if marks:
        page.table("When things were learned", [{"event": k, "first step": v} for k, v in marks.items()])
    spectra(page, run)
    gradient_snr_figure(page, run)
    truncation_jumps(page, run)


# --- sweeps ------------------------------------------------------------------------------------------------------

def sweep_final(page: Page, sweep: SweepRecord, key: str) -> None:
    title = f"Final metrics against {key}"
    panels = [(m, series.final_vs_key(sweep.rows, key, m)) for m in RECALL_PLOTTED]
    panels = [(m, p) for m, p in panels if p]
    if not panels:
        return page.skip(title, "no completed task recorded these metrics")
    fig, axes = plt.subplots(1, len(panels), figsize=(PAGE_WIDTH_IN, 3.6), squeeze=False)
    for ax, (metric, by_variant) in zip(axes.flat, panels):
        for variant in ordered(by_variant):
            points = by_variant[variant]
            xs = [p[0] for p in points]
            numeric = all(isinstance(x, (int, float)) for x in xs)
            pos = xs if numeric else list(range(len(xs)))
            ax.errorbar(pos, [p[1] for p in points], yerr=[p[2] for p in points], marker="o", capsize=3, **page.variants.style(variant))
            if not numeric:
                ax.set_xticks(pos, [str(x) for x in xs], rotation=30, fontsize=8)
        xs = [p[0] for pts in by_variant.values() for p in pts]
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in xs) and max(xs) / min(xs) >= 8:
            ax.set_xscale("log", base=2)  # widths, sizes: equal steps for each doubling
            ax.set_xticks(sorted(set(xs)), [str(x) for x in sorted(set(xs))])
            ax.minorticks_off()
        ax.set_xlabel(key.rsplit(".", 1)[-1])
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    n = max(p[3] for _, by in panels for pts in by.values() for p in pts)
    page.save(fig, f"final_vs_{key.replace('.', '_')}", title, f"Mean and standard deviation over up to {n} tasks (seeds) "
              f"per value of {key}; the full model in black, one line per LASER variant.")


def sweep_curves(page: Page, sweep: SweepRecord, metric: str = "p_noise") -> None:
    """Every variant's curve over training, one panel per setting of the swept keys: the mean over seeds, with the
    band from the lowest to the highest seed."""
    title = f"{METRIC_LABELS[metric]} over training, every variant, mean over seeds"
    settings = {t: ", ".join(f"{k.rsplit('.', 1)[-1]} = {sweep.point(t).get(k)}" for k in sweep.swept) or "all tasks"
                for t in sweep.runs}
    curves = series.setting_curves(sweep.runs, settings, metric)
    if not curves:
        return page.skip(title, "no task has a metric history")
    order = [s for s in dict.fromkeys(settings[t] for t in sorted(settings)) if s in curves]
    fig, axes = panel_grid(len(order), 3, 3.2, sharey=True)
    for ax, setting in zip(axes, order):
        for variant in ordered(curves[setting]):
            points = curves[setting][variant]
            style = page.variants.style(variant)
            steps = [p[0] for p in points]
            ax.plot(steps, [p[1] for p in points], marker="o", markersize=3, **style)
            ax.fill_between(steps, [p[2] for p in points], [p[3] for p in points], color=style["color"], alpha=0.15, linewidth=0)
        ax.set_title(setting, fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        _steps_axis(ax)
    for ax in axes:
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(METRIC_LABELS[metric])
    axes[0].legend(fontsize=8)
    seeds = sorted({p[4] for by_v in curves.values() for pts in by_v.values() for p in pts})
    page.save(fig, f"curves_{metric}", title, f"Clean test set, at the steps every seed evaluated. Line: the mean over "
              f"{' or '.join(map(str, seeds))} tasks (seeds) of each setting; band: from the lowest to the highest seed "
              "(their spread, not a confidence interval). One colour per variant, the full model in black.")


def probe_interval(history: History) -> int | None:
    """The finest resolution an event can be dated to: the largest gap between consecutive probed steps."""
    steps = sorted({s for key, curve in probe_curves(history).items() for s, _ in curve})
    return max((b - a for a, b in zip(steps, steps[1:])), default=None)


def event_steps(sweep: SweepRecord, key: str) -> dict[str, list[tuple]]:
    """{event: [(value of ``key``, step, seed label)]}, one point per task whose run dated the event."""
    out: dict[str, list[tuple]] = {}
    for task, run in sweep.runs.items():
        point = sweep.point(task)
        seed = ", ".join(f"{k}={point.get(k)}" for k in sweep.keys if k not in sweep.swept) or f"task {task}"
        for event, step in marked_steps(run.history).items():
            if step is not None:
                out.setdefault(event, []).append((point.get(key), step, seed))
    return out


def sweep_events(page: Page, sweep: SweepRecord, key: str) -> None:
    """When things are learned, against a swept key: the step the FF's noise margin turns positive and the step the
    induction attention passes 0.5, one point per seed, and the mean over seeds."""
    title = f"When things are learned, against {key}"
    events = event_steps(sweep, key)
    if not events:
        return page.skip(title, "no task recorded the probes (AttentionProbe was off)")
    resolution = max((r for run in sweep.runs.values() if (r := probe_interval(run.history))), default=None)
    values = sorted({v for pts in events.values() for v, _, _ in pts}, key=lambda v: (isinstance(v, str), v))
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    pos = {v: (v if numeric else i) for i, v in enumerate(values)}
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    # events are drawn as on the run page (grey, dashed for the FF, dash-dot for the induction head), never in a
    # variant's colour; the layer sets the shade
    layers = sorted({e.split(":", 1)[-1] for e in events})
    for event, points in sorted(events.items()):
        color = ("#222222", EVENT_COLOUR, "#aaaaaa")[layers.index(event.split(":", 1)[-1]) % 3]
        line, marker = ("--", "s") if event.startswith("ff") else ("-.", "^")
        ax.plot([pos[v] for v, _, _ in points], [s for _, s, _ in points], marker, color=color, alpha=0.5, markersize=5,
                linestyle="none")
        means = [(pos[v], float(np.mean([s for w, s, _ in points if w == v]))) for v in values if any(w == v for w, _, _ in points)]
        ax.plot(*zip(*means), linestyle=line, marker=marker, color=color, linewidth=1.6, label=event.replace(":", " "))
    if numeric and len(values) > 1 and min(values) > 0 and max(values) / min(values) >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks([pos[v] for v in values], [str(v) for v in values])
    ax.minorticks_off()
    ax.set_xlabel(key)
    ax.set_ylabel("first probed step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    note = (f" The probes ran every {resolution} steps at most, so an event is dated to within {resolution} steps."
            if resolution else "")
    page.save(fig, f"events_{key.rsplit('.', 1)[-1]}", title,
              "Points: each task (seed) on its own; lines: the mean over seeds. ff_learns_noise: the first probed step "
              "where the FF maps the trigger to the noise token (noise margin > 0); induction_head: the first where "
              "layer attention to the in-context outputs passes 0.5." + note)


def sweep_page(page: Page, sweep: SweepRecord) -> None:
    for key in sweep.swept:
        sweep_final(page, sweep, key)
        attribution.sweep_figure(page, sweep, key)
        sweep_events(page, sweep, key)
    sweep_curves(page, sweep)


# --- W&B report panels -------------------------------------------------------------------------------------------

def run_panels(run: RunRecord) -> list[dict]:
    variants = ordered(run.summary.get("variants") or {})
    out = [{"kind": "line", "title": f"clean-test {m} over training", "y": [eval_key("val", v, m) for v in variants]}
           for m in RECALL_PLOTTED]
    probes_ = [k for k in run.history if k.startswith("probe/")]
    layers = sorted({k.split("/")[1].rsplit(".", 1)[0] for k in probes_})
    for layer in layers:
        out.append({"kind": "line", "title": f"{layer}: attention probes",
                    "y": [k for k in probes_ if k.startswith(f"probe/{layer}.attn/")]})
    if any(k.endswith("noise_margin") for k in probes_):
        out.append({"kind": "line", "title": "FF noise margins", "y": [k for k in probes_ if k.endswith("noise_margin")]})
    # the page's LASER-against-rho figure: each variant's final value, one bar per variant (rho 1 is the full model)
    out += [{"kind": "bar", "title": f"LASER at the end of training: {m} per variant",
             "y": [eval_key("val", v, m) for v in variants]} for m in RECALL_PLOTTED]
    # the page's gradient-SNR figure: mean / std of each parameter group's gradient, at the steps measured
    snr = sorted({k for k in run.history if k.startswith("gradnoise/") and k.endswith("/snr")})
    if snr:
        out.append({"kind": "line", "title": "gradient signal-to-noise per parameter group", "y": snr})
    out += memory.wandb_panels(run)
    ranks = spectrum_rank_curves(run.history)
    for stat in ("stable_rank", "effective_rank"):
        for layer in sorted({m.split(".")[1] for m in ranks if m.startswith("layers.")}):
            y = [f"spectrum/{m}/{stat}" for m in ranks if m.startswith(f"layers.{layer}.") and stat in ranks[m]]
            if y:
                out.append({"kind": "line", "title": f"layer {int(layer) + 1} {stat.replace('_', ' ')}", "y": y})
    return out


def sweep_panels(sweep: SweepRecord) -> list[dict]:
    variants = ordered(dict.fromkeys(r["variant"] for r in sweep.rows if r.get("variant")))
    out = [{"kind": "bar", "title": f"final {m} by {key}, per variant", "y": [eval_key("val", v, m) for v in variants],
            "groupby": f"config.{key}"} for key in sweep.swept for m in RECALL_PLOTTED]
    out.append({"kind": "line", "title": "full model P(noise) over training, all tasks", "y": [eval_key("val", FULL, "p_noise")]})
    out.append({"kind": "line", "title": "layer-2 FF noise margin, all tasks", "y": [probe_key(1, "ff", "noise_margin")]})
    return out


register(ReportKind(NOISY_RECALL, "Noisy in-context recall", run_page, sweep_page, run_panels, sweep_panels))
