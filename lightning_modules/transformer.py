"""The two-layer toy transformer of Chen, Bruna & Bietti (2406.03068) and Wang & Sato (2412.11459), plain torch.

Residual stream x_0 = W_E[token] (+ P[position]); each block adds attention, then (optionally) a feed-forward
map; logits = W_U x_L. No LayerNorm by default. Parameter names are stable because configs refer to them:
``tok_emb``, ``pos_emb``, ``unemb``, ``layers.{i}.attn.{wq,wk,wv,wo}``, ``layers.{i}.attn.pos.bias`` (relative
positions), ``layers.{i}.ff.{w1,w2}`` (MLP) or ``layers.{i}.ff.w2`` (linear). Matrices are stored (out_features,
in_features), like ``nn.Linear``. Positional encodings are modules (lightning_modules/positional.py); which
parameters train and which start at zero is decided in one place (lightning_modules/parameters.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules import parameters
from lightning_modules.positional import ENCODINGS, SCORE_ENCODINGS, score_encoding, sinusoidal_positions

FFKind = Literal["none", "linear", "mlp"]
Positional = Literal["absolute", "sinusoidal", "rope", "relative", "alibi", "none"]
Init = Literal["scaled", "reference"]


@dataclass
class TransformerConfig:
    dim: int = 64
    n_heads: int = 1
    # one entry per layer; the number of layers is len(ff)
    ff: list[FFKind] = field(default_factory=lambda: ["mlp", "mlp"])
    ff_hidden_mult: int = 4
    # the MLP's hidden width: one number for every layer, or one per layer (any width, below dim too: how parameters
    # split between FF and attention); None: ff_hidden_mult * dim
    ff_width: int | list[int] | None = None
    activation: Literal["relu", "gelu"] = "relu"
    learned_query: bool = True  # False: W_Q = identity (the paper's simplification)
    freeze_embeddings: bool = True  # token embeddings stay at their random init (unless `trainable` says otherwise)
    freeze_unembedding: bool = True
    # absolute = random, frozen table; sinusoidal; rope | relative | alibi act in attention; none = NoPE
    positional: Positional = "absolute"
    positional_layers: list[int] | None = None  # the layers rope / relative / alibi act in (default: all)
    max_distance: int = 64  # relative: offsets beyond share one learned bias
    max_seq_len: int = 256  # size of the absolute position table: it must cover the longest *test* sequence
    layer_norm: bool = False
    # scaled: embeddings and positions N(0, 1/dim), matrices N(0, 1/fan_in). reference: as the papers' code
    # (leichen2018/ATTN_vs_MLP): embeddings and random positions N(0, 1), matrices nn.Linear's U(+-1/sqrt(fan_in))
    init: Init = "scaled"
    # which parameters train (names or globs; default: all but the frozen embeddings, positions and unembedding),
    # and which start at exactly zero (lightning_modules/parameters.py)
    trainable: list[str] | None = None
    zero_init: list[str] = field(default_factory=list)
    vocab_size: int | None = None  # normally linked from the datamodule

    def __post_init__(self) -> None:
        for name in ("dim", "n_heads", "ff_hidden_mult", "max_seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if not self.ff:
            raise ValueError("model.ff lists one FF kind per layer (none | linear | mlp): at least one layer")
        widths = self.ff_width if isinstance(self.ff_width, list) else None
        if widths is not None and len(widths) != len(self.ff):
            raise ValueError(f"model.ff_width lists one width per layer ({len(self.ff)} layers), got {widths}")
        if any(w < 1 for w in (widths or ([self.ff_width] if self.ff_width is not None else []))):
            raise ValueError(f"model.ff_width must be >= 1, got {self.ff_width}")
        if self.dim % self.n_heads:
            raise ValueError(f"model.dim ({self.dim}) must be divisible by model.n_heads ({self.n_heads})")
        if self.positional not in ENCODINGS:
            raise ValueError(f"model.positional must be one of {' | '.join(ENCODINGS)}, got {self.positional!r}")
        if self.positional == "rope" and (self.dim // self.n_heads) % 2:
            raise ValueError("RoPE needs an even head dimension (model.dim / model.n_heads)")
        bad = [k for k in self.ff if k not in ("none", "linear", "mlp")]
        if bad:
            raise ValueError(f"model.ff entries must be none | linear | mlp, got {bad}")
        if self.init not in ("scaled", "reference"):
            raise ValueError(f"model.init must be scaled | reference, got {self.init!r}")
        if self.positional_layers is not None:  # used by rope | relative | alibi (input encodings act before layer 0)
            wrong = [i for i in self.positional_layers if not 0 <= i < len(self.ff)]
            if wrong:
                raise ValueError(f"model.positional_layers {self.positional_layers}: layer indices must be in [0, {len(self.ff)})")
        if self.max_distance < 1:
            raise ValueError(f"model.max_distance must be >= 1, got {self.max_distance}")

    @property
    def embedding_scale(self) -> float:
        """Standard deviation of token embeddings and positions (and the sinusoidal table's scale)."""
        return 1.0 if self.init == "reference" else 1.0 / math.sqrt(self.dim)

    def hidden_width(self, layer: int) -> int:
        """The MLP hidden width of ``layer``."""
        if self.ff_width is None:
            return self.ff_hidden_mult * self.dim
        return self.ff_width[layer] if isinstance(self.ff_width, list) else self.ff_width

    @property
    def max_len(self) -> int | None:
        return self.max_seq_len if self.positional == "absolute" else None

    def encodes_positions_in(self, layer: int) -> bool:
        return self.positional in SCORE_ENCODINGS and (self.positional_layers is None or layer in self.positional_layers)


def _matrix(out_dim: int, in_dim: int, init: Init = "scaled") -> nn.Parameter:
    if init == "reference":  # nn.Linear's default (kaiming_uniform, a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        return nn.Parameter(torch.empty(out_dim, in_dim).uniform_(-1 / math.sqrt(in_dim), 1 / math.sqrt(in_dim)))
    return nn.Parameter(torch.randn(out_dim, in_dim) / math.sqrt(in_dim))


def _embedding(rows: int, cfg: TransformerConfig) -> nn.Parameter:
    """Random token embeddings or absolute positions, N(0, embedding_scale^2)."""
    x = torch.randn(rows, cfg.dim)
    return nn.Parameter(x if cfg.init == "reference" else x / math.sqrt(cfg.dim))


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig, layer: int):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.wq = _matrix(cfg.dim, cfg.dim, cfg.init) if cfg.learned_query else None
        self.wk, self.wv, self.wo = (_matrix(cfg.dim, cfg.dim, cfg.init) for _ in range(3))
        # rotary (queries and keys), or an additive score bias (relative, alibi), or nothing
        self.pos = score_encoding(cfg.positional, cfg.n_heads, cfg.max_distance) if cfg.encodes_positions_in(layer) else None

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T, D) -> queries, keys, values as (B, H, T, D/H), position-rotated under RoPE."""
        b, t, d = x.shape
        heads = lambda y: y.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)  # noqa: E731
        q = heads(F.linear(x, self.wq) if self.wq is not None else x)
        k, v = heads(F.linear(x, self.wk)), heads(F.linear(x, self.wv))
        if hasattr(self.pos, "rotate"):
            q, k = self.pos(q, k)
        return q, k, v

    def score_mask(self, t: int, device) -> torch.Tensor | None:
        """The additive (H, T, T) mask: causal, plus a relative or ALiBi bias; None when causal alone (SDPA's fast path)."""
        if self.pos is None or hasattr(self.pos, "rotate"):
            return None
        causal = torch.full((t, t), float("-inf"), device=device).triu(1)
        return self.pos(t) + causal

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """The heads' outputs, concatenated (B, T, D): what ``wo`` maps into the residual stream."""
        q, k, v = self.qkv(x)
        mask = self.score_mask(x.shape[1], x.device)
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype))
        return y.transpose(1, 2).flatten(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.mix(x), self.wo)

    def probabilities(self, x: torch.Tensor, query: int | None = None) -> torch.Tensor:
        """The (B, H, T_query, T_key) causal attention pattern that ``forward`` applies (for probes; SDPA hides it);
        with ``query``, only that query position's row: (B, H, 1, T_key)."""
        q, k, _ = self.qkv(x)
        t = q.shape[-2]
        mask = self.score_mask(t, x.device)
        if mask is None:
            mask = torch.full((t, t), float("-inf"), device=x.device).triu(1)
        if query is not None:
            rows = slice(query, query + 1 or None)  # -1: the last row
            q, mask = q[..., rows, :], mask[..., rows, :]
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        return (scores + mask).softmax(-1)


