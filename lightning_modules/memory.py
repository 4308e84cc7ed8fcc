"""Associative memories read from the weights, and the transformer the theory builds from them.

Both papers state the mechanism as matrices that are sums of outer products (Bietti et al.'s "memory viewpoint";
Wang & Sato 2412.11459, Section 4): a matrix W = sum_i out_i key_i^T "recalls" out_i when queried with key_i. With
e_z the embedding of token z, u_z its unembedding row, p_t the input position t (absolute or sinusoidal), and
hats the dual-normalised vectors (x_hat = x / |x|^2, so x . x_hat = 1), the theory assigns:

- layer 1 (``prev_layer``) key matrix, the positional memory: W_Q^T W_K = sum_{t=1}^{T_train-1} p_hat_t p_hat_{t-1}^T
  (with a relative bias: the bias at offset 1), so position t attends to t - 1;
- layer 2 (``layer``) key matrix, the induction key memory: W_Q^T W_K = sum_z e_hat_z phi_hat_z^T with
  phi_z = W_O^1 W_V^1 e_z, what the previous-token head writes at the position after z;
- layer 2 output map: W_O W_V = sum_z u_hat_z e_hat_z^T, so the attended token is read out as itself;
- the global memory (the last layer's FF, or the output map where there is no FF): sum_z u_hat_{b(z)} e_hat_z^T,
  b(z) = argmax of the data's context-free next-token distribution (``NoisyRecallGenerator.global_next_token``).

A probe queries the learned matrix with the keys the theory assigns and reports the recall (the fraction of keys
whose top score is the theory's answer; ties share the credit, so a zero matrix scores chance) and the cosine
overlap between the learned matrix and the construction. The FF is not one matrix: its linear part on the token
embeddings (the least-squares map from e_z to FF(e_z)) is what is compared. ``construct`` builds a model whose
matrices *are* these constructions, scaled: probe and construction are one set of formulas.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from lightning_modules.transformer import Transformer


def dual(x: torch.Tensor) -> torch.Tensor:
    """Rows x / |x|^2 (x . dual(x) = 1); zero rows stay zero."""
    return x / (x * x).sum(-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def cosine(learned: torch.Tensor, construction: torch.Tensor) -> float | None:
    """Frobenius cosine of two same-shape tensors: 0 for a zero learned matrix (it stores nothing, as at a zero
    initialisation); None when the construction itself is zero."""
    na, nb = learned.norm(), construction.norm()
    if nb == 0:
        return None
    return 0.0 if na == 0 else float((learned * construction).sum() / (na * nb))


def recall(scores: torch.Tensor, target: torch.Tensor, allowed: torch.Tensor | None = None,
           weights: torch.Tensor | None = None) -> float:
    """Mean over rows (weighted by ``weights``) of 1 / #maxima when the target is among the row's maxima, else 0 (so
    a constant row scores chance, 1 / #allowed). ``allowed``: (rows, cols) bool, the keys a row may pick."""
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    top = scores.max(-1, keepdim=True).values
    is_max = scores == top
    credit = is_max.gather(-1, target[:, None])[:, 0].to(scores.dtype) / is_max.sum(-1)
    if weights is None:
        return float(credit.mean())
    w = weights.to(credit)
    return float((credit * w).sum() / w.sum())


def bilinear(attn: nn.Module) -> torch.Tensor:
    """W_Q^T W_K: the score of query vector x and key vector y is x^T M y / sqrt(d_head) (W_Q = I when not learned)."""
    return attn.wk if attn.wq is None else attn.wq.T @ attn.wk


def output_map(attn: nn.Module) -> torch.Tensor:
    """W_O W_V: what an attended residual vector adds to the stream (single head)."""
    return attn.wo @ attn.wv


def global_answers(next_token: torch.Tensor) -> torch.Tensor:
    """b(z): the most likely next token after z (z itself excluded, as the hijack prompts do)."""
    p = next_token.clone()
    p.fill_diagonal_(-1.0)
    return p.argmax(-1)


# --- the constructions: one formula each, used by the probes and by ``construct`` ----------------------------------

