"""The figures (matplotlib, PNG and PDF under report/figures/): each function takes prepared series (reports/series.py)
and returns a Figure, or None with the reason when the run did not record its data (never an empty plot)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a cluster node
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from reports import series  # noqa: E402
from run_record.files import atomic_writer  # noqa: E402

METRIC_LABELS = {"p_noise": "P(noise token)", "p_correct": "P(in-context token)", "acc": "accuracy (argmax = in-context)",
                 "loss": "cross-entropy", "p_answer": "P(answer)", "p_generic": 'P(" the")',
                 "log_ratio": 'log P(answer) / P(" the")', "logit_diff": "logit(IO) - logit(S)"}


@dataclass
class Figure:
    name: str
    title: str
    caption: str
    png: Path
    pdf: Path


class Figures:
    """Collects the figures of one report and the notes on those left out."""

    def __init__(self, directory: Path, context: str):
        self.directory, self.context = directory, context  # context: seed and config, appended to every caption
        self.directory.mkdir(parents=True, exist_ok=True)
        self.figures: list[Figure] = []
        self.notes: list[str] = []

    def save(self, fig: plt.Figure, name: str, title: str, caption: str) -> Figure:
        fig.suptitle(title, fontsize=11)
        fig.tight_layout()
        png, pdf = self.directory / f"{name}.png", self.directory / f"{name}.pdf"
        try:  # each file whole (run_record.files): a reader sees the old figure or the new one
            with atomic_writer(png, "wb") as f:
                fig.savefig(f, dpi=110, format="png")
            with atomic_writer(pdf, "wb") as f:
                fig.savefig(f, format="pdf")
        finally:
            plt.close(fig)
        entry = Figure(name, title, f"{caption} {self.context}".strip(), png, pdf)
        self.figures.append(entry)
        return entry

    def skip(self, title: str, reason: str) -> None:
        self.notes.append(f"{title}: not drawn, {reason}.")


def _mark_truncations(ax, events: list[dict]) -> None:
    for e in events:
        ax.axvline(e["step"], color="black", linestyle=":", linewidth=1)
        ax.annotate(f"LASER @ {e['step']}", (e["step"], ax.get_ylim()[1]), fontsize=7, rotation=90, va="top", ha="right")


def metrics_over_training(figs: Figures, history, events: list[dict]) -> None:
    title = "Clean-test metrics over training"
    panels = [(m, series.eval_curves(history, m)) for m in ("p_noise", "p_correct", "acc")]
    if not any(curves for _, curves in panels):
        return figs.skip(title, "the run logged no validation metrics")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (metric, curves) in zip(axes, panels):
        for variant, curve in curves.items():
            steps, values = zip(*curve)
            ax.plot(steps, values, marker="o", markersize=3, label=variant, linewidth=2 if variant == "full" else 1)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(METRIC_LABELS[metric])
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        _mark_truncations(ax, events)
    axes[0].legend(fontsize=7, title="variant", title_fontsize=7)
    caption = ("At repeated triggers of the clean test set (alpha = 0). Look for P(noise) of the full model rising "
               "to about alpha while the truncated layer-2 FF (rank 0) keeps it near 0 and answers from context.")
    if events:
        caption += " Dotted lines: mid-training LASER truncations."
    figs.save(fig, "metrics_over_training", title, caption)


def laser_sweep(figs: Figures, variants: dict[str, dict[str, float]]) -> None:
    title = "LASER at the end of training: metrics against the kept rank fraction"
    sweep = series.laser_sweep(variants)
    if not sweep:
        return figs.skip(title, "the run evaluated no LASER variant")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, metric in zip(axes, ("p_noise", "p_correct", "acc")):
        for target, points in sweep.items():
            ax.plot([rho for rho, _ in points], [m[metric] for _, m in points], marker="o", label=target)
        if "full" in variants:
            ax.axhline(variants["full"][metric], color="gray", linestyle="--", linewidth=1, label="full model")
        ax.set_xlabel("rho (kept rank = floor(rho * min(m, n)))")
        ax.set_ylabel(METRIC_LABELS[metric])
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figs.save(fig, "laser_sweep", title, "Each target matrix truncated alone. Where the noise sits in a matrix's top "
              "singular directions, P(noise) stays high until rho = 0.")


def probes(figs: Figures, history, marks: dict[str, int | None], events: list[dict]) -> None:
    title = "Attention probes and FF noise margins over training"
    curves = series.probe_curves(history)
    if not curves:
        return figs.skip(title, "AttentionProbe was off in this run")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4))
    for key, curve in curves.items():
        steps, values = zip(*curve)
        name = key[len("probe/"):]
        if key.endswith("noise_margin"):
            ax2.plot(steps, values, label=name)
        elif key.endswith(("to_output", "to_noise", "prev_token")):
            ax1.plot(steps, values, label=name)
    ax1.set_ylabel("attention mass")
    ax2.set_ylabel("logit(noise) - max other logit of W_U FF(trigger)")
    ax2.axhline(0, color="gray", linewidth=0.8)
    for ax in (ax1, ax2):
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        for label, step in marks.items():
            if step is not None:
                ax.axvline(step, linestyle="--", linewidth=1, color="tab:red" if label.startswith("ff") else "tab:green",
                           label=f"{label.replace(':', ' ')}: step {step}")
        _mark_truncations(ax, events)
        ax.legend(fontsize=7)
    when = "; ".join(f"{k.replace(':', ' ')} at step {v}" for k, v in marks.items() if v is not None) or "neither event happened"
    figs.save(fig, "probes", title, "Dashed red: an FF's noise margin turns positive (it maps the trigger to the noise); "
              f"dashed green: the induction attention passes 0.5. The paper: the FF learns the noise first. Here: {when}.")


def spectra(figs: Figures, spectra_npz: dict[str, np.ndarray], ranks: dict[str, dict[str, list]]) -> None:
    title = "Singular-value spectra over training"
    matrices = [k for k in spectra_npz if k != "steps"]
    if not matrices:
        return figs.skip(title, "WeightSpectrumLogger was off in this run")
    steps = spectra_npz["steps"]
    cols = min(4, len(matrices))
    rows = -(-len(matrices) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.9 * rows), squeeze=False)
    for ax, name in zip(axes.flat, matrices):
        s = np.maximum(spectra_npz[name], 1e-8)
        im = ax.imshow(np.log10(s).T, aspect="auto", origin="lower", cmap="viridis",
                       extent=(steps[0], steps[-1] if len(steps) > 1 else steps[0] + 1, 0, s.shape[1]))
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("optimizer step", fontsize=8)
        ax.set_ylabel("singular value index", fontsize=8)
        fig.colorbar(im, ax=ax, label="log10 singular value")
    for ax in list(axes.flat)[len(matrices):]:
        ax.axis("off")
    figs.save(fig, "spectra", title, "Each matrix's singular values (colour, log scale) by index and step. A truncation "
              "shows as the upper indices dropping to zero.")
    if ranks:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 3.8))
        for name, stats in ranks.items():
            for ax, stat in ((a1, "stable_rank"), (a2, "effective_rank")):
                if stat in stats:
                    st, v = zip(*stats[stat])
                    ax.plot(st, v, label=name)
        a1.set_ylabel("stable rank ||W||_F^2 / ||W||_2^2")
        a2.set_ylabel("effective rank exp(H(s / sum s))")
        for ax in (a1, a2):
            ax.set_xlabel("optimizer step")
            ax.grid(alpha=0.3)
        a1.legend(fontsize=7)
        figs.save(fig, "ranks", "Stable and effective rank over training", "A matrix that stores one association "
                  "(trigger -> noise) has a low stable rank.")


def gradient_snr(figs: Figures, snr: dict[int, dict[str, float]]) -> None:
    title = "Gradient signal-to-noise ratio towards the noise token"
    if not snr:
        return figs.skip(title, "GradientNoise was off in this run")
    groups = list(dict.fromkeys(g for s in snr.values() for g in s))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(groups) * len(snr) ** 0.5), 3.8))
    width = 0.8 / len(snr)
    for i, (step, values) in enumerate(snr.items()):
        ax.bar(np.arange(len(groups)) + i * width, [values.get(g, np.nan) for g in groups], width, label=f"step {step}")
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, groups, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("SNR (mean / std of per-example projections)")
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    figs.save(fig, "gradient_snr", title, "Per parameter group, how consistently the examples' gradients push "
              "towards the noise token. The paper: at initialisation it is highest for the feed-forward layer.")


def truncation_jumps(figs: Figures, events: list[dict]) -> None:
    title = "Mid-training LASER truncation: right before and right after"
    if not events:
        return figs.skip(title, "no LaserTruncation in this run")
    metrics = [m for m in ("p_noise", "p_correct", "acc") if m in events[0]["before"]]
    fig, ax = plt.subplots(figsize=(6 + len(events), 3.6))
    labels, x = [], 0
    for e in events:
        for m in metrics:
            ax.bar([x, x + 0.35], [e["before"][m], e["after"][m]], 0.35, color=["tab:gray", "tab:blue"])
            labels.append((x + 0.17, f"{m}\nstep {e['step']}"))
            x += 1
    ax.set_xticks([p for p, _ in labels], [t for _, t in labels], fontsize=8)
    ax.set_ylabel("value (grey: before, blue: after)")
    ax.set_ylim(0, 1.02)
    figs.save(fig, "truncation", title, "Evaluated on the clean test set around each truncation ("
              + "; ".join(f"step {e['step']}: " + ", ".join(f"{k} -> rank {v}" for k, v in e["ranks"].items()) for e in events) + ").")


# --- sweeps -----------------------------------------------------------------------------------------------------

def sweep_final(figs: Figures, rows: list[dict], key: str, metrics: list[str]) -> None:
    title = f"Final metrics against {key}"
    panels = [(m, series.final_vs_key(rows, key, m)) for m in metrics]
    panels = [(m, p) for m, p in panels if p]
    if not panels:
        return figs.skip(title, "no completed task recorded these metrics")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.8), squeeze=False)
    for ax, (metric, by_variant) in zip(axes.flat, panels):
        for variant, points in by_variant.items():
            xs = [p[0] for p in points]
            numeric = all(isinstance(x, (int, float)) for x in xs)
            pos = xs if numeric else list(range(len(xs)))
            ax.errorbar(pos, [p[1] for p in points], yerr=[p[2] for p in points], marker="o", capsize=3, label=variant)
            if not numeric:
                ax.set_xticks(pos, [str(x) for x in xs], rotation=30, fontsize=7)
        ax.set_xlabel(key)
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    n = max(p[3] for _, by in panels for pts in by.values() for p in pts)
    figs.save(fig, f"final_vs_{key.replace('.', '_')}", title, f"Mean and standard deviation over up to {n} tasks "
              "(seeds) per value; one line per variant.")


def sweep_curves(figs: Figures, curves: dict[int, list], groups: dict[int, Any], key: str | None, metric: str = "p_noise") -> None:
    title = f"{METRIC_LABELS[metric]} of the full model over training, every task"
    if not any(curves.values()):
        return figs.skip(title, "no task has a metric history")
    fig, ax = plt.subplots(figsize=(7, 4))
    values = list(dict.fromkeys(repr(v) for v in groups.values()))
    cmap = plt.get_cmap("viridis", max(2, len(values)))
    drawn = set()
    for task, curve in curves.items():
        if not curve:
            continue
        steps, ys = zip(*curve)
        g = repr(groups.get(task))
        ax.plot(steps, ys, color=cmap(values.index(g)), alpha=0.8, label=f"{key} = {groups.get(task)}" if g not in drawn and key else None)
        drawn.add(g)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(METRIC_LABELS[metric])
    ax.grid(alpha=0.3)
    if key:
        ax.legend(fontsize=7)
    figs.save(fig, f"curves_{metric}", title, f"One line per task, coloured by {key or 'task'}.")
