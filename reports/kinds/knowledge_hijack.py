"""Knowledge hijack and length generalisation (Wang & Sato): does the in-context answer survive past the training
length, when does the global bigram hijack it, and what the positional encoding does to the previous-token head.

Run page: accuracy by test length and placement per variant (a table, then the figure), the hijack rates and P(o) /
P(b) by n, the logit split, the theory fit, and layer 1's previous-token attention inside and beyond T_train. Sweep
page: the same per positional encoding, mean and std over seeds, and every task's fit.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from reports import attention, attribution, memory, series
from reports.kinds import ReportKind, SweepRecord, register
from reports.page import Page
from reports.run import RunRecord
from reports.style import EVENT_COLOUR, METRIC_LABELS, PAGE_WIDTH_IN, ordered, panel_grid, plt
from run_record.kinds import KNOWLEDGE_HIJACK
from run_record.contract import HIJACK_PROBE, section
from run_record.names import CONSTRUCTED, FULL, eval_key, prev_token_key

ENCODING = "model.init_args.model.positional"  # the sweep's comparison


# --- series ------------------------------------------------------------------------------------------------------

def test_sets(summary: dict) -> list[dict]:
    """The run's test sets as the module declared them: {name (None: the main set), length, placement}."""
    return (summary.get("results") or {}).get("test_sets") or []


def length_intervals(summary: dict, metric: str = "acc") -> dict[tuple[str, str, int], list[float]]:
    """{(variant, placement, length): 95% interval} of ``metric`` from the module's recorded intervals (the main test
    set counts for ``anywhere``, as in ``by_length``)."""
    recorded = series.intervals(summary).get("variants") or {}
    out = {}
    for s in test_sets(summary):
        key, placement = (metric, "anywhere") if s["placement"] == "main" else (f"{metric}@{s['name']}", s["placement"])
        for variant, cis in recorded.items():
            if cis.get(key):
                out[(variant, placement, s["length"])] = cis[key]
    return out


def by_length(summary: dict, metric: str = "acc") -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{placement: {variant: [(test length, metric)]}}; the main test set (length T_train) counts for ``anywhere`` only
    (its pairs lie within T_train: no set of pairs "only beyond T_train" exists at T_train).
    The model HijackProbe built from the theory, where it was evaluated on the same sets, is the variant
    ``constructed``."""
    variants = dict(summary.get("variants") or {})
    built = probe(summary).get("constructed_test_sets") or {}
    if built:  # the same metric names, keyed as the module keys its own test sets
        variants[CONSTRUCTED] = {**built.get("main", {}), **{f"{k}@{name}": v for name, m in built.items() if name != "main"
                                                              for k, v in m.items()}}
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    sets = test_sets(summary)
    main = next((s for s in sets if s["placement"] == "main"), None)
    for s in sets:
        if s["placement"] == "main":
            continue
        for variant, row in variants.items():
            key = f"{metric}@{s['name']}"
            if isinstance(row.get(key), (int, float)):
                points = out.setdefault(s["placement"], {}).setdefault(variant, [])
                points.append((s["length"], row[key]))
    for placement, lines in out.items():
        for variant, points in lines.items():
            if (placement == "anywhere" and main and isinstance(variants[variant].get(metric), (int, float))
                    and all(x != main["length"] for x, _ in points)):
                points.append((main["length"], variants[variant][metric]))
            points.sort()
    return out


def probe(summary: dict) -> dict:
    return section(summary, HIJACK_PROBE)


def win_rates(summary: dict, metric: str = "o_wins") -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{"<placement> T<L>": {ff variant: [(n pairs, metric)]}}; a setting where no prompt was built is left out."""
    out = {f"{p} {t}": {v: sorted((int(n), m[metric]) for n, m in r["by_n"].items()) for v, r in by_v.items() if r.get("by_n")}
           for p, by_t in (probe(summary).get("results") or {}).items() for t, by_v in by_t.items()}
    return {setting: lines for setting, lines in out.items() if lines}


