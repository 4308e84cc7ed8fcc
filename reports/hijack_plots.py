"""Figures of the knowledge-hijack study (Wang & Sato): accuracy against test length, win rates and the logit split
against n, the fitted logit-gap form, and the sweep's panels per positional encoding."""
from __future__ import annotations

import numpy as np

from reports import series
from reports.plots import METRIC_LABELS, Figures, plt  # plots selects the Agg backend first


def panel_grid(n: int, cols: int = 3):
    """n panels sharing a y axis, at most ``cols`` per row; the unused cells are hidden."""
    cols = min(cols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.6 * rows), squeeze=False, sharey=True)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def length_generalisation(figs: Figures, variants: dict[str, dict[str, float]]) -> None:
    title = "Accuracy against the test length"
    curves = series.length_generalisation(variants)
    if not curves:
        return figs.skip(title, "the run had no length-generalisation test sets (data.test_lengths)")
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in curves.items():
        ax.plot([x for x, _ in points], [y for _, y in points], marker="o", linestyle="--" if name.endswith("beyond") else "-", label=name)
    ax.set_xscale("log", base=2)
    lengths = sorted({x for points in curves.values() for x, _ in points})
    ax.set_xticks(lengths, [str(x) for x in lengths])
    ax.minorticks_off()
    ax.set_xlabel("test sequence length (tokens)")
    ax.set_ylabel(METRIC_LABELS["acc"])
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    figs.save(fig, "length_generalisation", title, "Solid: in-context pairs anywhere; dashed: only beyond the training "
              "length. With absolute positions, the positions past training were never trained.")


def hijack(figs: Figures, summary: dict) -> None:
    title = "Knowledge hijack: the in-context answer against the global one"
    wins = series.hijack_win_rates(summary)
    if not wins:
        return figs.skip(title, "HijackProbe was off in this run")
    p_o, p_b = series.hijack_win_rates(summary, "p_o"), series.hijack_win_rates(summary, "p_b")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4))
    for i, (name, points) in enumerate(wins.items()):
        color = plt.get_cmap("tab10")(i % 10)
        a1.plot([n for n, _ in points], [v for _, v in points], marker="o", color=color, label=name)
        a2.plot([n for n, _ in p_o[name]], [v for _, v in p_o[name]], marker="o", color=color, label=f"P(o) {name}")
        a2.plot([n for n, _ in p_b[name]], [v for _, v in p_b[name]], marker="x", linestyle=":", color=color)
    a1.axhline(0.5, color="gray", linewidth=0.8)
    a1.set_ylabel("fraction of prompts where o is the argmax")
    a2.set_ylabel("P(o) (solid) and P(b) (dotted)")
    for ax in (a1, a2):
        ax.set_xlabel("in-context pairs (q, o) in the prompt")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    a1.legend(fontsize=6)
    figs.save(fig, "hijack", title, "Prompts end in a trigger q; o is its in-context answer, b its global bigram answer. "
              "Where o wins on half the prompts is the hijack boundary.")
    split = series.hijack_logit_split(summary)
    name = next((k for k, v in split.items() if v), None)
    if name is None:
        return None
    parts = [p for p in next(iter(split[name].values())) if p != "total"]
    ns = sorted(split[name])
    fig, ax = plt.subplots(figsize=(7, 4))
    bottom_pos, bottom_neg = np.zeros(len(ns)), np.zeros(len(ns))
    for part in parts:
        values = np.array([split[name][n][part] for n in ns])
        base = np.where(values >= 0, bottom_pos, bottom_neg)
        ax.bar([str(n) for n in ns], values, bottom=base, label=part)
        bottom_pos, bottom_neg = bottom_pos + np.clip(values, 0, None), bottom_neg + np.clip(values, None, 0)
    ax.plot([str(n) for n in ns], [split[name][n]["total"] for n in ns], "k_", markersize=20, label="total")
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.set_xlabel("in-context pairs (q, o)")
    ax.set_ylabel("contribution to logit(o) - logit(b)")
    ax.legend(fontsize=7)
    figs.save(fig, "hijack_logit_split", f"Where the logit gap comes from ({name})", "Stacked: each part of the residual "
              "stream's direct contribution to logit(o) - logit(b), mean over prompts; they sum to the black mark, the "
              "model's own gap. Direct attribution credits the part that writes last: an FF that reads the attention's "
              "copy of o is credited with it.")


