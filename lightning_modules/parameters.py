"""The one place that decides which parameters train, which are frozen, and which start at exactly zero.

``model.trainable`` (names or globs, e.g. ``[layers.0.attn.wk, layers.1.attn.wk, layers.1.attn.wo]``) lists what
trains; every other parameter is frozen (requires_grad False, so not in the optimizer). Without it, everything
trains except the frozen embeddings (``freeze_embeddings``), the unembedding (``freeze_unembedding``) and the random
absolute positions, which are special cases of the same rule. A learned positional encoding's own parameters
(``layers.<i>.attn.pos.bias``, relative positions) always train: they are the encoding. ``model.zero_init`` sets the
named parameters to exactly zero at construction. A pattern that matches no parameter is an error naming it.
"""
from __future__ import annotations

import fnmatch

import torch
from torch import nn

POSITION_PARAMETERS = ("*.attn.pos.*",)  # learned positional encodings: always trained


def match(module: nn.Module, patterns: list[str], field: str) -> set[str]:
    names = [n for n, _ in module.named_parameters()]
    chosen: set[str] = set()
    for pattern in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise ValueError(f"{field}: {pattern!r} matches no parameter; the parameters are: {names}")
        chosen.update(hits)
    return chosen


def default_frozen(cfg) -> set[str]:
    return {"pos_emb"} | ({"tok_emb"} if cfg.freeze_embeddings else set()) | ({"unemb"} if cfg.freeze_unembedding else set())


@torch.no_grad()
def apply_plan(module: nn.Module, cfg) -> None:
    params = dict(module.named_parameters())
    for name in match(module, list(cfg.zero_init), "model.zero_init"):
        params[name].zero_()
    if cfg.trainable is None:
        train = set(params) - default_frozen(cfg)
    else:
        train = match(module, list(cfg.trainable), "model.trainable")
        train |= {n for n in params if any(fnmatch.fnmatchcase(n, p) for p in POSITION_PARAMETERS)}
    for name, p in params.items():
        p.requires_grad_(name in train)


def trainable_names(module: nn.Module) -> list[str]:
    return [n for n, p in module.named_parameters() if p.requires_grad]