def positional_construction(positions: torch.Tensor, t_train: int) -> torch.Tensor:
    """sum_{t=1}^{T_train-1} p_hat_t p_hat_{t-1}^T (d, d)."""
    p = dual(positions[:t_train])
    return p[1:].T @ p[:-1]


def relative_construction(max_distance: int, like: torch.Tensor) -> torch.Tensor:
    """The relative bias that attends to offset 1: the indicator of offset 1."""
    out = torch.zeros(max_distance + 1, dtype=like.dtype, device=like.device)
    out[1] = 1.0
    return out


def token_keys(net: Transformer, prev_layer: int) -> torch.Tensor:
    """phi_z = W_O W_V e_z of the previous-token layer, (V, d): the key it writes at the position after token z."""
    return net.tok_emb @ output_map(net.layers[prev_layer].attn).T


def induction_construction(net: Transformer, prev_layer: int) -> torch.Tensor:
    """sum_z e_hat_z phi_hat_z^T (d, d)."""
    return dual(net.tok_emb).T @ dual(token_keys(net, prev_layer))


def output_construction(net: Transformer) -> torch.Tensor:
    """sum_z u_hat_z e_hat_z^T (d, d)."""
    return dual(net.unemb).T @ dual(net.tok_emb)


def global_construction(net: Transformer, answers: torch.Tensor) -> torch.Tensor:
    """sum_z u_hat_{b(z)} e_hat_z^T (d, d)."""
    return dual(net.unemb)[answers].T @ dual(net.tok_emb)


# --- the probes ---------------------------------------------------------------------------------------------------

@torch.no_grad()
def positional_memory(net: Transformer, layer: int, t_train: int, length: int) -> dict[str, float | None]:
    """Recall of the previous position from layer ``layer``'s attention on positions alone (queries and keys are
    the mean token embedding plus the input position, through the layer's own score code, so a relative bias, ALiBi
    or RoPE act as in a forward): ``inside`` over queries 1 .. T_train - 1, ``beyond`` over T_train .. length - 1.
    ``overlap``: W_Q^T W_K against the positional construction (absolute, sinusoidal), or the relative bias against
    offset 1; None for encodings with no such matrix (RoPE, ALiBi, none)."""
    attn = net.layers[layer].attn
    if net.cfg.max_len is not None:
        length = min(length, net.cfg.max_len)
    mean = net.tok_emb.mean(0)
    positions = net.input_positions(length, mean)
    x = mean.expand(length, -1) + (positions if positions is not None else 0)
    scores = attn.probabilities(x[None])[0]  # (H, L, L), causal
    rows = torch.arange(1, length, device=x.device)
    allowed = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()[1:]
    per_head = [(scores[h, 1:], allowed) for h in range(scores.shape[0])]

    def rate(lo: int, hi: int) -> float | None:
        if hi <= lo:
            return None
        sel = slice(lo - 1, hi - 1)
        return max(recall(s[sel], rows[sel] - 1, a[sel]) for s, a in per_head)

    out = {"inside": rate(1, min(t_train, length)), "beyond": rate(t_train, length), "overlap": None}
    if positions is not None:
        out["overlap"] = cosine(bilinear(attn), positional_construction(positions, t_train))
    elif attn.pos is not None and hasattr(attn.pos, "bias"):
        bias = attn.pos.bias.mean(0)  # softmax ignores a constant shift: compare centred profiles
        target = relative_construction(attn.pos.max_distance, bias)
        out["overlap"] = cosine(bias - bias.mean(), target - target.mean())
    return out


@torch.no_grad()
def induction_key_memory(net: Transformer, prev_layer: int, layer: int, weights: torch.Tensor | None = None) -> dict[str, float | None]:
    """Query e_z against the keys phi_z' the previous-token head writes: recall of z' = z (over z, weighted by how
    often the data queries it, ``weights``), and W_Q^T W_K against sum_z e_hat_z phi_hat_z^T."""
    m = bilinear(net.layers[layer].attn)
    scores = net.tok_emb @ m @ token_keys(net, prev_layer).T  # (V, V)
    v = scores.shape[0]
    return {"recall": recall(scores, torch.arange(v, device=scores.device), weights=weights),
            "overlap": cosine(m, induction_construction(net, prev_layer))}


