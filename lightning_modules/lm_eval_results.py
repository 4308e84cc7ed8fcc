"""Reading lm-evaluation-harness's GSM8K output: the scores its filters and metric computed, per document and overall.

Nothing is re-scored here: exact match, its standard error and each document's extracted answer are the harness's
own (``simple_evaluate(..., log_samples=True)``); this module only renames them and compares variants.
"""
from __future__ import annotations

from typing import Any

FILTERS = {"strict": "strict-match", "flexible": "flexible-extract"}  # gsm8k_cot's two answer extractions


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) else None  # the harness writes "N/A" for an undefined stderr


def scores(results: dict, task: str) -> dict[str, float | None]:
    """``em_strict``, ``em_strict_stderr``, ``em_flexible``, ``em_flexible_stderr`` and ``n_docs`` of one task."""
    row = results["results"][task]
    out: dict[str, float | None] = {}
    for short, name in FILTERS.items():
        out[f"em_{short}"] = _number(row[f"exact_match,{name}"])
        out[f"em_{short}_stderr"] = _number(row.get(f"exact_match_stderr,{name}"))
    out["n_docs"] = float(len({s["doc_id"] for s in results["samples"][task]}))
    return out


def documents(results: dict, task: str) -> dict[int, dict[str, Any]]:
    """{doc_id: question, target, the prompt the model was given, its generation, and per filter the extracted
    answer and whether it is correct}."""
    out: dict[int, dict[str, Any]] = {}
    short = {v: k for k, v in FILTERS.items()}
    for s in results["samples"][task]:
        rec = out.setdefault(s["doc_id"], {"doc_id": s["doc_id"], "question": s["doc"].get("question"),
                                           "target": s["target"], "generation": s["resps"][0][0],
                                           "prompt": s["arguments"][0][0]})  # as the model saw it (chat template too)
        f = short.get(s["filter"], s["filter"])
        rec[f"extracted_{f}"] = s["filtered_resps"][0]
        rec[f"correct_{f}"] = bool(s["exact_match"])
    return out


def flips(full: dict[int, dict], variant: dict[int, dict], short: str) -> dict[str, int]:
    """How many documents the variant turns from right to wrong and from wrong to right, against the full model."""
    key = f"correct_{short}"
    common = full.keys() & variant.keys()
    return {f"right_to_wrong_{short}": sum(full[d][key] and not variant[d][key] for d in common),
            f"wrong_to_right_{short}": sum(variant[d][key] and not full[d][key] for d in common)}