class FeedForward(nn.Module):
    def __init__(self, cfg: TransformerConfig, kind: FFKind, layer: int = 0):
        super().__init__()
        hidden = cfg.hidden_width(layer)
        self.w1 = _matrix(hidden, cfg.dim, cfg.init) if kind == "mlp" else None
        self.w2 = _matrix(cfg.dim, hidden if kind == "mlp" else cfg.dim, cfg.init)
        self.act = F.relu if cfg.activation == "relu" else F.gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.w1 is not None:
            x = self.act(F.linear(x, self.w1))
        return F.linear(x, self.w2)


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig, ff: FFKind, layer: int):
        super().__init__()
        norm = (lambda: nn.LayerNorm(cfg.dim)) if cfg.layer_norm else nn.Identity
        self.norm1, self.attn = norm(), Attention(cfg, layer)
        self.norm2, self.ff = (norm(), FeedForward(cfg, ff, layer)) if ff != "none" else (None, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        if self.ff is not None:
            x = x + self.ff(self.norm2(x))
        return x


class Transformer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        if cfg.vocab_size is None:
            raise ValueError("model.vocab_size is not set (it is normally linked from the datamodule)")
        self.cfg = cfg
        self.tok_emb = _embedding(cfg.vocab_size, cfg)
        if cfg.positional == "absolute":
            self.pos_emb = _embedding(cfg.max_seq_len, cfg)
        self.layers = nn.ModuleList(Block(cfg, kind, i) for i, kind in enumerate(cfg.ff))
        self.norm_f = nn.LayerNorm(cfg.dim) if cfg.layer_norm else nn.Identity()
        self.unemb = _matrix(cfg.vocab_size, cfg.dim, cfg.init)
        parameters.apply_plan(self, cfg)

    def input_positions(self, t: int, like: torch.Tensor) -> torch.Tensor | None:
        """What the input encoding adds to the residual stream at positions 0..t-1 (absolute, sinusoidal)."""
        if self.cfg.positional == "absolute":
            return self.pos_emb[:t]
        if self.cfg.positional == "sinusoidal":
            return sinusoidal_positions(t, self.cfg.dim, self.cfg.embedding_scale).to(like)
        return None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T, vocab) logits, causal."""
        t = tokens.shape[1]
        if self.cfg.max_len is not None and t > self.cfg.max_len:
            raise ValueError(f"sequence length {t} exceeds model.max_seq_len={self.cfg.max_len}")
        x = self.tok_emb[tokens]
        positions = self.input_positions(t, x)
        if positions is not None:
            x = x + positions
        for layer in self.layers:
            x = layer(x)
        return F.linear(self.norm_f(x), self.unemb)
