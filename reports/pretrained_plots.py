"""Figures of pretrained-model runs: the answer against the generic token by prompt type, across Pythia revisions,
and GSM8K exact match by shots per LASER variant."""
from __future__ import annotations

import numpy as np

from reports import series
from reports.plots import METRIC_LABELS, Figures, plt  # plots selects the Agg backend first


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
