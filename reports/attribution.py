"""The singular-component attribution figure (SingularAttribution's record), drawn on the noisy-recall and the
knowledge-hijack pages alike: where in each matrix the association sits, and the measured LASER points beside it."""
from __future__ import annotations

import numpy as np

from reports.page import Page
from reports.run import RunRecord
from reports.style import PAGE_WIDTH_IN, plt
from run_record.contract import SINGULAR_ATTRIBUTION, section

GAP_LABEL = {"noise": "logit(noise) - logit(answer)", "hijack": "logit(o) - logit(b)"}
WHERE = {"noise": "scored triggers of {n} clean test sequences ({p} positions)",
         "hijack": "the final q of {n} hijack prompts at T_train"}


def rows(record: dict) -> list[dict]:
    """One row per matrix: the gap, where the removals place it, and each measured LASER rank against the prediction."""
    out = []
    for name, m in (record.get("matrices") or {}).items():
        curve = m["predicted_keep_top"]
        for k, measured in sorted(m.get("measured", {}).items(), key=lambda kv: int(kv[0])):
            predicted = curve[int(k)]
            out.append({"matrix": name, "rank kept": int(k), "of": len(m["singular_values"]), "full gap": m["gap"],
                        "predicted gap": predicted, "measured gap": measured,
                        "same sign of change": (predicted - m["gap"]) * (measured - m["gap"]) >= 0})
    return out


def figure(page: Page, run: RunRecord) -> None:
    record = section(run.summary, SINGULAR_ATTRIBUTION)
    matrices = record.get("matrices") or {}
    if not matrices:
        return None  # the callback was off, or measured nothing: nothing to say here
    gap = record.get("gap", "noise")
    fig, axes = plt.subplots(len(matrices), 2, figsize=(PAGE_WIDTH_IN, 3.2 * len(matrices)), squeeze=False)
    for (ax1, ax2), (name, m) in zip(axes, matrices.items()):
        r = len(m["singular_values"])
        ax1.plot(range(r + 1), m["predicted_keep_top"], color="tab:blue", linewidth=1.6,
                 label="predicted: the full gap + the removals of components k..r")
        measured = sorted((int(k), v) for k, v in (m.get("measured") or {}).items())
        if measured:
            ax1.plot(*zip(*measured), "o", color="tab:red", markersize=7, label="measured: LASER at that rank")
        ax1.axhline(m["gap"], color="black", linestyle="--", linewidth=1, label="full model")
        ax1.axhline(0, color="gray", linewidth=0.6)
        ax1.set_xlabel(f"top singular components kept (of {r})")
        ax1.set_ylabel(GAP_LABEL.get(gap, gap))
        ci = lambda key: "[{:+.2f}, {:+.2f}]".format(*m[key]) if m.get(key) else ""  # noqa: E731
        ax1.set_title(f"{name}: the top {m.get('top_rank')} components add {m.get('top_gap', 0):+.2f} {ci('top_gap_ci')} "
                      f"to the gap, the other {r - m.get('top_rank', 0)} {m.get('tail_gap', 0):+.2f} "
                      f"{ci('tail_gap_ci')}: " + (f"it sits in the {m.get('carried_by')}" if m.get("carried_by") != "neither"
                                      else "both parts push against it"), fontsize=9, loc="left")
        ax1.grid(alpha=0.3)
        ax1.legend(fontsize=7)
        ax2.bar(range(r), m["removal"], color="tab:gray", width=1.0)
        ax2.axhline(0, color="black", linewidth=0.6)
        ax2.set_xlabel("singular component (largest first)")
        ax2.set_ylabel("gap change, removed alone")
        ax2.grid(alpha=0.3, axis="y")
    n = record.get("n_sequences")
    positions = next(iter(matrices.values())).get("n_positions")
    where = WHERE.get(gap, "{n} sequences").format(n=n, p=positions)
    page.save(fig, "singular_attribution", "Which singular directions carry the association",
              f"Mean {GAP_LABEL.get(gap, gap)} over {where}, at step {record.get('step')}; in brackets the 95% "
              "interval of each part, bootstrapped over the sequences (1000 resamples). Left: the gap when only "
              "the top k components of the matrix are kept, predicted by adding the single-component removals "
              "(exact for a matrix whose output reaches the logits linearly), with the measured LASER ranks as red "
              "points. Right: each component's effect alone. Where the association sits in the top components, "
              "keeping the top (LASER) keeps it; where it sits in the tail, keeping the top removes it.")
    page.table("Singular attribution: predicted against measured LASER", rows(record),
               note=f"The gap at each LASER rank of the run, predicted from the removals and measured; {where}.")


