"""Direct logit attribution: a logit (or a difference of two) split into what each part of the residual stream adds.

Without LayerNorm the final residual stream is exactly the sum of the embedding path (token embedding plus input
positions) and every attention and feed-forward output, and the logits are linear in it: the parts sum to the total
(up to float rounding). Serves the noisy-recall task (noise vs in-context token) and the knowledge-hijack study
(in-context answer vs the global bigram answer) alike.
"""
from __future__ import annotations

import torch
from torch import nn


Traced = tuple[torch.Tensor, dict[str, torch.Tensor], list[torch.Tensor]]


@torch.no_grad()
def traced_forward(net: nn.Module, tokens: torch.Tensor) -> Traced:
    """One forward pass: the logits; the residual-stream parts {"embed": x_0, "layers.<i>.attn": ..., "layers.<i>.ff":
    ...}, each (B, T, dim), summing to the last stream (without LayerNorm); and the input each attention saw. The
    probes that need several of these read them from the same pass."""
    parts: dict[str, torch.Tensor] = {}
    inputs: list[torch.Tensor] = []
    hooks = [net.layers[0].register_forward_pre_hook(lambda m, args: parts.__setitem__("embed", args[0]))]
    for i, layer in enumerate(net.layers):
        hooks.append(layer.attn.register_forward_pre_hook(lambda m, args: inputs.append(args[0])))
        hooks.append(layer.attn.register_forward_hook(lambda m, a, out, i=i: parts.__setitem__(f"layers.{i}.attn", out)))
        if layer.ff is not None:
            hooks.append(layer.ff.register_forward_hook(lambda m, a, out, i=i: parts.__setitem__(f"layers.{i}.ff", out)))
    try:
        logits = net(tokens)
    finally:
        for h in hooks:
            h.remove()
    return logits, parts, inputs


@torch.no_grad()
def forward_with_attention(net: nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The logits and each layer's (B, T, T) attention pattern (mean over heads), from one forward pass: the
    patterns are recomputed from the inputs each attention saw."""
    logits, _, inputs = traced_forward(net, tokens)
    return logits, [layer.attn.probabilities(x).mean(1) for layer, x in zip(net.layers, inputs)]


def attention_patterns(net: nn.Module, tokens: torch.Tensor) -> list[torch.Tensor]:
    return forward_with_attention(net, tokens)[1]


def _exact_only_without_layer_norm(net: nn.Module) -> None:
    if getattr(net.cfg, "layer_norm", False):
        raise ValueError("logit attribution is exact only without LayerNorm (model.layer_norm: false)")


@torch.no_grad()
def residual_parts(net: nn.Module, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"embed": x_0, "layers.<i>.attn": ..., "layers.<i>.ff": ...}, each (B, T, dim), summing to the last stream."""
    _exact_only_without_layer_norm(net)
    return traced_forward(net, tokens)[1]


@torch.no_grad()
def logit_split(net: nn.Module, tokens: torch.Tensor, token_a: torch.Tensor, token_b: torch.Tensor | None = None,
                position: int = -1, traced: Traced | None = None) -> dict[str, torch.Tensor]:
    """Per sequence (B,), each part's contribution to logit(a) - logit(b) at ``position`` (logit(a) if no b), and
    ``total``, the model's own value from the same pass. ``token_a``/``token_b``: (B,) token ids. ``traced``: a
    ``traced_forward(net, tokens)`` already run (no second pass)."""
    _exact_only_without_layer_norm(net)
    logits, parts, _ = traced if traced is not None else traced_forward(net, tokens)
    direction = net.unemb[token_a] - (net.unemb[token_b] if token_b is not None else 0)  # (B, dim)
    out = {name: (x[:, position] * direction).sum(-1) for name, x in parts.items()}
    logits = logits[:, position]
    rows = torch.arange(len(token_a), device=logits.device)
    out["total"] = logits[rows, token_a] - (logits[rows, token_b] if token_b is not None else 0)
    return out
