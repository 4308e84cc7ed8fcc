"""The data each figure plots, computed from what runs recorded (tested on numbers; reports/plots.py draws them)."""
from __future__ import annotations

import re
import statistics
from typing import Any

from lightning_modules.metric_keys import split_eval_key, split_metric
from reports.run import History, RunRecord

Curve = list[tuple[int, float]]


def eval_curves(history: History, metric: str, stage: str = "val") -> dict[str, Curve]:
    """{variant: [(step, value)]} of ``<stage>/<variant>/<metric>``, variants in logged order (``full`` first)."""
    out: dict[str, Curve] = {}
    for key, points in history.items():
        parts = split_eval_key(key)
        if parts and parts[0] == stage and parts[2] == metric:
            out[parts[1]] = points
    return dict(sorted(out.items(), key=lambda kv: kv[0] != "full"))


VARIANT = re.compile(r"^(?P<target>.+)@rho(?P<rho>[0-9.eE+-]+)$")


def laser_sweep(variants: dict[str, dict[str, float]]) -> dict[str, list[tuple[float, dict[str, float]]]]:
    """{target matrix: [(rho, metrics)]} sorted by rho, from summary.json's variants (``<param>@rho<rho>``)."""
    out: dict[str, list[tuple[float, dict[str, float]]]] = {}
    for name, metrics in variants.items():
        m = VARIANT.match(name)
        if m:
            out.setdefault(m["target"], []).append((float(m["rho"]), metrics))
    return {k: sorted(v, key=lambda x: x[0]) for k, v in out.items()}


def probe_curves(history: History) -> dict[str, Curve]:
    """Every AttentionProbe series: ``probe/layers.<i>.attn/<name>`` and ``probe/layers.<i>.ff/noise_margin``."""
    return {k: v for k, v in history.items() if k.startswith("probe/")}


def first_step(curve: Curve, above: float) -> int | None:
    return next((step for step, value in curve if value > above), None)


def marked_steps(history: History) -> dict[str, int | None]:
    """The paper's order of events: per layer with an FF, the first probed step where its noise margin is positive
    (``ff_learns_noise:layers.<i>``), and per layer, the first where the induction attention to the in-context
    outputs passes 0.5 (``induction_head:layers.<i>``)."""
    out: dict[str, int | None] = {}
    for key, curve in probe_curves(history).items():
        layer = key.split("/")[1].rsplit(".", 1)[0]  # layers.<i>
        if key.endswith(".ff/noise_margin"):
            out[f"ff_learns_noise:{layer}"] = first_step(curve, 0.0)
        elif key.endswith(".attn/to_output"):
            out[f"induction_head:{layer}"] = first_step(curve, 0.5)
    return out


def spectrum_rank_curves(history: History) -> dict[str, dict[str, Curve]]:
    """{matrix: {stable_rank | effective_rank: curve}} from WeightSpectrumLogger's scalars."""
    out: dict[str, dict[str, Curve]] = {}
    for key, curve in history.items():
        if key.startswith("spectrum/") and key.rsplit("/", 1)[1] in ("stable_rank", "effective_rank"):
            matrix, stat = key[len("spectrum/"):].rsplit("/", 1)
            out.setdefault(matrix, {})[stat] = curve
    return out


def gradient_snr(summary: dict) -> dict[int, dict[str, float]]:
    """{step: {parameter group: SNR}} measured by GradientNoise (summary.json)."""
    raw = (summary.get("callbacks") or {}).get("GradientNoise") or {}
    return {int(step): {g: s["snr"] for g, s in groups.items()} for step, groups in sorted(raw.items(), key=lambda kv: int(kv[0]))}


def truncations(summary: dict) -> list[dict[str, Any]]:
    """LaserTruncation events: {step, ranks, before: metrics, after: metrics} (from every LaserTruncation callback)."""
    events = []
    for name, record in (summary.get("callbacks") or {}).items():
        if name.startswith("LaserTruncation"):
            for e in record.get("events", []):
                events.append({"step": e["global_step"], "ranks": e["ranks"], "before": e["before"], "after": e["after"]})
    return sorted(events, key=lambda e: e["step"])


def prompt_type_bars(summary: dict, metric: str) -> dict[str, dict[str, float]]:
    """Pretrained-model runs: {variant: {prompt type: metric}} from ``test/<variant>:<type>/<metric>``."""
    out: dict[str, dict[str, float]] = {}
    for key, value in (summary.get("metrics") or {}).items():
        parts = split_eval_key(key)
        if parts and ":" in parts[1] and parts[2] == metric:
            variant, kind = parts[1].split(":", 1)
            out.setdefault(variant, {})[kind] = value
    return out


# --- sweeps -----------------------------------------------------------------------------------------------------

