"""The singular-component attribution figure (SingularAttribution's record), drawn on the noisy-recall and the
knowledge-hijack pages alike: where in each matrix the association sits, and the measured LASER points beside it."""
from __future__ import annotations

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
