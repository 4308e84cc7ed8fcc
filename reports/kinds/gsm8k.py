"""Few-shot GSM8K with LASER variants, scored by lm-evaluation-harness: exact match by number of shots per variant,
the variant chosen on the selection split, and, across a sweep, the selected variant per setting."""
from __future__ import annotations

from reports import table
from reports.kinds import ReportKind, SweepRecord, register
from reports.page import Page
from lightning_modules.metrics import wilson_interval
from reports.run import RunRecord, declared_records
from reports.style import PAGE_WIDTH_IN, ordered, plt, slots
from run_record.kinds import GSM8K
from run_record.names import FULL, GSM8K_METRICS, selection_evaluation, split_eval_key, split_metric


def scores(summary: dict) -> dict[str, dict[str, dict]]:
    """{"<split>:<k>shot": {variant: {em_strict, em_flexible, ... }}} as GSM8KModule recorded them."""
    return ((summary.get("results") or {}).get("gsm8k") or {}).get("scores") or {}


def by_shots(summary: dict, metric: str = "em_flexible", split: str = "test") -> dict[str, list[tuple[int, float, list[float]]]]:
    """{variant: [(shots, exact match, its 95% Wilson interval over the n_docs problems)]} on ``split`` (test or
    selection). Wilson's, not 1.96 x the harness's standard error: with a few problems or a score near 0 or 1 the
    normal interval leaves [0, 1]."""
    out: dict[str, list[tuple[int, float, list[float]]]] = {}
    for setting, by_variant in scores(summary).items():
        where, _, shots = setting.partition(":")
        if where != split:
            continue
        for variant, row in by_variant.items():
            if isinstance(row.get(metric), (int, float)):
                n = int(row.get("n_docs") or 0)
                ci = wilson_interval(row[metric], n) if n else [row[metric], row[metric]]
                out.setdefault(variant, []).append((int(shots.removesuffix("shot")), row[metric], ci))
    return {v: sorted(points) for v, points in out.items()}


def shot_slots(by_variant: dict[str, list[tuple]]) -> tuple[list[int], dict[str, list[float]]]:
    """The shot counts as slots (``style.slots``) and each variant's x positions."""
    return slots({v: [p[0] for p in points] for v, points in by_variant.items()})


def examples(page: Page, run: RunRecord) -> None:
    rows = generation_examples(run)
    if rows:
        page.table("Examples: problems the full model and a variant answer differently", rows,
                   note="Test problems where one of the two is right and the other wrong (the last number of the "
                        "generation, lm-eval's flexible extraction); generations cut at 400 characters "
                        "(generations.jsonl holds them whole).")


def run_page(page: Page, run: RunRecord) -> None:
    columns = ("em_strict", "em_strict_stderr", "em_flexible", "em_flexible_stderr", "delta_flexible", "n_docs")
    rows = [{"setting": s, "variant": v, **{k: int(r[k]) if k == "n_docs" else r[k] for k in columns if k in r}}
            for s, by_v in scores(run.summary).items() for v in ordered(by_v) for r in [by_v[v]]]
    page.table("GSM8K exact match (lm-evaluation-harness gsm8k_cot)", rows,
               note="Per split and shot count; the harness's own filters, metric and standard errors. Per-problem "
                    "generations: generations.jsonl.")
    chosen = ((run.summary.get("results") or {}).get("gsm8k") or {}).get("selected") or {}
    if chosen:
        page.table("Chosen on the selection split (GSM8K train), per shot count",
                   [{"shots": k, "selected": v} for k, v in chosen.items()])
    panels = [(m, by_shots(run.summary, m)) for m in GSM8K_METRICS]
    if not any(p for _, p in panels):
        return page.skip("Exact match by shots", "the run has no GSM8K test scores")
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 3.8), sharey=True)
    for ax, (metric, by_variant) in zip(axes, panels):
        shots, xs = shot_slots(by_variant)
        for variant in ordered(by_variant):
            points = by_variant[variant]
            ax.errorbar(xs[variant], [p[1] for p in points], yerr=[[p[1] - p[2][0] for p in points], [p[2][1] - p[1] for p in points]],
                        marker="o", linestyle="none", capsize=3, **page.variants.style(variant))
        ax.set_title({"em_strict": 'strict match ("The answer is N")', "em_flexible": "flexible extract (last number)"}[metric])
        ax.set_xlabel("few-shot exemplars")
        ax.set_xticks(range(len(shots)), [str(k) for k in shots])
        ax.set_xlim(-0.5, len(shots) - 0.5)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("exact match (test)")
    axes[0].legend(fontsize=8)
    n = sorted({int(r["n_docs"]) for s, by_v in scores(run.summary).items() if s.startswith("test")
                for r in by_v.values() if "n_docs" in r})
    page.save(fig, "gsm8k", "GSM8K exact match by number of shots, per LASER variant",
              f"Mean over {', '.join(map(str, n)) or 'the'} test problems per point; error bars: 95% Wilson intervals over "
              "the problems (the table has the harness's standard errors). Variants side by side at each shot count. The paper: late-FF LASER helps at "
              "1-2 shots and hurts at 8.")
    examples(page, run)


