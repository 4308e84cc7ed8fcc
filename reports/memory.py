"""The memory-probe figure (MemoryProbe's curves), drawn on the noisy-recall and the knowledge-hijack pages alike:
when each weight matrix becomes the associative memory the theory describes, on one step axis with the attention
probes measured on sequences, so the order "the FF's memory, then the induction memories" reads off the weights."""
from __future__ import annotations

from reports.page import Page
from reports.run import RunRecord, unless_unread
from reports.style import PAGE_WIDTH_IN, plt
from run_record.files import METRICS_FILE
from run_record.names import probe_key

# one colour and one name per memory on every figure; an activation probe is dashed in the colour of its memory
MEMORIES = {
    "positional_inside": ("previous position (W_K), inside T_train", "tab:blue"),
    "positional_beyond": ("previous position (W_K), beyond T_train", "tab:cyan"),
    "induction_recall": ("induction key (W_K)", "tab:green"),
    "output_recall": ("output token (W_O W_V)", "tab:purple"),
    "global_top1": ("global next token (top-1)", "tab:red"),
}
OVERLAPS = {"positional_overlap": "positional_inside", "induction_overlap": "induction_recall",
            "output_overlap": "output_recall", "global_overlap": "global_top1"}  # drawn in their memory's colour


def curves(run: RunRecord) -> dict[str, list[tuple[int, float | None]]]:
    return {k: sorted(v) for k, v in run.history.items() if k.startswith("memory/")}


def _layer(key: str) -> int:
    return int(key.split("/")[1].split(".")[1])


def chosen_series(found: dict[str, list]) -> dict[str, str]:
    """{metric: the key drawn}: the previous-token and induction memories of the layer where they end highest (a deeper
    model may hold them anywhere), the output and global memories of the last layer that has them."""
    def last(key: str) -> float | None:
        return next((v for _, v in reversed(found[key]) if v is not None), None)

    out: dict[str, str] = {}
    for key in sorted(found, key=_layer):
        name = key.rsplit("/", 1)[1]
        best = out.get(name)
        if not name.startswith(("positional", "induction")) or best is None or \
                (last(key) is not None and (last(best) is None or last(key) > last(best))):
            out[name] = key
    return out


def figure(page: Page, run: RunRecord) -> None:
    title = "What the weights store: memory probes over training"
    found = curves(run)
    if not found:
        return page.skip(title, unless_unread(run, METRICS_FILE, "MemoryProbe was off in this run"))
    chosen = chosen_series(found)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 3.9))
    for name, (label, colour) in MEMORIES.items():
        if name in chosen and any(v is not None for _, v in found[chosen[name]]):
            steps, values = zip(*found[chosen[name]])
            ax1.plot(steps, values, marker=".", color=colour, label=f"{label}, layers.{_layer(chosen[name])}")
    n_layers = 1 + max(_layer(k) for k in found)
    activation = {probe_key(0, "attn", "prev_token"): ("attention to the previous token (layers.0, on sequences)", "tab:blue"),
                  probe_key(n_layers - 1, "attn", "to_output"): (f"induction attention to o (layers.{n_layers - 1}, on sequences)", "tab:green")}
    for key, (label, colour) in activation.items():
        if run.history.get(key):
            steps, values = zip(*sorted(run.history[key]))
            ax1.plot(steps, values, linestyle="--", color=colour, alpha=0.8, label=label)
    for name, memory_name in OVERLAPS.items():
        points = [(s, v) for s, v in found.get(chosen.get(name, ""), []) if v is not None]
        if points:
            label, colour = MEMORIES[memory_name]
            ax2.plot(*zip(*points), marker=".", color=colour, label=f"{label.split(',')[0]}, layers.{_layer(chosen[name])}")
    ax1.set_ylabel("recall (fraction of keys) / attention mass")
    ax2.set_ylabel("cosine(learned matrix, construction)")
    for ax in (ax1, ax2):
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(left=0)
        ax.set_xlabel("optimizer step (log scale after 10)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax1.set_ylim(-0.02, 1.02)
    page.save(fig, "memory_probes", title,
              "Solid: read from the weights and embeddings alone (lightning_modules/memory.py; no sequences, so no "
              "sampling interval): the fraction of the theory's keys whose top score is the theory's answer, over every "
              "query position (previous position) or every token (weighted by how often the data asks: induction key, "
              "global memory). Dashed: the attention probes on 64 training sequences. Right: the cosine between each "
              "learned matrix and the theory's outer-product construction (the FF: its least-squares linear part on the "
              "token embeddings).")


def wandb_panels(run: RunRecord) -> list[dict]:
    """The W&B report's line panels: the recalls, then the overlaps, each memory of the layer the page draws."""
    chosen = chosen_series(curves(run))
    recalls = [chosen[n] for n in MEMORIES if n in chosen]
    overlaps = [chosen[n] for n in OVERLAPS if n in chosen]
    return ([{"kind": "line", "title": "memory probes: recall (from the weights)", "y": recalls}] if recalls else []) + \
        ([{"kind": "line", "title": "memory probes: cosine with the construction", "y": overlaps}] if overlaps else [])