def mean_std(values: list[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for a single value) and count: each point of an over-seeds curve."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


def final_vs_key(rows: list[dict], key: str, metric: str, seed_keys: tuple[str, ...] = ()) -> dict[str, list[tuple[Any, float, float, int]]]:
    """{variant: [(value of the swept key, mean, std, n)]} of a final metric over completed tasks, averaged over
    everything else that varies (seeds and other keys)."""
    groups: dict[tuple[str, str], list[float]] = {}
    xs: dict[str, Any] = {}
    for r in rows:
        if r.get("status") != "completed" or r.get("variant") is None or not isinstance(r.get(metric), (int, float)):
            continue
        x = r.get(key)
        xs[repr(x)] = x
        groups.setdefault((r["variant"], repr(x)), []).append(float(r[metric]))
    out: dict[str, list[tuple[Any, float, float, int]]] = {}
    for (variant, x), values in groups.items():
        out.setdefault(variant, []).append((xs[x], *mean_std(values)))
    order = lambda item: (not isinstance(item[0], (int, float)), item[0] if isinstance(item[0], (int, float)) else str(item[0]))  # noqa: E731
    return {v: sorted(points, key=order) for v, points in sorted(out.items(), key=lambda kv: kv[0] != "full")}


def revision_step(revision: Any) -> int | None:
    """Pythia's ``step<N>`` revisions as training steps (``main`` is the last, 143000)."""
    if revision == "main":
        return 143000
    m = re.fullmatch(r"step(\d+)", str(revision or ""))
    return int(m.group(1)) if m else None


def failed_tasks(rows: list[dict]) -> list[dict]:
    """One entry per task that did not complete: task, status, error (or the log's last line)."""
    seen, out = set(), []
    for r in rows:
        if r.get("status") != "completed" and r["task"] not in seen:
            seen.add(r["task"])
            error = r.get("error") or (r.get("log_tail") or "").strip().splitlines()[-1:] or ["no summary and no log"]
            out.append({"task": r["task"], "status": r.get("status"), "error": error if isinstance(error, str) else error[0]})
    return out


def task_curves(runs: dict[int, RunRecord], metric: str, variant: str = "full") -> dict[int, Curve]:
    """{task: curve of val/<variant>/<metric>} of every task with a history."""
    return {task: eval_curves(run.history, metric).get(variant, []) for task, run in runs.items()}


def hijack_results(summary: dict) -> dict:
    return ((summary.get("callbacks") or {}).get("HijackProbe") or {}).get("results") or {}


def hijack_theory_fit(summary: dict) -> dict[str, dict]:
    """HijackProbe's fit: {"<placement> <ff variant>": {w_ic, w_g, beta, r2, ..., by_length: {T<L>: {n, measured_gap,
    predicted_gap, predicted_boundary, gap_boundary, measured_boundary}}}}."""
    raw = ((summary.get("callbacks") or {}).get("HijackProbe") or {}).get("theory_fit") or {}
    return {f"{p} {v}": f for p, by_v in raw.items() for v, f in by_v.items()}


def hijack_win_rates(summary: dict, metric: str = "o_wins") -> dict[str, list[tuple[int, float]]]:
    """HijackProbe: {"<placement> T<L> <ff variant>": [(n pairs, metric)]} from summary.json."""
    raw = hijack_results(summary)
    return {f"{p} {t} {v}": sorted((int(n), m[metric]) for n, m in r["by_n"].items())
            for p, by_t in raw.items() for t, by_v in by_t.items() for v, r in by_v.items()}


def hijack_logit_split(summary: dict) -> dict[str, dict[int, dict[str, float]]]:
    """HijackProbe: {setting: {n: {part: mean contribution to logit(o) - logit(b)}}} (parts sum to "total")."""
    raw = hijack_results(summary)
    return {f"{p} {t} {v}": {int(n): m["logit_split"] for n, m in r["by_n"].items() if "logit_split" in m}
            for p, by_t in raw.items() for t, by_v in by_t.items() for v, r in by_v.items()}


def length_test_set(key: str, metric: str) -> tuple[int, str] | None:
    """``<metric>@T<L>:<placement>`` -> (L, placement); None for any other column (datamodules/noisy_recall.py
    names these test sets)."""
    name, test_set = split_metric(key)
    m = re.fullmatch(r"T(\d+):(\w+)", test_set or "")
    return (int(m.group(1)), m.group(2)) if name == metric and m else None


def length_generalisation(variants: dict[str, dict[str, float]], metric: str = "acc") -> dict[str, list[tuple[int, float]]]:
    """{"<variant> <placement>": [(test length, metric)]} from the ``<metric>@T<L>:<placement>`` columns."""
    out: dict[str, list[tuple[int, float]]] = {}
    for variant, row in variants.items():
        for key, value in row.items():
            if (at := length_test_set(key, metric)) is not None:
                out.setdefault(f"{variant} {at[1]}", []).append((at[0], value))
    return {k: sorted(v) for k, v in out.items()}


def sweep_length_generalisation(rows: list[dict], encoding_key: str, other_keys: list[str], metric: str = "acc",
                                variant: str = "full") -> dict[str, dict[Any, list[tuple[int, float, float, int]]]]:
    """{"<placement>, <other keys>": {encoding: [(test length, mean, std, n seeds)]}} from the sweep's rows."""
    values: dict[tuple[str, Any, int], list[float]] = {}
    for r in rows:
        if r.get("status") != "completed" or r.get("variant") != variant:
            continue
        others = ", ".join(f"{k.rsplit('.', 1)[-1]}={r.get(k)}" for k in other_keys)
        for key, value in r.items():
            if (at := length_test_set(key, metric)) is not None and isinstance(value, (int, float)):
                panel = at[1] + (f", {others}" if others else "")
                values.setdefault((panel, r.get(encoding_key), at[0]), []).append(float(value))
    out: dict[str, dict[Any, list[tuple[int, float, float, int]]]] = {}
    for (panel, encoding, length), vs in sorted(values.items(), key=lambda kv: (kv[0][0], str(kv[0][1]), kv[0][2])):
        out.setdefault(panel, {}).setdefault(encoding, []).append((length, *mean_std(vs)))
    return out


def hijack_fit_row(setting: str, f: dict) -> dict:
    """A table row of one HijackProbe fit: coefficients, R^2 of both forms, and per length the predicted / measured
    boundary ("none": o never wins within the probed n, or the form never crosses 0)."""
    show = lambda n: "none" if n is None else str(n)  # noqa: E731
    return {"setting": setting, "w_ic": f["w_ic"], "w_g": f["w_g"], "beta": f["beta"], "R2": f["r2"],
            "R2 (measured attention)": f["r2_attention"],
            **{f"boundary {t} (predicted n* / mean gap > 0 / o wins on half)":
               f"{show(b['predicted_boundary'])} / {show(b.get('gap_boundary'))} / {show(b['measured_boundary'])}"
               for t, b in f["by_length"].items()}}


def sweep_hijack_fits(runs: dict[int, RunRecord], rows: list[dict], keys: list[str]) -> list[dict]:
    """One row per task, placement and FF variant: the task's swept values and its HijackProbe theory fit."""
    out = []
    for task, run in runs.items():
        point = next((r for r in rows if r["task"] == task), {})
        out += [{"task": task, **{k: point.get(k) for k in keys}, **hijack_fit_row(name, f)}
                for name, f in hijack_theory_fit(run.summary).items()]
    return out


def gsm8k_by_shots(summary: dict, metric: str = "em_flexible", split: str = "test") -> dict[str, list[tuple[int, float, float]]]:
    """GSM8KModule: {variant: [(shots, exact match, its standard error)]} on ``split`` (test or selection)."""
    scores = ((summary.get("results") or {}).get("gsm8k") or {}).get("scores") or {}
    out: dict[str, list[tuple[int, float, float]]] = {}
    for setting, by_variant in scores.items():
        where, _, shots = setting.partition(":")
        if where != split:
            continue
        for variant, row in by_variant.items():
            if isinstance(row.get(metric), (int, float)):
                out.setdefault(variant, []).append((int(shots.removesuffix("shot")), row[metric], row.get(f"{metric}_stderr") or 0.0))
    return {v: sorted(points) for v, points in out.items()}


def sweep_hijack_rates(runs: dict[int, RunRecord], rows: list[dict], encoding_key: str, metric: str = "o_wins",
                       variant_suffix: str = "@rho1") -> dict[str, dict[Any, list[tuple[int, float, float, int]]]]:
    """HijackProbe across a sweep: {"<placement> T<L>": {encoding: [(n, mean, std, tasks)]}} for the full FF."""
    values: dict[tuple[str, Any, int], list[float]] = {}
    for task, run in runs.items():
        point = next((r for r in rows if r["task"] == task), {})
        for placement, by_t in hijack_results(run.summary).items():
            for t, by_v in by_t.items():
                for variant, r in by_v.items():
                    if variant.endswith(variant_suffix):
                        for n, m in r["by_n"].items():
                            values.setdefault((f"{placement} {t}", point.get(encoding_key), int(n)), []).append(m[metric])
    out: dict[str, dict[Any, list[tuple[int, float, float, int]]]] = {}
    order = lambda kv: (kv[0][0].split()[0], int(kv[0][0].split()[1][1:]), str(kv[0][1]), kv[0][2])  # noqa: E731
    for (panel, encoding, n), vs in sorted(values.items(), key=order):
        out.setdefault(panel, {}).setdefault(encoding, []).append((n, *mean_std(vs)))
    return out