def sweep_parts(sweep, key: str) -> dict[str, list[tuple]]:
    """{matrix: [(value of ``key``, the task's attribution record)]}, for every task that attributed the matrix."""
    by_matrix: dict[str, list[tuple]] = {}
    for task, run in sweep.runs.items():
        for name, m in (section(run.summary, SINGULAR_ATTRIBUTION).get("matrices") or {}).items():
            if "top_gap" in m:
                by_matrix.setdefault(name, []).append((sweep.point(task).get(key), m))
    return by_matrix


def part_means(points: list[tuple], part: str) -> list[tuple]:
    """[(value, mean of ``part`` over the tasks at that value)], in order of the value."""
    values = sorted({v for v, _ in points}, key=lambda v: (isinstance(v, str), v))
    return [(v, float(np.mean([m[part] for w, m in points if w == v]))) for v in values]


def sweep_figure(page: Page, sweep, key: str) -> None:
    """Where the association sits against a swept key: per matrix, the part of the gap its top components add and the
    part the rest add (SingularAttribution at the end of each task), each task's value with its 95% interval, and the
    mean over tasks per value of the key."""
    by_matrix = sweep_parts(sweep, key)
    if not by_matrix:
        return None
    values = sorted({v for pts in by_matrix.values() for v, _ in pts}, key=lambda v: (isinstance(v, str), v))
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    pos = {v: (v if numeric else i) for i, v in enumerate(values)}
    fig, axes = plt.subplots(1, len(by_matrix), figsize=(PAGE_WIDTH_IN, 3.6), squeeze=False)
    for ax, (name, points) in zip(axes.flat, by_matrix.items()):
        for part, colour, shift in (("top_gap", "tab:blue", 0.97), ("tail_gap", "tab:orange", 1.03)):
            for v, m in points:
                x = pos[v] * (shift if numeric else 1) + (0 if numeric else shift - 1)
                lo, hi = m.get(f"{part}_ci") or (m[part], m[part])
                ax.errorbar([x], [m[part]], yerr=[[m[part] - lo], [hi - m[part]]], fmt="o", color=colour, alpha=0.5,
                            markersize=4, capsize=2)
            means = [(pos[v], mean) for v, mean in part_means(points, part)]
            ax.plot(*zip(*means), "_", markersize=16, markeredgewidth=2, color=colour,
                    label=("top components" if part == "top_gap" else "the rest") + " (mean: bar)")
        ax.axhline(0, color="gray", linewidth=0.8)
        if numeric and len(values) > 1 and min(values) > 0 and max(values) / min(values) >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xticks([pos[v] for v in values], [str(v) for v in values])
        ax.minorticks_off()
        ax.set_xlabel(key.rsplit(".", 1)[-1])
        ax.set_ylabel("part of the gap (logits)")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    page.save(fig, f"attribution_vs_{key.rsplit('.', 1)[-1]}", f"Where the association sits, against {key}",
              "Per task (seed), what the matrix's top components add to the gap and what the rest add, with the 95% "
              "interval bootstrapped over the task's sequences; bars: the mean over tasks. A part above 0 carries the "
              "association; both below 0: the matrix holds none of it (SingularAttribution at the end of training).")
