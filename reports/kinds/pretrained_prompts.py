"""A pretrained causal LM on IOI and factual prompts (Chen, Bruna & Bietti, Sec. 5): P(answer) against P(" the"),
with and without LASER. Run page: the results per variant, the choice on the selection split, bars per prompt type.
Sweep page: the metrics against the checkpoint's training step (a revision sweep) or each swept key, and the
selected variant per setting."""
from __future__ import annotations

import re

import numpy as np

from reports import series, table
from reports.kinds import ReportKind, SweepRecord, register
from reports.page import Page
from reports.run import RunRecord
from reports.style import METRIC_LABELS, PAGE_WIDTH_IN, ordered, plt, variant_style
from run_record.kinds import PRETRAINED_PROMPTS
from run_record.names import FULL, PROMPT_METRICS, PROMPT_PLOTTED, eval_key, split_eval_key, split_prompt_group

REVISION = "model.init_args.revision"


def prompt_type_bars(summary: dict, metric: str) -> dict[str, dict[str, float]]:
    """{variant: {prompt type: metric}} from ``test/<variant>:<type>/<metric>``."""
    out: dict[str, dict[str, float]] = {}
    for key, value in (summary.get("metrics") or {}).items():
        parts = split_eval_key(key)
        if parts and parts[2] == metric and isinstance(value, (int, float)):
            variant, group = split_prompt_group(parts[1])
            if group:
                out.setdefault(variant, {})[group] = value
    return out


def revision_step(revision) -> int | None:
    """Pythia's ``step<N>`` revisions as training steps (``main`` is the last, 143000)."""
    if revision == "main":
        return 143000
    m = re.fullmatch(r"step(\d+)", str(revision or ""))
    return int(m.group(1)) if m else None


def overall(summary: dict) -> dict[str, dict]:
    """The variants' metrics over all prompts (not per prompt type)."""
    return {v: m for v, m in (summary.get("variants") or {}).items() if split_prompt_group(v)[1] is None}


def search_deltas(summary: dict, metric: str = "log_ratio") -> dict[str, dict[tuple, tuple[float | None, float | None]]]:
    """{matrix role: {(layers, rho): (selection delta, test delta)}}: each search-grid variant's ``metric`` minus the
    full model's, on the selection and the test split (from the declared grid: no variant name is parsed)."""
    variants = overall(summary)
    full = variants.get(FULL) or {}
    key = f"{metric}@selection"
    out: dict[str, dict[tuple, tuple[float | None, float | None]]] = {}
    for cell in (summary.get("results") or {}).get("search_grid") or []:
        row = variants.get(cell["variant"]) or {}
        delta = lambda k: row[k] - full[k] if isinstance(row.get(k), float) and isinstance(full.get(k), float) else None  # noqa: E731
        out.setdefault(cell["matrix"], {})[(str(cell["layers"]), cell["rho"])] = (delta(key), delta(metric))
    return out