def generation_examples(run: RunRecord, n: int = 3) -> list[dict]:
    """Up to ``n`` test problems where the full model and a variant disagree on correctness (flexible extraction),
    each with both generations (generations.jsonl); the variant is the chosen one where the run chose."""
    records = declared_records(run, ((run.summary.get("results") or {}).get("gsm8k") or {}).get("generations")) or []
    chosen = set((((run.summary.get("results") or {}).get("gsm8k") or {}).get("selected") or {}).values())
    by = {(r["variant"], r["split"], r["num_fewshot"], r["doc_id"]): r for r in records}
    out = []
    for (variant, split, shots, doc), r in by.items():
        full = by.get((FULL, split, shots, doc))
        if variant == FULL or split != "test" or full is None or (chosen and variant not in chosen):
            continue
        if full["correct_flexible"] != r["correct_flexible"] and len(out) < n:
            out.append({"shots": shots, "question": full["question"], "answer": full["target"],
                        "full model": f"{full['generation'].strip()[:400]} [{'right' if full['correct_flexible'] else 'wrong'}]",
                        variant: f"{r['generation'].strip()[:400]} [{'right' if r['correct_flexible'] else 'wrong'}]"})
    return out


def sweep_page(page: Page, sweep: SweepRecord) -> None:
    choice = table.selected(sweep.rows, sweep.keys, sweep.protocols)
    if choice:
        page.table("Selected LASER variant per setting and shot count (chosen on the selection split, reported on test)", choice)
    else:
        page.skip("Selected variants", "no task scored a selection split")


def _test_keys(logged: set[str], metric: str, variant: str | None = None) -> list[str]:
    """The logged test-split keys of ``metric`` (every shot count), of one variant or all."""
    out = []
    for key in sorted(logged):
        parts = split_eval_key(key)
        if parts and parts[0] == "test" and (variant is None or parts[1] == variant):
            name, test_set = split_metric(parts[2])
            if name == metric and not selection_evaluation(test_set)[0]:
                out.append(key)
    return out


def run_panels(run: RunRecord) -> list[dict]:
    logged = set(run.summary.get("metrics") or {})
    return [{"kind": "bar", "title": f"{m} per variant and shot count", "y": _test_keys(logged, m)} for m in GSM8K_METRICS]


def sweep_panels(sweep: SweepRecord) -> list[dict]:
    logged = set().union(*(set(r.summary.get("metrics") or {}) for r in sweep.runs.values())) if sweep.runs else set()
    full = [k for m in GSM8K_METRICS for k in _test_keys(logged, m, FULL)]
    return [{"kind": "bar", "title": f"full-model exact match by {key}", "y": full, "groupby": f"config.{key}"} for key in sweep.swept]


register(ReportKind(GSM8K, "GSM8K with LASER", run_page, sweep_page, run_panels, sweep_panels))
