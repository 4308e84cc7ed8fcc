"""An example beside the means, for both toy-model kinds: one training sequence's attention patterns at the end of
training, every layer, the full model beside the most truncated variant, with the triggers, in-context outputs and
noise tokens marked (AttentionProbe's ``example``, its patterns in attention_example.npz)."""
from __future__ import annotations

import numpy as np
from matplotlib.colors import PowerNorm

from reports.page import Page
from reports.run import RunRecord
from reports.style import PAGE_WIDTH_IN, plt
from run_record import files
from run_record.contract import ATTENTION_PROBE, section

ROLE_MARKS = {"trigger": ("q", "black"), "output": ("o", "#1f77b4"), "noise": ("N", "#d62728")}


def example_figure(page: Page, run: RunRecord) -> None:
    """One sequence's attention patterns at the end of training, every layer, the full model beside the most truncated
    variant, with the triggers, in-context outputs and noise tokens marked (AttentionProbe's example)."""
    example = (section(run.summary, ATTENTION_PROBE) or {}).get("example")
    if not example:
        return None
    try:
        patterns = files.read_npz(run.path / example["file"])
    except (files.Damaged, OSError) as e:
        return page.skip("An example sequence's attention", f"{example['file']} was not read ({getattr(e, 'reason', e)})")
    models = [v for v in example["variants"] if f"patterns:{v}" in patterns]
    n_layers = patterns[f"patterns:{models[0]}"].shape[0]
    roles, start, q = example["roles"], example["start"], example["query"]
    marked = [i for i, r in enumerate(roles) if r]
    fig, axes = plt.subplots(len(models), n_layers, figsize=(PAGE_WIDTH_IN, 4.6 * len(models)), squeeze=False,
                             layout="constrained")
    for row, model in enumerate(models):
        for layer in range(n_layers):
            ax = axes[row, layer]
            # a square-root scale: an induction head's few strong weights and a previous-token head's diagonal both show
            image = ax.imshow(patterns[f"patterns:{model}"][layer], cmap="Greys", norm=PowerNorm(0.5, vmin=0, vmax=1),
                              interpolation="nearest")
            for setter, colour_of in ((ax.set_xticks, ax.get_xticklabels), (ax.set_yticks, ax.get_yticklabels)):
                setter(marked, [ROLE_MARKS[roles[i]][0] for i in marked], fontsize=7)
                for label, i in zip(colour_of(), marked):
                    label.set_color(ROLE_MARKS[roles[i]][1])
            ax.axhline(q - start, color=page.variants.colour(model), linewidth=0.8, alpha=0.7)
            ax.set_title(f"layer {layer + 1}, {page.variants.label(model)}", fontsize=9, color=page.variants.colour(model))
            ax.set_xlabel("key position (attended to)", fontsize=8)
            if layer == 0:
                ax.set_ylabel("query position", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight (square-root scale)")
    same = (" The variant's patterns equal the full model's: its truncation acts after every attention (a last-layer "
            "FF), so it changes what is written, not where the model looks.")
    top = "; ".join(f"{page.variants.label(m)}: " + ", ".join(f"{'noise' if t == example['noise_id'] else t} {p:.2f}"
                                                             for t, p in example["top"][m]) for m in models)
    present = [r for r in ROLE_MARKS if r in roles]  # a run without noise in context names no noise token
    marks = ", ".join({"trigger": "triggers (q, black)", "output": "the outputs after them (o, blue)",
                       "noise": "noise tokens (N, red)"}[r] for r in present) or "nothing (no trigger in it)"
    page.save(fig, "attention_example", "An example: one training sequence's attention, full model and variant",
              f"One sequence of the training distribution, positions {start}-{q}: each row a query, "
              f"each column a key, darker = more attention (the mean over heads); ticks mark {marks}; the line marks "
              "the last trigger, where the model predicts. In-context "
              f"answer there: token {example['answer']}; the data's next token: "
              f"{'noise' if example['next_token'] == example['noise_id'] else example['next_token']}. Top 3 next tokens "
              f"(token, probability): {top}." + (same if len(models) == 2 and np.allclose(
                  patterns[f"patterns:{models[0]}"], patterns[f"patterns:{models[1]}"], atol=1e-6) else ""))
