"""Knowledge-hijack prompts for pretrained LMs: what each cell's prompt holds, and the per-cell summary against sums
written out by hand."""
import math

import pytest

from datamodules.fact_hijack import FILLER, FactHijack, hijack_rows
from datamodules.prompt_sources import builtin_facts
from lightning_modules.fact_hijack import hijack_results
from lightning_modules.hijack_theory import Point, fit


def words(text: str) -> int:
    return len(text.split())


def test_each_cell_holds_n_counterfactual_and_k_true_statements_at_its_distance():
    facts = builtin_facts()
    spec = FactHijack(n=[0, 3], k=[0, 2], distance=[0, 2], length=[None, 60], facts_per_cell=5)
    rows = hijack_rows(facts, spec, words)
    assert len(rows) == 2 * 2 * 2 * 2 * 5
    for r in rows:
        query = next(f for f in facts if r["prompt"].endswith(f["prompt"]) and f["answer"] == r["competitor"])
        assert r["answer"] != r["competitor"] and r["relation"] == query["type"]
        # the fake is another fact's answer of the same relation
        assert any(f["answer"] == r["answer"] and f["type"] == query["type"] for f in facts)
        assert r["prompt"].count(query["prompt"] + r["answer"] + ".") == r["n"]
        assert r["prompt"].count(query["prompt"] + r["competitor"] + ".") == r["k"]
        before_query = r["prompt"][: -len(query["prompt"])].strip()
        tail = before_query.split(". ")[-r["distance"]:] if r["distance"] else []
        assert all(s.rstrip(".") + "." in FILLER for s in tail)  # the last `distance` sentences are filler
        assert r["tokens"] == words(r["prompt"]) and (r["length"] == 0 or r["tokens"] >= r["length"] == 60)
    # one fact set for every cell: the cells differ only in what precedes the query
    queries = lambda cell: [r["competitor"] for r in rows if r["type"] == cell]  # noqa: E731
    assert queries("n0_k0_d0") == queries("n3_k2_d2_T60")
    with pytest.raises(ValueError, match="data.init_args.hijack.n must be"):
        hijack_rows(facts, FactHijack(n=[-1]), words)


def test_the_cell_summary_boundary_and_fit_match_hand_sums():
    rows, scores = [], {}
    gaps = {0: [-3.0, -2.0], 1: [-1.0, 0.5], 2: [1.0, 2.0], 4: [2.5, 3.5]}  # (n) -> two prompts' logit gaps
    for n, pair in gaps.items():
        for g in pair:
            scores[len(rows)] = {"full": {"p_answer": 0.2, "logit_diff": g}}
            rows.append({"n": n, "k": 0, "distance": 0, "length": 0, "tokens": 20 + 2 * n})
    out = hijack_results(rows, scores)["variants"]["full"]
    cells = {c["n"]: c for c in out["cells"]}
    assert cells[1]["win"] == 0.5 and cells[0]["win"] == 0.0 and cells[4]["win"] == 1.0
    assert cells[1]["gap"] == pytest.approx(-0.25) and cells[1]["prompts"] == 2 and cells[1]["tokens"] == 22
    assert cells[1]["p_true"] == pytest.approx((0.2 * math.exp(1.0) + 0.2 * math.exp(-0.5)) / 2)
    sd = math.sqrt(((-1.0 + 0.25) ** 2 + (0.5 + 0.25) ** 2) / 1)
    assert cells[1]["gap_ci"] == pytest.approx([-0.25 - 1.96 * sd / math.sqrt(2), -0.25 + 1.96 * sd / math.sqrt(2)])
    (boundary,) = out["boundaries"]
    assert boundary["measured"] == 1  # the first n whose win rate reaches 1/2
    expected = fit([Point(n, 20 + 2 * n, sum(p) / 2, 0.0, 0) for n, p in gaps.items()])
    assert out["fit"]["w_ic"] == pytest.approx(expected.w_ic) and out["fit"]["beta"] == expected.beta
    assert boundary["predicted"] == pytest.approx(expected.boundary(round(boundary["tokens"]), 0))