@torch.no_grad()
def output_memory(net: Transformer, layer: int) -> dict[str, float | None]:
    """The attended token read out by W_U W_O W_V e_z: recall of z itself, and W_O W_V against sum_z u_hat_z e_hat_z^T."""
    ov = output_map(net.layers[layer].attn)
    scores = net.tok_emb @ ov.T @ net.unemb.T
    v = scores.shape[0]
    return {"recall": recall(scores, torch.arange(v, device=scores.device)), "overlap": cosine(ov, output_construction(net))}


@torch.no_grad()
def global_memory(net: Transformer, layer: int, next_token: torch.Tensor, weights: torch.Tensor | None = None) -> dict[str, float | None]:
    """The context-free next-token memory of layer ``layer``'s FF (its output map without an FF), queried with e_z:
    ``top1``, agreement of its top logit with b(z); ``kl``, mean KL(data || softmax(W_U FF(e_z))) in nats; ``overlap``:
    its linear part on the embeddings against sum_z u_hat_{b(z)} e_hat_z^T. ``weights``: how much each token z counts
    (default all alike; the probe weighs them as the data queries them: the fixed triggers, where the noise
    association lives, or the trigger distribution)."""
    block = net.layers[layer]
    emb = net.tok_emb
    out = block.ff(block.norm2(emb)) if block.ff is not None else emb @ output_map(block.attn).T  # (V, d)
    linear_part = torch.linalg.lstsq(emb, out).solution.T  # W with W e_z ~ out_z, (d, d)
    answers = global_answers(next_token.to(emb))
    logits = out @ net.unemb.T
    p = next_token.to(logits)
    kl = (p * (p.clamp_min(1e-30).log() - logits.log_softmax(-1))).sum(-1)
    w = torch.ones(len(kl), dtype=kl.dtype, device=kl.device) if weights is None else weights.to(kl)
    return {"top1": recall(logits, answers, weights=w), "kl": float((kl * w).sum() / w.sum()),
            "overlap": cosine(linear_part, global_construction(net, answers))}


@dataclass
class MemoryLayers:
    """Which layer holds which memory (the two-layer model: 0, 1, 1; a deeper model without positions may differ)."""

    prev_layer: int = 0  # the previous-token head
    layer: int = -1  # the induction head (its keys and output map)
    global_layer: int = -1  # the FF (or output map) holding the global next-token memory

    def resolved(self, n_layers: int) -> "MemoryLayers":
        fix = lambda i: i % n_layers  # noqa: E731
        for name, i in (("prev_layer", self.prev_layer), ("layer", self.layer), ("global_layer", self.global_layer)):
            if not -n_layers <= i < n_layers:
                raise ValueError(f"memory layers: {name} {i} is not a layer of a {n_layers}-layer model")
        return MemoryLayers(fix(self.prev_layer), fix(self.layer), fix(self.global_layer))


def probe_all(net: Transformer, layers: MemoryLayers, next_token: torch.Tensor, t_train: int, length: int,
              weights: torch.Tensor | None = None) -> dict[str, float | None]:
    """Every memory, flat: ``positional/inside``, ``positional/beyond``, ``positional/overlap``, ``induction_key/recall``,
    ``induction_key/overlap``, ``output/recall``, ``output/overlap``, ``global/top1``, ``global/kl``, ``global/overlap``."""
    lay = layers.resolved(len(net.layers))
    found = {"positional": positional_memory(net, lay.prev_layer, t_train, length),
             "induction_key": induction_key_memory(net, lay.prev_layer, lay.layer, weights),
             "output": output_memory(net, lay.layer),
             "global": global_memory(net, lay.global_layer, next_token, weights)}
    return {f"{memory}/{k}": v for memory, values in found.items() for k, v in values.items()}


# --- the constructed model ----------------------------------------------------------------------------------------

