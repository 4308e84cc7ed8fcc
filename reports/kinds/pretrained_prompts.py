"""A pretrained causal LM on IOI and factual prompts (Chen, Bruna & Bietti, Sec. 5): P(answer) against P(" the"),
with and without LASER. Run page: the results per variant, the choice on the selection split, bars per prompt type.
Sweep page: the metrics against the checkpoint's training step (a revision sweep) or each swept key, and the
selected variant per setting."""
from __future__ import annotations

import re

import numpy as np

from reports import series, table
from reports.kinds import ReportKind, SweepRecord, register
from reports.page import Page
from reports.run import RunRecord, declared_records
from reports.style import METRIC_LABELS, PAGE_WIDTH_IN, ordered, plt
from run_record.kinds import PRETRAINED_PROMPTS
from run_record.names import FULL, PROMPT_METRICS, PROMPT_PLOTTED, eval_key, split_eval_key, split_prompt_group

REVISION = "model.init_args.revision"


def prompt_type_bars(summary: dict, metric: str) -> dict[str, dict[str, float]]:
    """{variant: {prompt type: metric}} from ``test/<variant>:<type>/<metric>``."""
    out: dict[str, dict[str, float]] = {}
    for key, value in (summary.get("metrics") or {}).items():
        parts = split_eval_key(key)
        if parts and parts[2] == metric and isinstance(value, (int, float)):
            variant, group = split_prompt_group(parts[1])
            if group:
                out.setdefault(variant, {})[group] = value
    return out


def revision_step(revision) -> int | None:
    """Pythia's ``step<N>`` revisions as training steps (``main`` is the last, 143000)."""
    if revision == "main":
        return 143000
    m = re.fullmatch(r"step(\d+)", str(revision or ""))
    return int(m.group(1)) if m else None


def overall(summary: dict) -> dict[str, dict]:
    """The variants' metrics over all prompts (not per prompt type)."""
    return {v: m for v, m in (summary.get("variants") or {}).items() if split_prompt_group(v)[1] is None}


def search_deltas(summary: dict, metric: str = "log_ratio") -> dict[str, dict[tuple, tuple[float | None, float | None]]]:
    """{matrix role: {(layers, rho): (selection delta, test delta)}}: each search-grid variant's ``metric`` minus the
    full model's, on the selection and the test split (from the declared grid: no variant name is parsed)."""
    variants = overall(summary)
    full = variants.get(FULL) or {}
    key = f"{metric}@selection"
    out: dict[str, dict[tuple, tuple[float | None, float | None]]] = {}
    for cell in (summary.get("results") or {}).get("search_grid") or []:
        row = variants.get(cell["variant"]) or {}
        delta = lambda k: row[k] - full[k] if isinstance(row.get(k), float) and isinstance(full.get(k), float) else None  # noqa: E731
        out.setdefault(cell["matrix"], {})[(str(cell["layers"]), cell["rho"])] = (delta(key), delta(metric))
    return out


