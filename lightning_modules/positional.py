"""Positional encodings, one small module each, chosen by config (``model.positional``).

Two kinds: input encodings add a (T, dim) table to the residual stream (``absolute`` random, ``sinusoidal``); score
encodings act inside attention, on the layers ``model.positional_layers`` names: ``rope`` rotates queries and keys,
``relative`` adds a learned bias per clipped offset (Shaw et al. 2018 / T5 style), ``alibi`` adds a fixed linear
penalty per head (Press et al. 2022). ``none`` (NoPE) has neither: only the causal mask orders the tokens.
Relative schemes depend only on the offset i - j, so a sequence shifted in position gives the same attention pattern.
"""
from __future__ import annotations

import torch
from torch import nn

INPUT_ENCODINGS = ("absolute", "sinusoidal")
SCORE_ENCODINGS = ("rope", "relative", "alibi")
ENCODINGS = INPUT_ENCODINGS + SCORE_ENCODINGS + ("none",)


def sinusoidal_positions(t: int, dim: int, scale: float = 1.0) -> torch.Tensor:
    pos = torch.arange(t, dtype=torch.float32)[:, None]
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    pe = torch.zeros(t, dim)
    pe[:, 0::2] = torch.sin(pos * inv_freq)
    pe[:, 1::2] = torch.cos(pos * inv_freq)[:, : dim // 2]
    return pe * scale


def offsets(t: int, device=None) -> torch.Tensor:
    """(T, T) query position minus key position."""
    idx = torch.arange(t, device=device)
    return idx[:, None] - idx[None, :]


class Rotary(nn.Module):
    """RoPE on (B, H, T, D) queries and keys: position p rotates each pair of dimensions by p * theta_i."""

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        t, d = x.shape[-2], x.shape[-1]
        inv_freq = 1.0 / (10000 ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d))
        angles = torch.arange(t, device=x.device, dtype=torch.float32)[:, None] * inv_freq
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rotate(q), self.rotate(k)


class RelativeBias(nn.Module):
    """A learned scalar per head and per offset i - j, clipped at ``max_distance`` (every offset beyond shares one
    bias, so any length works). Starts at zero."""

    def __init__(self, n_heads: int, max_distance: int):
        super().__init__()
        self.max_distance = max_distance
        self.bias = nn.Parameter(torch.zeros(n_heads, max_distance + 1))

    def forward(self, t: int) -> torch.Tensor:
        """(H, T, T) added to the attention scores (future positions are masked elsewhere)."""
        idx = offsets(t, self.bias.device).clamp(0, self.max_distance)
        return self.bias[:, idx]


class ALiBi(nn.Module):
    """Fixed bias -m_h (i - j) with head slopes m_h = 2^(-8 h / H) (Press et al.): attention decays with distance."""

    def __init__(self, n_heads: int):
        super().__init__()
        self.register_buffer("slopes", torch.tensor([2 ** (-8 * (h + 1) / n_heads) for h in range(n_heads)]), persistent=False)

    def forward(self, t: int) -> torch.Tensor:
        return -self.slopes[:, None, None] * offsets(t, self.slopes.device).clamp_min(0).to(self.slopes.dtype)


def score_encoding(kind: str, n_heads: int, max_distance: int) -> nn.Module | None:
    if kind == "rope":
        return Rotary()
    if kind == "relative":
        return RelativeBias(n_heads, max_distance)
    if kind == "alibi":
        return ALiBi(n_heads)
    return None

