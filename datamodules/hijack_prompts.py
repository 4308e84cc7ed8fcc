"""Designed knowledge-hijack prompts (Wang & Sato, 2412.11459): the in-context answer against the global one.

A prompt ends in a trigger q whose global bigram answer is b = argmax pi(. | q) (q itself excluded). Its context holds n pairs (q, o)
with an in-context answer o != b, and m pairs (q, b); everything else is the bigram chain with q kept out. The pairs
sit ``early`` (first half), ``late`` (second half) or ``beyond`` (at or after ``t_train``). Which answer the model
gives after the final q says whether the context or the global knowledge wins.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from datamodules.bigram import BigramModel
from datamodules.generator import NoisyRecallGenerator
from lightning_modules.attribution import Traced, traced_forward

PLACEMENTS = ("early", "late", "beyond")


@dataclass
class HijackPrompts:
    tokens: torch.Tensor  # (P, L), each ending in q
    q: torch.Tensor  # (P,)
    o: torch.Tensor  # (P,) the in-context answer
    b: torch.Tensor  # (P,) the global answer
    pair_starts: list[list[int]]  # per prompt, the positions of the pairs' q (in-context pairs first)
    n_pairs: int = 0  # how many of them are (q, o) pairs; the rest are (q, b)


def pair_slots(length: int, placement: str, t_train: int | None = None) -> range:
    """The positions a pair (q, answer) may start at in a ``length``-token prompt: how many pairs fit."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    if placement == "beyond" and t_train is None:
        raise ValueError("placement 'beyond' needs t_train")
    lo, hi = {"early": (0, (length - 1) // 2), "late": ((length - 1) // 2, length - 2),
              "beyond": (t_train or 0, length - 2)}[placement]
    return range(lo, hi, 2)  # a pair takes positions (p, p + 1); even offsets never overlap


def build(bigram: BigramModel, n_pairs: int, length: int, placement: str = "late", n_global: int = 0,
          t_train: int | None = None, n_prompts: int = 64, seed: int = 0) -> HijackPrompts:
    """``n_prompts`` prompts of ``length`` tokens with exactly ``n_pairs`` (q, o) and ``n_global`` (q, b) pairs."""
    slots = list(pair_slots(length, placement, t_train))
    if n_pairs + n_global > len(slots):
        raise ValueError(f"{n_pairs + n_global} pairs do not fit in the {len(slots)} pair slots ({placement}) of a "
                         f"{length}-token prompt")
    g = torch.Generator().manual_seed(seed)
    v = bigram.vocab_size
    best = bigram.transitions.argmax(-1)
    # q: drawn by frequency among tokens whose global answer is another token (a (q, q) pair would be ambiguous)
    weights = bigram.marginal * (best != torch.arange(v))
    q = torch.multinomial(weights.expand(n_prompts, -1), 1, generator=g)[:, 0]
    b = best[q]
    o = torch.randint(v, (n_prompts,), generator=g)
    while ((o == q) | (o == b)).any():  # the in-context answer is neither the trigger nor the global answer
        bad = (o == q) | (o == b)
        o[bad] = torch.randint(v, (int(bad.sum()),), generator=g)
    # filler: the chain with each prompt's q kept out everywhere (the generator's trigger-free sampling)
    gen = NoisyRecallGenerator(bigram, seq_len=length - 1, alpha=0.0, trigger_mode="fixed")
    gen.fixed_triggers = q[:, None]  # one "trigger" per prompt: its q
    tokens = gen.sample(n_prompts, g, trigger_free_prefix=length)["tokens"][:, :length].clone()
    starts = []
    for i in range(n_prompts):
        chosen = sorted(torch.randperm(len(slots), generator=g)[: n_pairs + n_global].tolist())
        chosen = [slots[c] for c in chosen]
        kinds = torch.randperm(len(chosen), generator=g).tolist()  # which slots get the in-context answer
        ordered = [chosen[k] for k in kinds]
        for j, p in enumerate(ordered):
            tokens[i, p], tokens[i, p + 1] = q[i], (o[i] if j < n_pairs else b[i])
        tokens[i, -1] = q[i]
        starts.append(ordered)
    return HijackPrompts(tokens, q, o, b, starts, n_pairs)


@torch.no_grad()
def measure(net: torch.nn.Module, prompts: HijackPrompts, traced: Traced | None = None) -> dict[str, float]:
    """P(o), P(b) after the final q, the fraction of prompts where o / b / another token is the argmax, and layer 2's
    (last layer's) attention from the final q to the positions right after earlier q's: all of them, those of the
    (q, o) pairs and those of the (q, b) pairs. ``traced``: a
    ``traced_forward(net, prompts.tokens)`` already run (the probe splits the logit gap from the same pass)."""
    logits, _, inputs = traced if traced is not None else traced_forward(net, prompts.tokens)
    logits = logits[:, -1]
    p = logits.float().softmax(-1)
    rows = torch.arange(len(prompts.q))
    top = logits.argmax(-1)
    pattern = net.layers[-1].attn.probabilities(inputs[-1], query=-1).mean(1)[:, 0]  # (P, L): from the final q
    after_o, after_b = torch.zeros_like(pattern, dtype=torch.bool), torch.zeros_like(pattern, dtype=torch.bool)
    for i, starts in enumerate(prompts.pair_starts):
        after_o[i, [s + 1 for s in starts[: prompts.n_pairs]]] = True
        after_b[i, [s + 1 for s in starts[prompts.n_pairs:]]] = True
    return {
        "p_o": float(p[rows, prompts.o].mean()), "p_b": float(p[rows, prompts.b].mean()),
        "logit_gap": float((logits[rows, prompts.o] - logits[rows, prompts.b]).float().mean()),
        "o_wins": float((top == prompts.o).float().mean()), "b_wins": float((top == prompts.b).float().mean()),
        "other_wins": float(((top != prompts.o) & (top != prompts.b)).float().mean()),
        "attn_after_q": float((pattern * (after_o | after_b)).sum(-1).mean()),
        "attn_after_o": float((pattern * after_o).sum(-1).mean()), "attn_after_b": float((pattern * after_b).sum(-1).mean()),
    }