def search_figure(page: Page, run: RunRecord) -> None:
    deltas = search_deltas(run.summary)
    if not deltas:
        return None
    results = run.summary.get("results") or {}
    grid, selection = results.get("search_grid") or [], results.get("selection") or {}
    chosen = selection.get("selected")
    chosen_cell = next((c for c in grid if c["variant"] == chosen), None)
    layers = list(dict.fromkeys(str(c["layers"]) for c in grid))
    rhos = sorted({c["rho"] for c in grid})
    # grid points that were not candidates: they lost more P(answer) on the selection split than select_keeping allows
    variants, keeping = overall(run.summary), selection.get("keeping") or 0.0
    floor = keeping * ((variants.get(FULL) or {}).get("p_answer@selection") or 0.0)
    dropped = {c["variant"] for c in grid if keeping and (variants.get(c["variant"]) or {}).get("p_answer@selection", 1.0) < floor}
    fig, axes = plt.subplots(2, len(deltas), figsize=(PAGE_WIDTH_IN, 5.8), squeeze=False, layout="constrained")
    from matplotlib.colors import TwoSlopeNorm

    found = [v for cells in deltas.values() for pair in cells.values() for v in pair if v is not None]
    # blue above 0, red below, each side its own scale: small gains stay visible next to large losses
    norm = TwoSlopeNorm(vcenter=0.0, vmin=min(min(found, default=-0.1), -0.1), vmax=max(max(found, default=0.1), 0.1))
    for col, (matrix, cells) in enumerate(deltas.items()):
        for row, (split, idx) in enumerate((("selection", 0), ("test", 1))):
            ax = axes[row, col]
            values = np.array([[cells.get((lay, rho), (None, None))[idx] for rho in rhos] for lay in layers], dtype=float)
            im = ax.imshow(values, cmap="RdBu", norm=norm, aspect="auto")
            for (i, j), v in np.ndenumerate(values):
                if not np.isnan(v):
                    cell = next(c["variant"] for c in grid if c["matrix"] == matrix and str(c["layers"]) == layers[i] and c["rho"] == rhos[j])
                    ax.text(j, i, f"{v:+.2f}" + ("\n(lost)" if cell in dropped else ""), ha="center", va="center",
                            fontsize=8, color="dimgray" if cell in dropped else "black")
            if chosen_cell and chosen_cell["matrix"] == matrix:
                i, j = layers.index(str(chosen_cell["layers"])), rhos.index(chosen_cell["rho"])
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2.5))
            ax.set_xticks(range(len(rhos)), [f"{r:g}" for r in rhos])
            ax.set_yticks(range(len(layers)), [f"L{lay}" for lay in layers])
            ax.set_title(f"{matrix}, {split} split")
            if row == 1:
                ax.set_xlabel("rho (kept rank fraction)")
            if col == 0:
                ax.set_ylabel("layers")
    fig.colorbar(im, ax=axes, label='change of log P(answer) / P(" the") vs the full model', shrink=0.8)
    kept = (f" Grey '(lost)': not a candidate, it kept less than {keeping:g} of the full model's P(answer) on the "
            "selection split (the ratio also rises when both probabilities collapse)." if dropped else "")
    page.save(fig, "laser_search", "LASER search on the selection split, reported on the test split",
              f"Blue: the variant raises log P(answer) / P(\" the\") above the full model's; red: lowers it. The box: "
              f"the variant chosen on the selection split ({chosen or 'none'}); the test row is where it is reported.{kept}")


ROLE_COLOURS = {"mlp_in": "tab:blue", "mlp_out": "tab:orange", "attn_out": "tab:green", "attn_q": "tab:purple",
                "attn_k": "tab:brown", "attn_v": "tab:pink"}