def hijack_theory(figs: Figures, summary: dict) -> None:
    title = "Knowledge hijack: measured against predicted logit gap"
    fits = series.hijack_theory_fit(summary)
    if not fits:
        return figs.skip(title, "HijackProbe recorded no theory fit (too few n or lengths)")
    from lightning_modules.hijack_theory import attention_mass

    fig, axes = panel_grid(len(fits))
    for ax, (name, f) in zip(axes.flat, fits.items()):
        for i, (t, b) in enumerate(f["by_length"].items()):
            color = plt.get_cmap("tab10")(i % 10)
            ns = np.linspace(0, max(b["n"]), 100)
            curve = f["w_ic"] * attention_mass(ns, np.full_like(ns, int(t[1:])), f["beta"]) - f["w_g"]
            ax.plot(b["n"], b["measured_gap"], "o", color=color, label=f"{t} measured")
            ax.plot(ns, curve, "-", color=color, label=f"{t} fit")
        ax.axhline(0, color="gray", linewidth=0.8)
        r2 = "-" if f["r2"] is None else f"{f['r2']:.2f}"
        note = "" if len(f["by_length"]) > 1 else "\none test length: beta and w_ic not separable"
        ax.set_title(f"{name}\nR$^2$ {r2}, w_ic {f['w_ic']:.1f}, w_g {f['w_g']:.2f}, beta {f['beta']:.1f}, {f['n_points']} points{note}", fontsize=8)
        ax.set_xlabel("in-context pairs (q, o)")
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("logit(o) - logit(b)")
    axes.flat[0].legend(fontsize=6)
    figs.save(fig, "hijack_theory", title, "Points: the mean measured gap per n and test length; lines: the fitted "
              "w_ic * a(n, T) - w_g with a(n, T) = n e^beta / (n e^beta + T - n) (lightning_modules/hijack_theory.py). "
              "o wins where the gap is above 0.")


def sweep_length_generalisation(figs: Figures, rows: list[dict], encoding_key: str, other_keys: list[str]) -> None:
    """Accuracy of the full model against the test length, one line per encoding, one panel per placement and
    setting of the other swept keys; mean and std over seeds."""
    title = "Accuracy against the test length, per positional encoding"
    panels = series.sweep_length_generalisation(rows, encoding_key, other_keys)
    if not panels:
        return figs.skip(title, "no task recorded length-generalisation test sets")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False, sharey=True)
    for ax, (panel, lines) in zip(axes.flat, panels.items()):
        for encoding, points in lines.items():
            ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], marker="o",
                        capsize=3, label=str(encoding))
        ax.set_xscale("log", base=2)
        lengths = sorted({p[0] for pts in lines.values() for p in pts})
        ax.set_xticks(lengths, [str(x) for x in lengths])
        ax.minorticks_off()
        ax.set_title(panel, fontsize=8)
        ax.set_xlabel("test length (tokens)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("accuracy after triggers (full model)")
    axes.flat[0].legend(fontsize=7)
    n = max(p[3] for lines in panels.values() for pts in lines.values() for p in pts)
    figs.save(fig, "length_generalisation_by_encoding", title, f"Mean and std over up to {n} seeds. 'beyond': "
              "in-context pairs only past the training length, where absolute positions were never trained.")


def sweep_hijack_rates(figs: Figures, panels: dict[str, dict]) -> None:
    title = "Hijack: how often the in-context answer wins, per positional encoding"
    if not panels:
        return figs.skip(title, "no task ran the HijackProbe")
    fig, axes = panel_grid(len(panels))
    for ax, (panel, lines) in zip(axes.flat, panels.items()):
        for encoding, points in lines.items():
            ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], marker="o",
                        capsize=3, label=str(encoding))
        ax.axhline(0.5, color="gray", linewidth=0.8)
        ax.set_title(panel, fontsize=8)
        ax.set_xlabel("in-context pairs (q, o)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("o wins (fraction of prompts)")
    axes.flat[0].legend(fontsize=7)
    figs.save(fig, "hijack_by_encoding", title, "Full FF; mean and std over the tasks of each encoding (seeds, and "
              "training lengths that share this test length). Above the gray line the context wins on most prompts.")
