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
        fig.savefig(png, dpi=110)
        fig.savefig(pdf)
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


def prompt_bars(figs: Figures, summary: dict) -> None:
    title = "Pretrained model: per prompt type"
    metrics = [m for m in ("p_answer", "p_generic", "log_ratio", "logit_diff") if series.prompt_type_bars(summary, m)]
    if not metrics:
        return figs.skip(title, "the run has no per-prompt-type metrics")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        bars = series.prompt_type_bars(summary, metric)
        kinds = list(dict.fromkeys(k for v in bars.values() for k in v))
        width = 0.8 / len(bars)
        for i, (variant, values) in enumerate(bars.items()):
            ax.bar(np.arange(len(kinds)) + i * width, [values.get(k, np.nan) for k in kinds], width, label=variant)
        ax.set_xticks(np.arange(len(kinds)) + 0.4 - width / 2, kinds, rotation=20, fontsize=8)
        ax.set_ylabel(METRIC_LABELS[metric])
        ax.grid(alpha=0.3, axis="y")
    axes.flat[0].legend(fontsize=7)
    figs.save(fig, "prompt_types", title, 'The answer against the generic token " the", for the full model and each '
              "LASER variant. LASER on late FF layers raises P(answer) / P(\" the\") in the paper.")


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


def revision_sweep(figs: Figures, rows: list[dict], key: str) -> None:
    title = "Pretrained checkpoints: the answer against the generic token over training"
    metrics = [m for m in ("p_answer", "p_generic", "log_ratio", "logit_diff") if any(isinstance(r.get(m), float) for r in rows)]
    stepped = [r | {"_step": series.revision_step(r.get(key))} for r in rows if series.revision_step(r.get(key)) is not None]
    if not metrics or not stepped:
        return figs.skip(title, "the sweep has no pretrained-model revisions")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.4 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for variant, points in series.final_vs_key(stepped, "_step", metric).items():
            ax.plot([max(p[0], 1) for p in points], [p[1] for p in points], marker="o", label=variant)
        ax.set_xscale("log")
        ax.set_xlabel("training step of the checkpoint (log)")
        ax.set_ylabel(METRIC_LABELS[metric])
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    figs.save(fig, "revisions", title, "One line per LASER variant. step0 is drawn at 1 on the log axis.")


# --- knowledge hijack -------------------------------------------------------------------------------------------

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
        note = "" if len(f["by_length"]) > 1 else " (one length: beta, w_ic not separable)"
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


def gsm8k(figs: Figures, summary: dict) -> None:
    title = "GSM8K exact match by number of shots, per LASER variant"
    panels = [(m, series.gsm8k_by_shots(summary, m)) for m in ("em_strict", "em_flexible")]
    if not any(p for _, p in panels):
        return figs.skip(title, "the run has no GSM8K scores")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (metric, by_variant) in zip(axes, panels):
        for i, (variant, points) in enumerate(by_variant.items()):
            shift = (i - (len(by_variant) - 1) / 2) * 0.06  # side by side at each shot count
            ax.errorbar([p[0] + shift for p in points], [p[1] for p in points], yerr=[p[2] for p in points],
                        marker="o", capsize=3, label=variant)
        ax.set_title({"em_strict": "strict match (\"The answer is N\")", "em_flexible": "flexible extract (last number)"}[metric], fontsize=9)
        ax.set_xlabel("few-shot exemplars")
        ax.set_xticks(sorted({p[0] for pts in by_variant.values() for p in pts}))
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("exact match (test)")
    axes[0].legend(fontsize=7)
    figs.save(fig, "gsm8k", title, "lm-evaluation-harness gsm8k_cot scores; bars are the harness's standard errors. "
              "Per-problem generations: generations.jsonl.")


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