def theory_fits(summary: dict) -> dict[str, dict]:
    """{"<placement> <ff variant>": fit} (lightning_modules/hijack_theory.py)."""
    return {f"{p} {v}": f for p, by_v in (probe(summary).get("theory_fit") or {}).items() for v, f in by_v.items()}


def fit_row(setting: str, f: dict) -> dict:
    show = lambda n: "none" if n is None else str(n)  # noqa: E731
    from lightning_modules.hijack_theory import on_grid_edge

    beta = f"{f['beta']:g}" + (" (grid edge: only w_ic e^beta is determined)" if on_grid_edge(f["beta"]) else "")
    return {"setting": setting, "w_ic": f["w_ic"], "w_g": f["w_g"], "beta": beta, "R2": f["r2"],
            "R2 (measured attention)": f["r2_attention"],
            **{f"boundary {t} (n* / mean gap > 0 / o wins half)":
               f"{show(b['predicted_boundary'])} / {show(b.get('gap_boundary'))} / {show(b['measured_boundary'])}"
               for t, b in f["by_length"].items()}}


# --- run figures -------------------------------------------------------------------------------------------------

def length_figure(page: Page, curves: dict[str, dict[str, list]], t_train: int | None, caption: str) -> None:
    fig, axes = plt.subplots(1, len(curves), figsize=(PAGE_WIDTH_IN, 3.6), squeeze=False, sharey=True)
    for ax, (placement, lines) in zip(axes.flat, sorted(curves.items())):
        for variant in ordered(lines):
            xs, ys = zip(*lines[variant])
            ax.plot(xs, ys, marker="o", **page.variants.style(variant))
        ax.set_xscale("log", base=2)
        lengths = sorted({x for pts in lines.values() for x, _ in pts})
        ax.set_xticks(lengths, [str(x) for x in lengths])
        ax.minorticks_off()
        if t_train:
            ax.axvline(t_train, color="gray", linestyle=":", linewidth=1)
        ax.set_title({"anywhere": "in-context pairs anywhere", "beyond": "pairs only beyond T_train"}.get(placement, placement))
        ax.set_xlabel("test sequence length (tokens)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel(METRIC_LABELS["acc"])
    axes.flat[0].legend(fontsize=8)
    page.save(fig, "length_generalisation", "Accuracy against the test length", caption)


def hijack_rates(page: Page, run: RunRecord) -> None:
    wins = win_rates(run.summary)
    if not wins:
        why = "HijackProbe built no prompt (n_pairs fit none)" if probe(run.summary).get("results") else "HijackProbe was off in this run"
        return page.skip("Knowledge hijack by n", why)
    p_o, p_b = win_rates(run.summary, "p_o"), win_rates(run.summary, "p_b")
    fig, axes = plt.subplots(2, len(wins), figsize=(PAGE_WIDTH_IN, 6.0), squeeze=False, sharex=True, sharey="row")
    for col, setting in enumerate(wins):
        for variant in ordered(wins[setting]):
            style = page.variants.style(variant)
            ns, ys = zip(*wins[setting][variant])
            axes[0, col].plot(ns, ys, marker="o", **style)
            axes[1, col].plot(*zip(*p_o[setting][variant]), marker="o", **style)
            axes[1, col].plot(*zip(*p_b[setting][variant]), marker="s", linestyle="--", **(style | {"label": None}))
        axes[0, col].axhline(0.5, color="gray", linewidth=0.8)
        axes[0, col].set_title(setting)
        axes[1, col].set_xlabel("in-context pairs (q, o)")
        for row in (0, 1):
            axes[row, col].set_ylim(-0.02, 1.02)
            axes[row, col].grid(alpha=0.3)
    axes[0, 0].set_ylabel("o is the argmax (fraction)")
    axes[1, 0].set_ylabel("P(o) solid, P(b) dashed")
    axes[0, 0].legend(fontsize=8)
    n_prompts = probe(run.summary).get("n_prompts")
    page.save(fig, "hijack", "Knowledge hijack: the in-context answer o against the global answer b",
              (f"Each point: {n_prompts} prompts. " if n_prompts else "") +
              "Prompts end in a trigger q; o is its in-context answer, b its global bigram answer. Above the grey line "
              "the context wins on most prompts (the hijack boundary is where it crosses). Columns: placement of the "
              "pairs and prompt length; lines: the global-bigram FF kept at each rank fraction, and the model built from the "
              "theory where the probe built it (untrained).")


def logit_split(page: Page, run: RunRecord) -> None:
    results = probe(run.summary).get("results") or {}
    setting = next(((p, t) for p, by_t in results.items() for t, by_v in by_t.items()
                    if FULL in by_v and any("logit_split" in m for m in by_v[FULL]["by_n"].values())), None)
    if setting is None:
        return None
    cells = {int(n): m["logit_split"] for n, m in results[setting[0]][setting[1]][FULL]["by_n"].items()}
    ns = sorted(cells)
    parts = [p for p in cells[ns[0]] if p != "total"]
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    pos, neg = np.zeros(len(ns)), np.zeros(len(ns))
    for part in parts:
        values = np.array([cells[n][part] for n in ns])
        ax.bar([str(n) for n in ns], values, bottom=np.where(values >= 0, pos, neg), label=part)
        pos, neg = pos + np.clip(values, 0, None), neg + np.clip(values, None, 0)
    ax.plot([str(n) for n in ns], [cells[n]["total"] for n in ns], "k_", markersize=24, markeredgewidth=2, label="total")
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.set_xlabel("in-context pairs (q, o)")
    ax.set_ylabel("contribution to logit(o) - logit(b)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    page.save(fig, "hijack_logit_split", f"Where the logit gap comes from ({setting[0]} {setting[1]}, full model)",
              "Stacked: each part of the residual stream's direct contribution to logit(o) - logit(b), mean over prompts; "
              "they sum to the black mark, the model's own gap. Direct attribution credits the part that writes last.")


def theory(page: Page, run: RunRecord) -> None:
    fits = theory_fits(run.summary)
    if not fits:
        return page.skip("Theory fit", "HijackProbe recorded no fit (too few n or lengths)")
    from lightning_modules.hijack_theory import attention_mass

    page.table("Hijack theory fit: logit(o) - logit(b) = w_ic a(n, T) - w_g", [fit_row(k, f) for k, f in fits.items()])
    fig, axes = panel_grid(len(fits), 3, 3.3, sharey=True)
    for ax, (name, f) in zip(axes, fits.items()):
        for i, (t, b) in enumerate(f["by_length"].items()):
            color = plt.get_cmap("tab10")(i % 10)
            ns = np.linspace(0, max(b["n"]), 100)
            ax.plot(b["n"], b["measured_gap"], "o", color=color, label=f"{t} measured")
            ax.plot(ns, f["w_ic"] * attention_mass(ns, np.full_like(ns, b["length"]), f["beta"]) - f["w_g"], "-", color=color, label=f"{t} fit")
        ax.axhline(0, color="gray", linewidth=0.8)
        r2 = "-" if f["r2"] is None else f"{f['r2']:.2f}"
        note = "" if len(f["by_length"]) > 1 else "\none test length: beta and w_ic not separable"
        ax.set_title(f"{name}\nR$^2$ {r2}, w_ic {f['w_ic']:.1f}, w_g {f['w_g']:.2f}{note}", fontsize=9)
        ax.set_xlabel("in-context pairs (q, o)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("logit(o) - logit(b)")
    axes[0].legend(fontsize=7)
    page.save(fig, "hijack_theory", "Knowledge hijack: measured against predicted logit gap", "Points: the mean measured "
              "gap per n and length; lines: the fitted w_ic a(n, T) - w_g, a(n, T) = n e^beta / (n e^beta + T - n). "
              "o wins where the gap is above 0.")


def competing(page: Page, run: RunRecord) -> None:
    """The win rate over (n, k): n pairs (q, o) against k pairs (q, b) in one context, per model, at each setting
    that measured some k > 0; with the boundary per k, measured and from the fitted form."""
    results, fits = probe(run.summary).get("results") or {}, probe(run.summary).get("theory_fit") or {}
    panels = [(p, t, v, r) for p, by_t in results.items() for t, by_v in by_t.items() for v in ordered(by_v)
              for r in [by_v[v]] if r.get("by_k") and v in (FULL, CONSTRUCTED)]
    if not panels:
        return None
    models = [v for v in (FULL, CONSTRUCTED) if any(p[2] == v for p in panels)]
    settings = list(dict.fromkeys((p, t) for p, t, _, _ in panels))
    fig, axes = plt.subplots(len(models), len(settings), figsize=(PAGE_WIDTH_IN, 2.7 * len(models)), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)  # a model without the grid at a setting leaves its cell empty
    rows = []
    for placement, t, variant, r in panels:
        ax = axes[models.index(variant), settings.index((placement, t))]
        ax.set_visible(True)
        grids = {0: r["by_n"], **{int(k): e["by_n"] for k, e in r["by_k"].items()}}
        ks, ns = sorted(grids), sorted({int(n) for g in grids.values() for n in g})
        cells = np.full((len(ks), len(ns)), np.nan)
        for i, k in enumerate(ks):
            for j, n in enumerate(ns):
                m = grids[k].get(str(n))  # the record's keys are strings (summary.json)
                if m:
                    cells[i, j] = m["o_wins"]
        ax.imshow(cells, vmin=0, vmax=1, cmap="RdBu", origin="lower", aspect="auto")
        for (i, j), value in np.ndenumerate(cells):
            ax.text(j, i, "-" if np.isnan(value) else f"{value:.2f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(ns)), [str(n) for n in ns])
        ax.set_yticks(range(len(ks)), [str(k) for k in ks])
        ax.set_xlabel("pairs (q, o)", fontsize=8)
        ax.set_ylabel("pairs (q, b)", fontsize=8)
        ax.set_title(f"{page.variants.label(variant)}, {placement} {t}", fontsize=8)
        fit = (((fits.get(placement) or {}).get(variant) or {}).get("by_length") or {}).get(t) or {}
        for k in ks:
            boundary = r["boundary"] if k == 0 else r["by_k"][str(k)]["boundary"]
            predicted = fit.get("predicted_boundary") if k == 0 else (fit.get("by_k", {}).get(str(k)) or {}).get("predicted_boundary")
            rows.append({"model": page.variants.label(variant), "setting": f"{placement} {t}", "k pairs (q, b)": k,
                         "boundary n (o wins half)": "none" if boundary is None else boundary,
                         "n* of the fitted form": "none" if predicted is None else predicted})
    n_prompts = probe(run.summary).get("n_prompts")
    page.save(fig, "hijack_competing", "Both answers in context: o wins over (n, k)",
              f"Fraction of {n_prompts or 'the'} prompts per cell where the in-context o is the argmax after the final q, with n pairs "
              "(q, o) and k pairs (q, b) in one context (blue: o wins; red: it loses). The trained model and the model "
              "built from the theory, side by side.")
    page.table("The hijack boundary with k pairs (q, b) in context", rows,
               note="Measured: the smallest n at which o wins on half the prompts; n*: where the fitted form "
                    "w_ic (a_o - a_b) - w_g crosses 0 (lightning_modules/hijack_theory.py).")


def prev_token(page: Page, run: RunRecord) -> None:
    measured, t_train = probe(run.summary).get("prev_token") or {}, probe(run.summary).get("t_train")
    if not measured:
        return None
    # the layer HijackProbe read (prev_token_layer, 0-based in the record); named 1-based here, as in the papers
    index = probe(run.summary).get("prev_token_layer", 0)
    layer = f"Layer {index + 1} (layers.{index})"
    page.table(f"Previous-token attention of {layer}, inside and beyond the training length",
               [{"test length": t, "inside T_train": m["inside"], "beyond T_train": m["beyond"]} for t, m in measured.items()],
               note="Mean attention from each position to the one before it: the previous-token head the induction "
                    "head needs. The positional encoding decides whether it survives past T_train.")
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for i, (t, m) in enumerate(measured.items()):
        ax.plot([(a + b) / 2 for a, b, _ in m["profile"]], [v for *_, v in m["profile"]], marker="o", label=t,
                color=plt.get_cmap("viridis")(i / max(1, len(measured) - 1)))
    if t_train:
        ax.axvline(t_train, color=EVENT_COLOUR, linestyle="--", label=f"T_train = {t_train}")
    ax.set_xlabel("position in the sequence")
    ax.set_ylabel("attention to the previous token")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    page.save(fig, "prev_token", f"The mechanism: the previous-token attention of {layer} by position", "Mean over clean "
              "sequences of each length, in 16 stretches. Past the dashed line the positions were never seen in training.")


def run_page(page: Page, run: RunRecord) -> None:
    curves = by_length(run.summary)
    t_train = (run.summary.get("results") or {}).get("t_train")
    if curves:
        lengths = sorted({x for lines in curves.values() for pts in lines.values() for x, _ in pts})
        cis = length_intervals(run.summary)
        rows = [{"variant": v, "placement": p, **{f"T {x}": y for x, y in pts},
                 **{f"T {x} 95% CI": f"[{ci[0]:.3f}, {ci[1]:.3f}]" for x, _ in pts if (ci := cis.get((v, p, x)))}}
                for p, lines in sorted(curves.items()) for v in ordered(lines) for pts in [lines[v]]]
        n = (series.intervals(run.summary).get("n") or {})
        page.table("Accuracy by test length and placement", rows,
                   ["variant", "placement", *[c for x in lengths for c in (f"T {x}", f"T {x} 95% CI")]],
                   note=f"At repeated triggers; T_train = {t_train}. 'beyond': every in-context pair lies past T_train. "
                        + (f"95% intervals over each set's test sequences ({', '.join(f'{k}: {v}' for k, v in n.items())}), "
                           "each sequence one unit." if n else ""))
        length_figure(page, curves, t_train, "Solid black: the full model; one line per LASER variant. Dotted: T_train. "
                      "With absolute positions, the positions past T_train were never trained.")
    hijack_rates(page, run)
    attention.example_figure(page, run)
    logit_split(page, run)
    attribution.figure(page, run)
    competing(page, run)
    theory(page, run)
    prev_token(page, run)
    memory.figure(page, run)


# --- sweeps ------------------------------------------------------------------------------------------------------

def _by_encoding(sweep: SweepRecord, values) -> dict[str, dict[Any, list[tuple]]]:
    """{panel: {encoding: [(x, mean, std, n)]}} from ``values``: (panel, encoding, x, value) tuples."""
    grouped: dict[tuple, list[float]] = {}
    for panel, enc, x, v in values:
        grouped.setdefault((panel, enc, x), []).append(v)
    out: dict[str, dict[Any, list[tuple]]] = {}
    for (panel, enc, x), vs in sorted(grouped.items(), key=lambda kv: (kv[0][0], str(kv[0][1]), kv[0][2])):
        out.setdefault(panel, {}).setdefault(enc, []).append((x, *series.mean_std(vs)))
    return out


def sweep_length(sweep: SweepRecord) -> dict[str, dict[Any, list[tuple]]]:
    others = [k for k in sweep.swept if k != ENCODING]
    values = []
    for task, run in sweep.runs.items():
        label = ", ".join(f"{k.rsplit('.', 1)[-1]}={sweep.point(task).get(k)}" for k in others)
        for placement, lines in by_length(run.summary).items():
            for x, y in lines.get(FULL, []):
                values.append((placement + (f", {label}" if label else ""), sweep.point(task).get(ENCODING), x, y))
    return _by_encoding(sweep, values)


def sweep_rates(sweep: SweepRecord) -> dict[str, dict[Any, list[tuple]]]:
    values = [(setting, sweep.point(task).get(ENCODING), n, v) for task, run in sweep.runs.items()
              for setting, lines in win_rates(run.summary).items() for n, v in lines.get(FULL, [])]
    return _by_encoding(sweep, values)


def encoding_panels(page: Page, panels: dict, name: str, title: str, ylabel: str, xlabel: str, caption: str, log2: bool) -> None:
    if not panels:
        return page.skip(title, "no task recorded it")
    fig, axes = panel_grid(len(panels), 3, 3.3, sharey=True)
    for ax, (panel, lines) in zip(axes, panels.items()):
        for i, (enc, pts) in enumerate(lines.items()):
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3,
                        linewidth=1.8, color=plt.get_cmap("tab10")(i % 10), label=str(enc))
        if log2:
            ax.set_xscale("log", base=2)
            xs = sorted({p[0] for pts in lines.values() for p in pts})
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.minorticks_off()
        ax.set_title(panel)
        ax.set_xlabel(xlabel)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes:
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(ylabel)
    axes[0].legend(fontsize=8, title="positional")
    n = max(p[3] for lines in panels.values() for pts in lines.values() for p in pts)
    page.save(fig, name, title, f"{caption} Mean and std over up to {n} tasks (seeds) per encoding.")


def sweep_page(page: Page, sweep: SweepRecord) -> None:
    if ENCODING in sweep.swept:
        encoding_panels(page, sweep_length(sweep), "length_generalisation_by_encoding",
                        "Accuracy against the test length, per positional encoding", "accuracy (full model)",
                        "test length (tokens)", "'beyond': in-context pairs only past T_train.", log2=True)
        encoding_panels(page, sweep_rates(sweep), "hijack_by_encoding", "Hijack: how often o wins, per positional encoding",
                        "o wins (fraction)", "in-context pairs (q, o)", "Full model; above 0.5 the context wins.", log2=False)
        rows = [{ENCODING.rsplit(".", 1)[-1]: sweep.point(t).get(ENCODING), "task": t, "test length": length, **m}
                for t, run in sweep.runs.items() for length, m in (probe(run.summary).get("prev_token") or {}).items()]
        if rows:
            page.table("Layer 1's previous-token attention per task (inside / beyond T_train)",
                       [{k: v for k, v in r.items() if k != "profile"} for r in rows])
    fits = [{"task": t, **{k: sweep.point(t).get(k) for k in sweep.keys}, **fit_row(name, f)}
            for t, run in sweep.runs.items() for name, f in theory_fits(run.summary).items()]
    if fits:
        page.table("Hijack theory fit per task (logit(o) - logit(b) = w_ic a(n, T) - w_g)", fits)


# --- W&B report panels -------------------------------------------------------------------------------------------

def _length_keys(summary: dict, variant: str) -> list[str]:
    return [eval_key("val", variant, "acc", s["name"]) for s in test_sets(summary) if s["placement"] != "main"]


def run_panels(run: RunRecord) -> list[dict]:
    out = [{"kind": "bar", "title": f"accuracy by test set, {v}", "y": _length_keys(run.summary, v)}
           for v in ordered(run.summary.get("variants") or {})]
    prev = [prev_token_key(t, k) for t in probe(run.summary).get("prev_token") or {} for k in ("inside", "beyond")]
    index = probe(run.summary).get("prev_token_layer", 0)
    return out + ([{"kind": "bar", "title": f"layer {index + 1} (layers.{index}) previous-token attention", "y": prev}]
                  if prev else []) + memory.wandb_panels(run)


def sweep_panels(sweep: SweepRecord) -> list[dict]:
    first = next(iter(sweep.runs.values()), None)
    if first is None or ENCODING not in sweep.swept:
        return []
    prev = [prev_token_key(t, "beyond") for t in probe(first.summary).get("prev_token") or {}]
    return [{"kind": "bar", "title": "accuracy by test set, per encoding", "y": _length_keys(first.summary, FULL),
             "groupby": f"config.{ENCODING}"}] + (
        [{"kind": "bar", "title": "previous-token attention beyond T_train, per encoding", "y": prev,
          "groupby": f"config.{ENCODING}"}] if prev else [])


register(ReportKind(KNOWLEDGE_HIJACK, "Knowledge hijack and length generalisation", run_page, sweep_page, run_panels, sweep_panels))