@dataclass
class ConstructionScales:
    """The scales the papers leave free (README, "The constructed model"). Attention scores are scale * (x . x_hat)
    / sqrt(d_head): ``position`` and ``induction`` are inverse temperatures, large enough that the right key wins the
    softmax against T others (e^scale >> T). ``output`` and ``global_`` are the logits the in-context read-out and the
    global memory give their answers: the hijack boundary sits where output * (attention mass on the n pairs) passes
    global_."""

    position: float = 12.0
    induction: float = 12.0
    output: float = 8.0
    global_: float = 4.0


def constructed_config(cfg, layers: MemoryLayers | None = None):
    """The constructed model's architecture from a trained model's config: W_Q = I, no LayerNorm, a linear FF in the
    global layer and no FF elsewhere. Refuses, naming the field, what the theory has no construction for."""
    if cfg.n_heads != 1:
        raise ValueError(f"the constructed model has one head per layer (model.n_heads is {cfg.n_heads})")
    if cfg.positional not in ("absolute", "sinusoidal", "relative"):
        raise ValueError(f"the constructed model's positional memory needs absolute, sinusoidal or relative positions "
                         f"(model.positional is {cfg.positional!r})")
    if len(cfg.ff) < 2:
        raise ValueError(f"the constructed model needs two layers at least (model.ff lists {len(cfg.ff)})")
    lay = (layers or MemoryLayers()).resolved(len(cfg.ff))
    if lay.prev_layer == lay.layer:
        raise ValueError("the constructed model needs the previous-token head and the induction head in different layers")
    if cfg.positional == "relative" and not cfg.encodes_positions_in(lay.prev_layer):
        raise ValueError(f"the constructed model's relative bias sits in layer {lay.prev_layer}, the previous-token head "
                         f"(model.positional_layers is {cfg.positional_layers})")
    ff = ["linear" if i == lay.global_layer else "none" for i in range(len(cfg.ff))]
    return replace(cfg, ff=ff, learned_query=False, layer_norm=False, zero_init=[], trainable=None)


@torch.no_grad()
def construct(trained: Transformer, next_token: torch.Tensor, t_train: int, layers: MemoryLayers | None = None,
              scales: ConstructionScales | None = None) -> Transformer:
    """The associative-memory transformer of the theory, with ``trained``'s embeddings, positions, unembedding and
    previous-token value/output maps (random and frozen in the papers' setup), every other matrix set to the
    constructions above: W_Q = I everywhere, the previous-token layer's W_K (or relative bias) the positional memory,
    the induction layer's W_K the induction key memory and W_O W_V the output memory (W_V = I), and a linear FF in the
    global layer holding the global memory; other layers' maps are zero (``constructed_config``)."""
    cfg = trained.cfg
    net = Transformer(constructed_config(cfg, layers))
    lay = (layers or MemoryLayers()).resolved(len(cfg.ff))
    s = scales or ConstructionScales()
    net.to(dtype=trained.tok_emb.dtype, device=trained.tok_emb.device)
    net.load_state_dict({k: v for k, v in trained.state_dict().items() if k in ("tok_emb", "pos_emb", "unemb")}, strict=False)
    d_head = math.sqrt(cfg.dim)
    for block in net.layers:
        for w in (block.attn.wk, block.attn.wv, block.attn.wo):
            w.zero_()
    prev, src = net.layers[lay.prev_layer].attn, trained.layers[lay.prev_layer].attn
    prev.wv.copy_(src.wv)
    prev.wo.copy_(src.wo)
    positions = net.input_positions(t_train, net.tok_emb)
    if positions is not None:
        prev.wk.copy_(s.position * d_head * positional_construction(positions, t_train))
    else:
        prev.pos.bias.copy_(s.position * relative_construction(prev.pos.max_distance, prev.pos.bias).expand_as(prev.pos.bias))
    ind = net.layers[lay.layer].attn
    ind.wk.copy_(s.induction * d_head * induction_construction(net, lay.prev_layer))
    ind.wv.copy_(torch.eye(cfg.dim, dtype=ind.wv.dtype))
    ind.wo.copy_(s.output * output_construction(net))
    net.layers[lay.global_layer].ff.w2.copy_(s.global_ * global_construction(net, global_answers(next_token.to(net.tok_emb))))
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()