def search_figure(page: Page, run: RunRecord) -> None:
    deltas = search_deltas(run.summary)
    if not deltas:
        return None
    results = run.summary.get("results") or {}
    grid, selection = results.get("search_grid") or [], results.get("selection") or {}
    chosen = selection.get("selected")
    chosen_cell = next((c for c in grid if c["variant"] == chosen), None)
    layers = list(dict.fromkeys(str(c["layers"]) for c in grid))
    rhos = sorted({c["rho"] for c in grid})
    # grid points that were not candidates: they lost more P(answer) on the selection split than select_keeping allows
    variants, keeping = overall(run.summary), selection.get("keeping") or 0.0
    floor = keeping * ((variants.get(FULL) or {}).get("p_answer@selection") or 0.0)
    dropped = {c["variant"] for c in grid if keeping and (variants.get(c["variant"]) or {}).get("p_answer@selection", 1.0) < floor}
    fig, axes = plt.subplots(2, len(deltas), figsize=(PAGE_WIDTH_IN, 5.8), squeeze=False, layout="constrained")
    from matplotlib.colors import TwoSlopeNorm

    found = [v for cells in deltas.values() for pair in cells.values() for v in pair if v is not None]
    # blue above 0, red below, each side its own scale: small gains stay visible next to large losses
    norm = TwoSlopeNorm(vcenter=0.0, vmin=min(min(found, default=-0.1), -0.1), vmax=max(max(found, default=0.1), 0.1))
    for col, (matrix, cells) in enumerate(deltas.items()):
        for row, (split, idx) in enumerate((("selection", 0), ("test", 1))):
            ax = axes[row, col]
            values = np.array([[cells.get((lay, rho), (None, None))[idx] for rho in rhos] for lay in layers], dtype=float)
            im = ax.imshow(values, cmap="RdBu", norm=norm, aspect="auto")
            for (i, j), v in np.ndenumerate(values):
                if not np.isnan(v):
                    cell = next(c["variant"] for c in grid if c["matrix"] == matrix and str(c["layers"]) == layers[i] and c["rho"] == rhos[j])
                    ax.text(j, i, f"{v:+.2f}" + ("\n(lost)" if cell in dropped else ""), ha="center", va="center",
                            fontsize=8, color="dimgray" if cell in dropped else "black")
            if chosen_cell and chosen_cell["matrix"] == matrix:
                i, j = layers.index(str(chosen_cell["layers"])), rhos.index(chosen_cell["rho"])
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2.5))
            ax.set_xticks(range(len(rhos)), [f"{r:g}" for r in rhos])
            ax.set_yticks(range(len(layers)), [f"L{lay}" for lay in layers])
            ax.set_title(f"{matrix}, {split} split")
            if row == 1:
                ax.set_xlabel("rho (kept rank fraction)")
            if col == 0:
                ax.set_ylabel("layers")
    fig.colorbar(im, ax=axes, label='change of log P(answer) / P(" the") vs the full model', shrink=0.8)
    kept = (f" Grey '(lost)': not a candidate, it kept less than {keeping:g} of the full model's P(answer) on the "
            "selection split (the ratio also rises when both probabilities collapse)." if dropped else "")
    page.save(fig, "laser_search", "LASER search on the selection split, reported on the test split",
              f"Blue: the variant raises log P(answer) / P(\" the\") above the full model's; red: lowers it. The box: "
              f"the variant chosen on the selection split ({chosen or 'none'}); the test row is where it is reported.{kept}")


