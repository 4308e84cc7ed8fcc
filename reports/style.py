"""How every figure looks: matplotlib on the Agg backend (files only: no display on a cluster node), readable sizes
at the page's width (1150 px), labels for the metrics, and the full model drawn so it is always visible."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from run_record.names import CONSTRUCTED, FULL, METRICS, split_prompt_group  # noqa: E402

plt.rcParams.update({"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "legend.fontsize": 9,
                     "xtick.labelsize": 9, "ytick.labelsize": 9, "figure.dpi": 110})
PAGE_WIDTH_IN = 10.4  # 1150 px at 110 dpi: a figure this wide is shown at its own size

METRIC_LABELS = {name: m.label for name, m in METRICS.items()}  # one label per metric (run_record/names.py)


# Variants' colours: saturated, distinct on white; no grey (events and references are grey) and no yellow. Black is the
# full model's alone.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#393b79", "#637939", "#8c6d31", "#843c39")
EVENT_COLOUR = "#777777"  # marked steps, thresholds, T_train: grey, told apart by line style


class VariantEncoding:
    """The one owner of a variant's colour and label on a page: every figure of a run's page, and of a sweep's page,
    asks it. The full model is black and labelled "full model"; every other variant takes the next colour of PALETTE
    in the sorted order of the names the record holds (``of``), so a run's page and its sweep's page, whose tasks hold
    the same variants, agree, and a variant missing from one figure does not shift the others. Its label is its name,
    as in summary.json (the theory's constructed model excepted). A name it was not built with gets the next colour."""

    def __init__(self, names=()) -> None:
        self._colours: dict[str, str] = {}
        rest = sorted(set(names) - {FULL, CONSTRUCTED})
        for name in rest + ([CONSTRUCTED] if CONSTRUCTED in names else []):
            self._colours[name] = PALETTE[len(self._colours) % len(PALETTE)]

    @classmethod
    def of(cls, summaries) -> "VariantEncoding":
        """Built from every variant name the summaries hold: scored variants (a prompt type's rows counted once),
        declared ones, the LASER grid's target matrices and a probe's FF variants."""
        from run_record.contract import HIJACK_PROBE, section

        names: set[str] = set()
        for s in summaries:
            names |= {split_prompt_group(v)[0] for v in (s.get("variants") or {})} | set(s.get("variant_specs") or {})
            names |= {e["target"] for e in ((s.get("results") or {}).get("laser_grid") or []) if e.get("target")}
            names |= set(section(s, HIJACK_PROBE).get("ff_variants") or {})
        return cls(names)

    def colour(self, variant: str) -> str:
        if variant == FULL:
            return "black"
        if variant not in self._colours:
            self._colours[variant] = PALETTE[len(self._colours) % len(PALETTE)]
        return self._colours[variant]

    @staticmethod
    def label(variant: str) -> str:
        return {FULL: "full model", CONSTRUCTED: "constructed from the theory (untrained)"}.get(variant, variant)

    def style(self, variant: str) -> dict:
        """Line style: the full model thick and on top, the others thinner (past PALETTE's 12, colours repeat)."""
        if variant == FULL:
            return {"color": "black", "linewidth": 2.4, "zorder": 5, "label": self.label(variant)}
        return {"color": self.colour(variant), "linewidth": 1.4, "zorder": 3, "label": self.label(variant)}


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
    """The full model first, then the others by name (VariantEncoding's order, so legends list the colours in the
    same order everywhere), the theory's constructed model last."""
    variants = list(variants)
    rest = sorted(v for v in variants if v not in (FULL, CONSTRUCTED))
    return ([FULL] if FULL in variants else []) + rest + ([CONSTRUCTED] if CONSTRUCTED in variants else [])


def panel_grid(n: int, max_cols: int, panel_height_in: float, **subplots):
    """A page-wide figure of n panels, at most max_cols to a row; the unused cells of the last row are hidden.
    Returns the figure and the n axes in reading order."""
    cols = min(max_cols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PAGE_WIDTH_IN, panel_height_in * rows), squeeze=False, **subplots)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])
