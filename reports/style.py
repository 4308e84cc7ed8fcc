"""How every figure looks: matplotlib on the Agg backend (files only: no display on a cluster node), readable sizes
at the page's width (1150 px), labels for the metrics, and the full model drawn so it is always visible."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from run_record.names import FULL, METRICS  # noqa: E402

plt.rcParams.update({"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "legend.fontsize": 9,
                     "xtick.labelsize": 9, "ytick.labelsize": 9, "figure.dpi": 110})
PAGE_WIDTH_IN = 10.4  # 1150 px at 110 dpi: a figure this wide is shown at its own size

METRIC_LABELS = {name: m.label for name, m in METRICS.items()}  # one label per metric (run_record/names.py)


def variant_style(variant: str, i: int) -> dict:
    """Line style of a variant: the full model thick, black, drawn on top; the others from a colour cycle, thinner."""
    if variant == FULL:
        return {"color": "black", "linewidth": 2.4, "zorder": 5, "label": "full model"}
    return {"color": plt.get_cmap("tab10")(i % 10), "linewidth": 1.4, "zorder": 3, "label": variant}


def slots(lines: dict[str, list]) -> tuple[list, dict[str, list[float]]]:
    """A categorical x axis for values measured at a few settings (shot counts, rank fractions): each setting one
    evenly spaced slot, so a setting alone sits at its tick and nothing is drawn between two settings; each line's x
    positions ({line: [settings]} in, in ``ordered`` order), side by side within the slot. Returns (the settings
    sorted, {line: positions})."""
    values = sorted({x for xs in lines.values() for x in xs})
    names = ordered(lines)
    width = min(0.12, 0.6 / max(len(names), 1))
    return values, {v: [values.index(x) + (i - (len(names) - 1) / 2) * width for x in lines[v]] for i, v in enumerate(names)}


def ordered(variants) -> list[str]:
    """The full model first, then the others in their recorded order."""
    variants = list(variants)
    return ([FULL] if FULL in variants else []) + [v for v in variants if v != FULL]


def panel_grid(n: int, max_cols: int, panel_height_in: float, **subplots):
    """A page-wide figure of n panels, at most max_cols to a row; the unused cells of the last row are hidden.
    Returns the figure and the n axes in reading order."""
    cols = min(max_cols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PAGE_WIDTH_IN, panel_height_in * rows), squeeze=False, **subplots)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])
