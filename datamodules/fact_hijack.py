"""Knowledge-hijack prompts for a pretrained LM (Wang & Sato 2412.11459, asked of a real model): a fact's query
("The capital of France is") preceded by n in-context statements of a counterfactual answer ("The capital of France is
Rome.") and k of the true one, at a controlled distance from the query (filler sentences between the last statement
and the query) and a controlled total length (filler sentences before the statements, up to a token count).

The counterfactual answer is another fact's answer of the same relation, one token like the true one. A prompt's
``answer`` is the counterfactual B_fake (the in-context answer, o in the toy study), its ``competitor`` the true answer
B (the global answer, b): P(answer), P(competitor) and logit(answer) - logit(competitor) are then the hijack's
quantities, scored like any prompt set.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

# neutral sentences, none about a country, a capital, a language or a continent
FILLER = [
    "The weather was mild that morning.", "A dog slept under the old table.", "She poured a cup of tea.",
    "The train left a few minutes late.", "He read the letter twice.", "The shop closed early on Sunday.",
    "Rain tapped softly on the window.", "They painted the fence white.", "The meeting lasted an hour.",
    "A bird sang outside the kitchen.", "The children played in the yard.", "He fixed the broken chair.",
]


@dataclass
class FactHijack:
    """The grid of knowledge-hijack prompts: every fact (up to ``facts_per_cell``) in every cell (n, k, distance,
    length).

    Args:
        n: counterfactual statements (A -> B_fake) in the context.
        k: true statements (A -> B) in the context, shuffled among the n.
        distance: filler sentences between the last statement and the query.
        length: pad the prompt with filler sentences before the statements until it has at least this many tokens
            (None: no padding); the prompt's own length is recorded and is what the fit reads.
        facts_per_cell: facts per cell, drawn once with ``seed`` (the same facts in every cell).
    """

    n: list[int] = field(default_factory=lambda: [0, 1, 2, 4, 8])
    k: list[int] = field(default_factory=lambda: [0])
    distance: list[int] = field(default_factory=lambda: [0])
    length: list[int | None] = field(default_factory=lambda: [None])
    facts_per_cell: int = 24
    seed: int = 0

    def check(self) -> None:
        for name in ("n", "k", "distance"):
            values = getattr(self, name)
            if not values or any(not isinstance(v, int) or v < 0 for v in values):
                raise ValueError(f"data.init_args.hijack.{name} must be a non-empty list of integers >= 0, got {values}")
        if not self.length or any(v is not None and (not isinstance(v, int) or v < 1) for v in self.length):
            raise ValueError(f"data.init_args.hijack.length must list token counts >= 1 or null, got {self.length}")
        if self.facts_per_cell < 1:
            raise ValueError(f"data.init_args.hijack.facts_per_cell must be >= 1, got {self.facts_per_cell}")


def cell_label(n: int, k: int, distance: int, length: int | None) -> str:
    return f"n{n}_k{k}_d{distance}" + (f"_T{length}" if length else "")


def hijack_rows(facts: list[dict[str, str]], spec: FactHijack, n_tokens) -> list[dict]:
    """The prompts of every cell; ``facts``: {"prompt", "answer", "type"} with single-token answers; ``n_tokens``:
    text -> its token count (for the length padding)."""
    spec.check()
    rng = random.Random(spec.seed)
    by_relation: dict[str, list[str]] = {}
    for f in facts:
        by_relation.setdefault(f["type"], [])
        if f["answer"] not in by_relation[f["type"]]:
            by_relation[f["type"]].append(f["answer"])
    usable = [f for f in facts if len(by_relation[f["type"]]) > 1]
    chosen = rng.sample(usable, min(spec.facts_per_cell, len(usable)))
    fakes = [rng.choice([a for a in by_relation[f["type"]] if a != f["answer"]]) for f in chosen]
    rows = []
    for n in spec.n:
        for k in spec.k:
            for distance in spec.distance:
                for length in spec.length:
                    for i, (fact, fake) in enumerate(zip(chosen, fakes)):
                        cell = random.Random(f"{spec.seed}:{n}:{k}:{distance}:{length}:{i}")
                        statements = [fact["prompt"] + fake + "."] * n + [fact["prompt"] + fact["answer"] + "."] * k
                        cell.shuffle(statements)
                        gap = [cell.choice(FILLER) for _ in range(distance)]
                        body = " ".join(statements + gap + [fact["prompt"]])
                        pad: list[str] = []
                        while length and n_tokens(" ".join(pad + [body])) < length:
                            pad.append(cell.choice(FILLER))
                        text = " ".join(pad + [body])
                        rows.append({"prompt": text, "answer": fake, "competitor": fact["answer"],
                                     "type": cell_label(n, k, distance, length), "n": n, "k": k, "distance": distance,
                                     "length": length or 0, "tokens": n_tokens(text), "relation": fact["type"]})
    return rows
