"""Knowledge hijack on a pretrained LM, summarised per cell (n, k, distance, length) of ``datamodules/fact_hijack.py``:
P(B_fake), P(B), the win rate (P(B_fake) > P(B)), the mean logit gap (each with a 95% interval over the cell's facts:
Wilson's for the win rate, 1.96 standard errors for the means), the boundary n* (the smallest n whose win rate
reaches 1/2, ``hijack_theory.measured_boundary``, the toy model's one function) and the toy model's logit-gap fit
(``hijack_theory.fit``, with T the prompts' token length and no attention measurement)."""
from __future__ import annotations

import math
from typing import Any

from lightning_modules.hijack_theory import Point, fit, measured_boundary
from lightning_modules.metrics import wilson_interval


def _interval(values: list[float]) -> list[float]:
    """95% normal interval of a mean (1.96 standard errors); a zero-width interval for one value."""
    m = sum(values) / len(values)
    if len(values) < 2:
        return [m, m]
    se = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1) / len(values))
    return [m - 1.96 * se, m + 1.96 * se]


def _wilson(wins: list[float]) -> list[float]:
    """95% Wilson score interval of a win rate (stays inside [0, 1], unlike a normal interval at 0 or 1 wins)."""
    return wilson_interval(sum(wins) / len(wins), len(wins))


def hijack_results(rows: list[dict], scores: dict[int, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """``rows``: the test split's prompts (with n, k, distance, length, tokens); ``scores``: row -> variant ->
    {"p_answer", "logit_diff"} (P(B_fake), logit(B_fake) - logit(B)). Per variant: the cells, the boundaries per
    (k, distance, length) and the fit."""
    variants = list(dict.fromkeys(v for by_variant in scores.values() for v in by_variant))
    out: dict[str, Any] = {"answer": "B_fake (in context)", "competitor": "B (the fact)", "win": "P(B_fake) > P(B)",
                           "variants": {}}
    for variant in variants:
        cells: dict[tuple, list[tuple[dict, dict]]] = {}
        for i, row in enumerate(rows):
            s = scores.get(i, {}).get(variant)
            if s is not None and s.get("logit_diff") is not None:
                cells.setdefault((row["n"], row["k"], row["distance"], row["length"]), []).append((row, s))
        table = []
        for (n, k, distance, length), members in sorted(cells.items()):
            gaps = [s["logit_diff"] for _, s in members]
            p_fake = [s["p_answer"] for _, s in members]
            p_true = [s["p_answer"] * math.exp(-s["logit_diff"]) for _, s in members]  # P(B) = P(B_fake) / e^gap
            wins = [float(g > 0) for g in gaps]
            table.append({"n": n, "k": k, "distance": distance, "length": length, "prompts": len(members),
                          "tokens": sum(r["tokens"] for r, _ in members) / len(members),
                          "p_fake": sum(p_fake) / len(p_fake), "p_fake_ci": _interval(p_fake),
                          "p_true": sum(p_true) / len(p_true), "p_true_ci": _interval(p_true),
                          "win": sum(wins) / len(wins), "win_ci": _wilson(wins),
                          "gap": sum(gaps) / len(gaps), "gap_ci": _interval(gaps)})
        points = [Point(c["n"], round(c["tokens"]), c["gap"], 0.0, c["k"]) for c in table]
        fitted = fit(points)
        boundaries = []
        for k, distance, length in dict.fromkeys((c["k"], c["distance"], c["length"]) for c in table):
            same = [c for c in table if (c["k"], c["distance"], c["length"]) == (k, distance, length)]
            tokens = sum(c["tokens"] for c in same) / len(same)
            predicted = fitted.boundary(round(tokens), k) if fitted else None
            boundaries.append({"k": k, "distance": distance, "length": length, "tokens": tokens,
                               "measured": measured_boundary({c["n"]: c["win"] for c in same}),
                               "predicted": predicted})
        out["variants"][variant] = {
            "cells": table, "boundaries": boundaries,
            "fit": None if fitted is None else {"w_ic": fitted.w_ic, "w_g": fitted.w_g, "beta": fitted.beta,
                                                "r2": fitted.r2, "n_points": fitted.n_points}}
    return out