def run_page(page: Page, run: RunRecord) -> None:
    page.table("Next-token probabilities after each prompt", series.variant_rows(overall(run.summary), PROMPT_METRICS),
               note='P(answer) and P(" the") after the prompt, their log ratio, whether the answer is the argmax and, for '
                    "IOI, logit(IO) - logit(S); one row per variant, the full model first.")
    sel = (run.summary.get("results") or {}).get("selection")
    if sel:
        page.table(f"Chosen on the selection split by {sel['by']}: {sel['selected']}",
                   [{"variant": v, f"{sel['by']} (selection)": s, f"{sel['by']} (test)": sel["test"].get(v)}
                    for v, s in sel["selection"].items()], note="Test scores play no part in the choice.")
    search_figure(page, run)
    metrics = [m for m in PROMPT_PLOTTED if prompt_type_bars(run.summary, m)]
    if not metrics:
        return page.skip("Per prompt type", "the run has no per-prompt-type metrics")
    grid = {c["variant"] for c in (run.summary.get("results") or {}).get("search_grid") or []}
    keep = {FULL, ((run.summary.get("results") or {}).get("selection") or {}).get("selected")}
    fig, axes = plt.subplots(1, len(metrics), figsize=(PAGE_WIDTH_IN, 3.6), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        # a search's grid points are in the figure above: here the full model, the choice and the named variants
        bars = {v: b for v, b in prompt_type_bars(run.summary, metric).items() if v not in grid or v in keep}
        kinds = list(dict.fromkeys(k for v in bars.values() for k in v))
        width = 0.8 / len(bars)
        for i, variant in enumerate(ordered(bars)):
            style = variant_style(variant, i)
            ax.bar(np.arange(len(kinds)) + i * width, [bars[variant].get(k, np.nan) for k in kinds], width,
                   color=style["color"], label=style["label"])
        ax.set_xticks(np.arange(len(kinds)) + 0.4 - width / 2, kinds, rotation=20, fontsize=8)
        ax.set_ylabel(METRIC_LABELS[metric])
        ax.grid(alpha=0.3, axis="y")
    axes.flat[0].legend(fontsize=8)
    page.save(fig, "prompt_types", "Per prompt type, per variant", 'The answer against the generic token " the". '
              "The paper: LASER on late FF layers raises P(answer) / P(\" the\") in Pythia.")


def sweep_page(page: Page, sweep: SweepRecord) -> None:
    every = [r for r in sweep.rows if split_prompt_group(r.get("variant") or "")[1] is None]  # over all prompts
    for key in sweep.swept:
        steps = {r["task"]: revision_step(r.get(key)) for r in every} if key == REVISION else {}
        rows = [r | {"_x": steps[r["task"]]} for r in every if steps.get(r["task"]) is not None] if steps else every
        x = "_x" if steps else key
        metrics = [m for m in PROMPT_PLOTTED if any(isinstance(r.get(m), float) for r in rows)]
        if not metrics:
            continue
        fig, axes = plt.subplots(1, len(metrics), figsize=(PAGE_WIDTH_IN, 3.6), squeeze=False)
        for ax, metric in zip(axes.flat, metrics):
            for i, (variant, points) in enumerate(series.final_vs_key(rows, x, metric).items()):
                xs = [max(p[0], 1) if steps else p[0] for p in points]
                numeric = all(isinstance(v, (int, float)) for v in xs)
                ax.errorbar(xs if numeric else range(len(xs)), [p[1] for p in points], yerr=[p[2] for p in points],
                            marker="o", capsize=3, **variant_style(variant, i))
                if not numeric:
                    ax.set_xticks(range(len(xs)), [str(v) for v in xs], rotation=30, fontsize=8)
            if steps:
                ax.set_xscale("log")
            ax.set_xlabel("training step of the checkpoint (log; step0 at 1)" if steps else key.rsplit(".", 1)[-1])
            ax.set_ylabel(METRIC_LABELS[metric])
            ax.grid(alpha=0.3)
        axes.flat[0].legend(fontsize=8)
        name = "revisions" if steps else f"final_vs_{key.replace('.', '_')}"
        page.save(fig, name, f"The answer against the generic token, by {'checkpoint' if steps else key}",
                  "One line per variant, the full model in black; mean and std over seeds.")
    choice = table.selected(sweep.rows, sweep.keys, sweep.protocols)
    if choice:
        page.table("Selected LASER variant per setting (chosen on the selection split, reported on test)", choice)


def run_panels(run: RunRecord) -> list[dict]:
    variants = ordered(overall(run.summary))
    return [{"kind": "bar", "title": f"{m} per variant", "y": [eval_key("test", v, m) for v in variants]} for m in PROMPT_PLOTTED]


def sweep_panels(sweep: SweepRecord) -> list[dict]:
    variants = ordered(dict.fromkeys(r["variant"] for r in sweep.rows if r.get("variant") and split_prompt_group(r["variant"])[1] is None))
    return [{"kind": "bar", "title": f"{m} by {key}, per variant", "y": [eval_key("test", v, m) for v in variants],
             "groupby": f"config.{key}"} for key in sweep.swept for m in PROMPT_PLOTTED]


register(ReportKind(PRETRAINED_PROMPTS, "Pretrained model on prompt sets", run_page, sweep_page, run_panels, sweep_panels))