def prediction_figure(page: Page, run: RunRecord) -> None:
    """Each variant's change of log P(answer) / P(" the"): predicted from its matrices' singular components (before
    the variant was scored) against measured, on the same split; one panel per method."""
    results = run.summary.get("results") or {}
    pred = results.get("prediction")
    if not pred:
        return None
    role = {c["variant"]: c["matrix"] for c in results.get("search_grid") or []}
    chosen = (results.get("selection") or {}).get("selected")
    methods = [m for m in ("linear", "direct") if pred["n_variants"].get(m, 0) >= 1]
    fig, axes = plt.subplots(1, len(methods), figsize=(PAGE_WIDTH_IN, 4.2), squeeze=False, layout="constrained")
    named = {"linear": "every path, first order", "direct": "direct path (mlp_out, attn_out)"}
    for ax, method in zip(axes.flat, methods):
        points = [(v, e[method], e["measured"]) for v, e in pred["variants"].items() if e[method] is not None]
        for r in dict.fromkeys(role.get(v, "named variant") for v, _, _ in points):
            xs = [(x, y) for v, x, y in points if role.get(v, "named variant") == r]
            ax.scatter(*zip(*xs), s=28, color=ROLE_COLOURS.get(r, "gray"), label=r, zorder=3)
        for v, x, y in points:
            if v == chosen:
                ax.scatter([x], [y], s=140, facecolors="none", edgecolors="black", linewidths=1.8, zorder=4,
                           label="chosen variant")
        lo = min(min(x, y) for _, x, y in points)
        hi = max(max(x, y) for _, x, y in points)
        ax.plot([lo, hi], [lo, hi], color="gray", linestyle=":", linewidth=1, label="predicted = measured")
        ax.axhline(0, color="gray", linewidth=0.6)
        ax.axvline(0, color="gray", linewidth=0.6)
        rho, ci = pred["spearman"].get(method), (pred.get("spearman_ci") or {}).get(method)
        ax.set_title(f"{named[method]}: Spearman {rho:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "")
                     if rho is not None else named[method], fontsize=10)
        ax.set_xlabel("predicted change (sum of removed components)")
        ax.set_ylabel(f"measured change ({pred['split']} split)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    s = pred["seconds"]
    page.save(fig, "prediction", 'LASER variants: predicted from singular directions against measured',
              f'Change of the mean log P(answer) / P(" the") against the full model, per variant, over the same '
              f'{pred["n_prompts"]} prompts of the {pred["split"]} split. The prediction sums, over the matrices a variant '
              "truncates, each removed singular component's effect when removed alone (first order in the components). "
              f"It took {s['attribution']:.1f} s beside {s['svd']:.1f} s of SVDs shared with the search; scoring every "
              f"variant took {s.get('search', float('nan')):.1f} s. Spearman over the variants, 95% interval over "
              "variants resampled. Dotted: where prediction equals measurement.")


def layer_figure(page: Page, run: RunRecord) -> None:
    """Per prompt type, each layer's attention and MLP share of log P(answer) / P(" the") (direct logit attribution),
    for the full model and the chosen variant, as bars stacked on each layer (above 0 and below 0 apart)."""
    results = run.summary.get("results") or {}
    la = results.get("layer_attribution")
    if not la:
        return None
    chosen = (results.get("selection") or {}).get("selected")
    variants = [v for v in ordered(la["variants"]) if v == FULL or v == chosen] or ordered(la["variants"])[:1]
    groups = list(la["n"]) if len(la["n"]) <= 4 else ["all"]  # many prompt types (cells): over all prompts only
    fig, axes = plt.subplots(len(groups), len(variants), figsize=(PAGE_WIDTH_IN, 2.5 * len(groups) + 0.6), squeeze=False,
                             sharex=True, sharey=True, layout="constrained")
    for row, group in enumerate(groups):
        for col, variant in enumerate(variants):
            parts, ax = la["variants"][variant].get(group) or {}, axes[row, col]
            n_layers = 1 + max(int(k.split(".")[1]) for k in parts if k.startswith("layers."))
            x = np.arange(n_layers)
            attn = np.array([parts[f"layers.{i}.attn"] for i in x])
            mlp = np.array([parts[f"layers.{i}.mlp"] for i in x])
            up, down = np.zeros(n_layers), np.zeros(n_layers)
            for values, colour, label in ((attn, "tab:green", "attention output"), (mlp, "tab:orange", "MLP output")):
                bottom = np.where(values >= 0, up, down)
                ax.bar(x, values, bottom=bottom, color=colour, label=label, width=0.8)
                up, down = up + np.clip(values, 0, None), down + np.clip(values, None, 0)
            ax.axhline(0, color="black", linewidth=0.6)
            ax.set_xticks(x[::max(1, n_layers // 10)])
            ax.set_title(f"{group} (n={la['n'][group]}), {'full model' if variant == FULL else variant}: total "
                         f"{parts['total']:+.2f}, embedding {parts['embed']:+.2f}", fontsize=9)
            ax.grid(alpha=0.3, axis="y")
            if col == 0:
                ax.set_ylabel("share of the gap")
            if row == len(groups) - 1:
                ax.set_xlabel("layer")
    axes[0, 0].legend(fontsize=8)
    page.save(fig, "layer_attribution", 'Which layers write log P(answer) / P(" the"): direct logit attribution',
              f'Mean over the {la["split"]} split\'s prompts of each layer\'s attention and MLP output read through the '
              "unembedding difference answer - \" the\" and the final norm at each prompt (its scale frozen). With the "
              "embedding and the norm's bias the parts sum to each prompt's gap (largest deviation "
              f"{la['max_residual']:.1e}). Above 0: toward the answer; below: toward \" the\".")


def hijack_section(page: Page, run: RunRecord) -> None:
    """Knowledge-hijack prompts: the win rate of the counterfactual and the mean logit gap against n, per (k,
    distance) and variant, with the fit's curve, and the boundaries."""
    hj = (run.summary.get("results") or {}).get("hijack")
    if not hj:
        return None
    from lightning_modules.hijack_theory import in_context_mass, on_grid_edge

    variants = ordered(hj["variants"])
    groups = list(dict.fromkeys((b["k"], b["distance"], b["length"]) for b in hj["variants"][variants[0]]["boundaries"]))[:4]
    fig, axes = plt.subplots(2, len(groups), figsize=(PAGE_WIDTH_IN, 6.0), squeeze=False, sharey="row", layout="constrained")
    for col, (k, distance, length) in enumerate(groups):
        for i, variant in enumerate(variants):
            r = hj["variants"][variant]
            style = page.variants.style(variant)
            cells = [c for c in r["cells"] if (c["k"], c["distance"], c["length"]) == (k, distance, length)]
            ns = np.array([c["n"] for c in cells], dtype=float)
            shift = (i - (len(variants) - 1) / 2) * 0.08  # side by side at each n, so the intervals do not overlap
            for row, (key, ci) in enumerate((("win", "win_ci"), ("gap", "gap_ci"))):
                ys = np.array([c[key] for c in cells])
                err = np.array([[c[key] - c[ci][0] for c in cells], [c[ci][1] - c[key] for c in cells]])
                axes[row, col].errorbar(ns + shift, ys, yerr=err, fmt="o", capsize=3, color=style["color"],
                                        label=style["label"], markersize=5)
            f = r.get("fit")
            if f and cells:
                grid = np.linspace(0, max(ns), 50)
                tokens = np.interp(grid, ns, [c["tokens"] for c in cells])
                model = f["w_ic"] * in_context_mass(grid, tokens, f["beta"], np.full_like(grid, k)) - f["w_g"]
                axes[1, col].plot(grid, model, linestyle="--", linewidth=1, color=style["color"])
        where = f"k={k}, {distance} filler sentences" + (f", padded to {length} tokens" if length else "")
        axes[0, col].set_title(where, fontsize=10)
        axes[0, col].axhline(0.5, color="gray", linestyle=":", linewidth=1)
        axes[1, col].axhline(0, color="gray", linewidth=0.6)
        for row in range(2):
            axes[row, col].grid(alpha=0.3)
            axes[row, col].set_xticks(sorted({c["n"] for c in hj["variants"][variants[0]]["cells"]}))
        axes[1, col].set_xlabel("n: statements of B_fake", fontsize=9)
    axes[0, 0].set_ylabel("win rate: P(B_fake) > P(B)")
    axes[1, 0].set_ylabel("logit(B_fake) - logit(B)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(variants), fontsize=8)
    n = sorted({c["prompts"] for v in hj["variants"].values() for c in v["cells"]})
    page.save(fig, "hijack", "Knowledge hijack: a fact against its counterfactual stated in context",
              f"Each point: mean over the {', '.join(map(str, n))} facts of a cell, with its 95% interval over facts "
              "(Wilson's for the win rate, 1.96 standard errors for the gap); points of different variants sit side by side at each n. Dotted: win rate 1/2, "
              "where the boundary n* is read. Dashed: the toy model's fit w_ic (a_o - a_b) - w_g over all cells of "
              "the variant (its curve between the measured n is the formula, not data).")
    rows = []
    for variant in variants:
        r = hj["variants"][variant]
        f = r.get("fit") or {}
        edge = bool(f) and on_grid_edge(f["beta"])
        for b in r["boundaries"]:
            rows.append({"variant": variant, "k": b["k"], "distance": b["distance"], "tokens": b["tokens"],
                         "n* measured": b["measured"], "n* of the fit": b["predicted"], "w_ic": f.get("w_ic"),
                         "w_g": f.get("w_g"), "beta": f"{f['beta']:g}" + (" (grid edge)" if edge else "") if f else None,
                         "R2": f.get("r2")})
    page.table("Knowledge hijack: the boundary n*", rows,
               note="n*: the smallest n whose win rate reaches 1/2 (blank: never, among the n probed). The fit: "
                    "gap = w_ic (a_o - a_b) - w_g with a the attention mass of the toy model's form at the prompt's "
                    "token length; beta on the grid's edge means only w_ic e^beta is determined.")


def run_page(page: Page, run: RunRecord) -> None:
    cis, n = prompt_intervals(run)
    page.table("Next-token probabilities after each prompt",
               series.with_intervals(series.variant_rows(overall(run.summary), PROMPT_METRICS), {"variants": cis}),
               note='P(answer) and P(" the") after the prompt, their log ratio, whether the answer is the argmax and, for '
                    "IOI, logit(IO) - logit(S); one row per variant, the full model first. "
                    + (f"Means over the {n} test prompts; 95% intervals: a percentile bootstrap over prompts "
                       f"({BOOTSTRAP} resamples, predictions.jsonl)." if cis else ""))
    sel = (run.summary.get("results") or {}).get("selection")
    if sel:
        page.table(f"Chosen on the selection split by {sel['by']}: {sel['selected']}",
                   [{"variant": v, f"{sel['by']} (selection)": s, f"{sel['by']} (test)": sel["test"].get(v)}
                    for v, s in sel["selection"].items()], note="Test scores play no part in the choice.")
    examples(page, run)
    search_figure(page, run)
    prediction_figure(page, run)
    layer_figure(page, run)
    hijack_section(page, run)
    metrics = [m for m in PROMPT_PLOTTED if prompt_type_bars(run.summary, m)]
    if not metrics:
        return page.skip("Per prompt type", "the run has no per-prompt-type metrics")
    if (run.summary.get("results") or {}).get("hijack"):
        return None  # its prompt types are the hijack cells, drawn above
    grid = {c["variant"] for c in (run.summary.get("results") or {}).get("search_grid") or []}
    keep = {FULL, ((run.summary.get("results") or {}).get("selection") or {}).get("selected")}
    fig, axes = plt.subplots(1, len(metrics), figsize=(PAGE_WIDTH_IN, 3.6), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        # a search's grid points are in the figure above: here the full model, the choice and the named variants
        bars = {v: b for v, b in prompt_type_bars(run.summary, metric).items() if v not in grid or v in keep}
        kinds = list(dict.fromkeys(k for v in bars.values() for k in v))
        width = 0.8 / len(bars)
        for i, variant in enumerate(ordered(bars)):
            style = page.variants.style(variant)
            ax.bar(np.arange(len(kinds)) + i * width, [bars[variant].get(k, np.nan) for k in kinds], width,
                   color=style["color"], label=style["label"])
        ax.set_xticks(np.arange(len(kinds)) + 0.4 - width / 2, kinds, rotation=20, fontsize=8)
        ax.set_ylabel(METRIC_LABELS[metric])
        ax.grid(alpha=0.3, axis="y")
    axes.flat[0].legend(fontsize=8)
    page.save(fig, "prompt_types", "Per prompt type, per variant", 'The answer against the generic token " the". '
              "The paper: LASER on late FF layers raises P(answer) / P(\" the\") in Pythia.")


def _top(scores: dict) -> str:
    return ", ".join(f"{token!r} {p:.3g}" for token, p in scores.get("top") or [])


BOOTSTRAP = 2000  # resamples of the prompts for an interval


def prompt_intervals(run: RunRecord, metrics: tuple[str, ...] = ("p_answer", "log_ratio")) -> tuple[dict, int]:
    """({variant: {metric: [low, high]}}, n): 95% percentile-bootstrap intervals of each variant's mean over the test
    prompts (predictions.jsonl; the prompts resampled together for every variant), and n."""
    records = [r for r in declared_records(run, (run.summary.get("results") or {}).get("predictions")) or []
               if r.get("split") == "test"]
    if len(records) < 2:
        return {}, len(records)
    draws = np.random.default_rng(0).integers(0, len(records), size=(BOOTSTRAP, len(records)))
    out: dict[str, dict[str, list[float]]] = {}
    for variant in records[0]["variants"]:
        for metric in metrics:
            values = np.array([r["variants"].get(variant, {}).get(metric, np.nan) for r in records], dtype=float)
            if np.isfinite(values).all():
                means = values[draws].mean(1)
                out.setdefault(variant, {})[metric] = [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]
    return out, len(records)


def example_prompts(run: RunRecord, variant: str, n: int = 6) -> list[dict]:
    """Up to ``n`` test prompts where ``variant`` moves the prediction most: a changed argmax first, then the largest
    change of log P(answer) / P(" the"); each with both models' top tokens (predictions.jsonl)."""
    records = declared_records(run, (run.summary.get("results") or {}).get("predictions")) or []
    pairs = [(r, r["variants"][FULL], r["variants"][variant]) for r in records
             if r.get("split") == "test" and FULL in r["variants"] and variant in r["variants"]]
    pairs.sort(key=lambda x: (x[1]["argmax"] == x[2]["argmax"], -abs(x[2]["log_ratio"] - x[1]["log_ratio"])))
    return [{"prompt": ("…" + r["prompt"][-70:]) if len(r["prompt"]) > 70 else r["prompt"], "answer": repr(r["answer"]),
             "full model: top 3": _top(full), f"{variant}: top 3": _top(v),
             "P(answer), full → variant": f"{full['p_answer']:.3f} → {v['p_answer']:.3f}"} for r, full, v in pairs[:n]]


def examples(page: Page, run: RunRecord) -> None:
    """A few prompts with the full model's and the chosen (or first named) variant's next tokens."""
    results = run.summary.get("results") or {}
    variant = (results.get("selection") or {}).get("selected") or next((v for v in ordered(overall(run.summary)) if v != FULL), None)
    rows = example_prompts(run, variant) if variant and variant != FULL else []
    if rows:
        page.table(f"Examples: the full model against {variant}", rows,
                   note="Test prompts where the variant changes the prediction most (a changed top token first), with "
                        "each model's three most probable next tokens and their probabilities (predictions.jsonl holds "
                        "every prompt).")


def same_weights_table(page: Page, sweep: SweepRecord) -> None:
    """Tasks whose weights' fingerprint equals another task's that asked for another checkpoint (table.py)."""
    twins = {r["task"]: r for r in sweep.rows if r.get("same_weights_as")}
    if twins:
        page.table("Warning: checkpoints with the same weights",
                   [{"task": t, **{k.rsplit(".", 1)[-1]: r.get(k) for k in table.CHECKPOINT_KEYS if k in r},
                     "fingerprint": r["fingerprint"], "same weights as": r["same_weights_as"]} for t, r in sorted(twins.items())],
                   note="These tasks asked for different checkpoints and loaded identical weights (a digest of every "
                        "tensor's sampled values, summary.json model.fingerprint): their points below are one model "
                        "drawn more than once. Some Pythia branches serve the final checkpoint's weights.")


def layers_by_checkpoint(page: Page, sweep: SweepRecord) -> None:
    """A revision sweep: each layer's attention and MLP share of the gap (full model, all prompts) per checkpoint, and
    their sums, against the training step."""
    if REVISION not in sweep.swept:
        return None
    found = {}
    for task, run in sweep.runs.items():
        la = ((run.summary.get("results") or {}).get("layer_attribution") or {}).get("variants", {}).get(FULL, {}).get("all")
        step = revision_step(sweep.point(task).get(REVISION))
        if la and step is not None:
            found.setdefault(step, []).append(la)
    if not found:
        return None
    steps = sorted(found)
    n_layers = 1 + max(int(k.split(".")[1]) for k in found[steps[0]][0] if k.startswith("layers."))
    mean = lambda step, key: float(np.mean([la[key] for la in found[step]]))  # noqa: E731 (over seeds, if any)
    fig, axes = plt.subplots(1, 3, figsize=(PAGE_WIDTH_IN, 3.8), layout="constrained")
    for ax, part in zip(axes[:2], ("attn", "mlp")):
        grid = np.array([[mean(step, f"layers.{i}.{part}") for step in steps] for i in range(n_layers)])
        bound = max(float(np.abs(grid).max()), 1e-9)
        im = ax.imshow(grid, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto", origin="lower")
        ax.set_xticks(range(len(steps)), [str(s) for s in steps], rotation=60, fontsize=7)
        ax.set_yticks(range(0, n_layers, max(1, n_layers // 10)))
        ax.set_xlabel("checkpoint (training step)")
        ax.set_ylabel("layer")
        ax.set_title(f"{'attention' if part == 'attn' else 'MLP'} output, per layer", fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.8)
    ax = axes[2]
    for part, colour, label in (("attn", "tab:green", "attention, all layers"), ("mlp", "tab:orange", "MLP, all layers"),
                                ("total", "black", "the gap")):
        ys = [mean(step, part) if part == "total" else sum(mean(step, f"layers.{i}.{part}") for i in range(n_layers))
              for step in steps]
        ax.scatter([max(step, 1) for step in steps], ys, color=colour, label=label, s=20)
    ax.set_xscale("log")
    ax.axhline(0, color="gray", linewidth=0.6)
    ax.set_xlabel("training step (log; step0 at 1)")
    ax.set_ylabel('share of log P(answer) / P(" the")')
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    n = ", ".join(str(k) for k in sorted({len(v) for v in found.values()}))
    page.save(fig, "layers_by_checkpoint", "Which layers write the answer and which \" the\", by checkpoint",
              "Direct logit attribution of the full model's log P(answer) / P(\" the\") on the test split, mean over its "
              f"prompts, averaged over the runs of each checkpoint ({n}). Blue: toward the answer; red: toward \" the\".")


def sweep_page(page: Page, sweep: SweepRecord) -> None:
    same_weights_table(page, sweep)
    every = [r for r in sweep.rows if split_prompt_group(r.get("variant") or "")[1] is None]  # over all prompts
    for key in sweep.swept:
        steps = {r["task"]: revision_step(r.get(key)) for r in every} if key == REVISION else {}
        rows = [r | {"_x": steps[r["task"]]} for r in every if steps.get(r["task"]) is not None] if steps else every
        x = "_x" if steps else key
        metrics = [m for m in PROMPT_PLOTTED if any(isinstance(r.get(m), float) for r in rows)]
        if not metrics:
            continue
        fig, axes = plt.subplots(1, len(metrics), figsize=(PAGE_WIDTH_IN, 3.6), squeeze=False)
        for ax, metric in zip(axes.flat, metrics):
            for variant, points in series.final_vs_key(rows, x, metric).items():
                xs = [max(p[0], 1) if steps else p[0] for p in points]
                numeric = all(isinstance(v, (int, float)) for v in xs)
                ax.errorbar(xs if numeric else range(len(xs)), [p[1] for p in points], yerr=[p[2] for p in points],
                            marker="o", capsize=3, **page.variants.style(variant))
                if not numeric:
                    ax.set_xticks(range(len(xs)), [str(v) for v in xs], rotation=30, fontsize=8)
            if steps:
                ax.set_xscale("log")
            ax.set_xlabel("training step of the checkpoint (log; step0 at 1)" if steps else key.rsplit(".", 1)[-1])
            ax.set_ylabel(METRIC_LABELS[metric])
            ax.grid(alpha=0.3)
        axes.flat[0].legend(fontsize=8)
        name = "revisions" if steps else f"final_vs_{key.replace('.', '_')}"
        page.save(fig, name, f"The answer against the generic token, by {'checkpoint' if steps else key}",
                  "One line per variant, the full model in black; mean and std over seeds.")
    layers_by_checkpoint(page, sweep)
    choice = table.selected(sweep.rows, sweep.keys, sweep.protocols)
    if choice:
        page.table("Selected LASER variant per setting (chosen on the selection split, reported on test)", choice)


def run_panels(run: RunRecord) -> list[dict]:
    variants = ordered(overall(run.summary))
    return [{"kind": "bar", "title": f"{m} per variant", "y": [eval_key("test", v, m) for v in variants]} for m in PROMPT_PLOTTED]


def sweep_panels(sweep: SweepRecord) -> list[dict]:
    variants = ordered(dict.fromkeys(r["variant"] for r in sweep.rows if r.get("variant") and split_prompt_group(r["variant"])[1] is None))
    return [{"kind": "bar", "title": f"{m} by {key}, per variant", "y": [eval_key("test", v, m) for v in variants],
             "groupby": f"config.{key}"} for key in sweep.swept for m in PROMPT_PLOTTED]


register(ReportKind(PRETRAINED_PROMPTS, "Pretrained model on prompt sets", run_page, sweep_page, run_panels, sweep_panels))
