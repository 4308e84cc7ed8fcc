"""Where the bigram statistics come from: a seeded synthetic Zipf model, or a character-level text corpus."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch


@dataclass(frozen=True)
class BigramModel:
    """Transition matrix (V, V) with rows summing to 1, a marginal over V tokens, and optional token strings."""

    transitions: torch.Tensor
    marginal: torch.Tensor
    itos: tuple[str, ...] | None = None

    @property
    def vocab_size(self) -> int:
        return self.marginal.numel()

    def save(self, path: str | os.PathLike) -> None:
        """``.pt``: {"transitions", "marginal", "itos"}; ``.npy``: the transition matrix alone. ``SavedBigram`` reads both."""
        if str(path).endswith(".npy"):
            np.save(path, self.transitions.numpy())
        else:
            torch.save({"transitions": self.transitions, "marginal": self.marginal, "itos": list(self.itos or [])}, path)


class BigramSource:
    """Base class for the `data.bigram` config entry (class_path / init_args)."""

    def build(self) -> BigramModel:
        raise NotImplementedError


class SyntheticBigram(BigramSource):
    """Zipf marginal p_i ~ 1/(i+1)^zipf_exponent; each row ~ Dirichlet(concentration * V * p).

    Rows have mean p, so p is (close to) the chain's stationary distribution. Needs no file or network.
    """

    def __init__(self, vocab_size: int = 64, zipf_exponent: float = 1.0, concentration: float = 1.0, seed: int = 0):
        if vocab_size < 2:
            raise ValueError(f"data.bigram.vocab_size must be >= 2, got {vocab_size}")
        if concentration <= 0:
            raise ValueError(f"data.bigram.concentration must be > 0, got {concentration}")
        self.vocab_size, self.zipf_exponent, self.concentration, self.seed = vocab_size, zipf_exponent, concentration, seed

    def build(self) -> BigramModel:
        ranks = torch.arange(1, self.vocab_size + 1, dtype=torch.float64)
        marginal = ranks.pow(-self.zipf_exponent)
        marginal /= marginal.sum()
        alpha = (self.concentration * self.vocab_size * marginal).expand(self.vocab_size, -1)
        # fork_rng: the world's bigram matrix depends on its own seed only, not on the global RNG state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            transitions = torch.distributions.Dirichlet(alpha).sample()
        return BigramModel(transitions.float(), marginal.float())


def stationary(transitions: torch.Tensor, steps: int = 1000) -> torch.Tensor:
    """The chain's stationary distribution by power iteration from the uniform one (float64)."""
    p = torch.full((transitions.shape[0],), 1.0 / transitions.shape[0], dtype=torch.float64)
    for _ in range(steps):
        p = p @ transitions.double()
    return p / p.sum()


class SavedBigram(BigramSource):
    """A bigram read from a file: another run's (``BigramModel.save``), or any (V, V) matrix.

    Args:
        path: ``.npy`` or ``.pt``: a (V, V) tensor or array, or a dict with ``transitions`` (or ``counts``) and
            optionally ``marginal`` and ``itos``.
        kind: ``transitions`` (rows are distributions: non-negative, summing to 1) or ``counts`` (non-negative
            bigram counts, normalised per row; a row with no count takes the marginal).
        tokens: optional token strings, a JSON file with a list of V strings (kept for decoding, like CorpusBigram's).

    The marginal (where the first token and random triggers are drawn from) is the file's, else the counts' token
    frequencies, else the chain's stationary distribution. Wrong shapes, NaNs and rows that are not distributions
    are refused, naming the file.
    """

    def __init__(self, path: str, kind: Literal["transitions", "counts"] = "transitions", tokens: str | None = None):
        if kind not in ("transitions", "counts"):
            raise ValueError(f"data.bigram.kind must be transitions | counts, got {kind!r}")
        for name in (path, tokens):
            if name is not None and not os.path.isfile(name):
                raise FileNotFoundError(f"data.bigram: file {name!r} does not exist")
        self.path, self.kind, self.tokens = path, kind, tokens

    def _load(self) -> dict:
        try:
            raw = np.load(self.path, allow_pickle=False) if self.path.endswith(".npy") else torch.load(self.path, weights_only=True)
        except Exception as e:  # noqa: BLE001  numpy and torch raise many types for a bad file
            raise ValueError(f"data.bigram.path {self.path!r}: not a readable .npy or .pt file ({type(e).__name__})") from e
        if not isinstance(raw, dict):
            raw = {"counts" if self.kind == "counts" else "transitions": raw}
        return {k: torch.as_tensor(np.asarray(v) if isinstance(v, np.ndarray) else v) if k != "itos" else v for k, v in raw.items()}

    def build(self) -> BigramModel:
        raw, where = self._load(), f"data.bigram.path {self.path!r}"
        matrix = raw.get("counts", raw.get("transitions"))
        if matrix is None:
            raise ValueError(f"{where}: a dict file needs a 'transitions' or 'counts' entry, got {sorted(raw)}")
        matrix = matrix.double()
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 2:
            raise ValueError(f"{where}: expected a square (V, V) matrix with V >= 2, got shape {tuple(matrix.shape)}")
        if not torch.isfinite(matrix).all() or (matrix < 0).any():
            raise ValueError(f"{where}: entries must be finite and non-negative (found NaN, inf or negative values)")
        v = matrix.shape[0]
        counts = self.kind == "counts" or "counts" in raw
        if counts:
            rows = matrix.sum(-1, keepdim=True)
            freq = matrix.sum(0) + matrix.sum(1)
            marginal = freq / freq.sum() if freq.sum() > 0 else torch.full((v,), 1.0 / v, dtype=torch.float64)
            transitions = torch.where(rows > 0, matrix / rows.clamp_min(1e-300), marginal)
        else:
            bad = ((matrix.sum(-1) - 1).abs() > 1e-4).nonzero().flatten()
            if len(bad):
                raise ValueError(f"{where}: rows {bad[:10].tolist()} do not sum to 1 (sums {matrix.sum(-1)[bad[:3]].tolist()}); "
                                 "give kind: counts for a count matrix")
            transitions = matrix / matrix.sum(-1, keepdim=True)
            marginal = stationary(transitions)
        if "marginal" in raw:
            marginal = raw["marginal"].double()
            if marginal.shape != (v,) or not torch.isfinite(marginal).all() or (marginal < 0).any() or marginal.sum() <= 0:
                raise ValueError(f"{where}: 'marginal' must be {v} non-negative finite numbers")
            marginal = marginal / marginal.sum()
        itos = raw.get("itos") or None
        if self.tokens is not None:
            with open(self.tokens) as f:
                itos = json.load(f)
        if itos is not None and len(itos) != v:
            raise ValueError(f"data.bigram.tokens: {len(itos)} token strings for a {v}-token matrix")
        return BigramModel(transitions.float(), marginal.float(), tuple(itos) if itos else None)


class CorpusBigram(BigramSource):
    """Character-level bigram statistics of a text corpus loaded with `datasets`.

    Give `path` (a local text file) or `dataset` (a Hugging Face hub id, e.g. a Tiny Shakespeare copy, for users
    with internet). The vocabulary is the corpus's set of characters; rows with no observed successor use the
    marginal.
    """

    def __init__(self, path: str | None = None, dataset: str | None = None, split: str = "train", text_field: str = "text"):
        if (path is None) == (dataset is None):
            raise ValueError("data.bigram: give exactly one of `path` (local text file) or `dataset` (hub id)")
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(f"data.bigram.path: corpus file {path!r} does not exist")
        self.path, self.dataset, self.split, self.text_field = path, dataset, split, text_field

    def load_text(self) -> str:
        import datasets

        if self.path is not None:
            # sample_by="document" keeps newlines, which are characters of the corpus too
            ds = datasets.load_dataset("text", data_files=self.path, split="train", sample_by="document")
            field = "text"
        else:
            try:
                ds = datasets.load_dataset(self.dataset, split=self.split)
            except Exception as e:  # offline, unknown id, ...: say which field and what to do
                raise RuntimeError(
                    f"data.bigram.dataset: could not load {self.dataset!r} ({type(e).__name__}: {e}). Without network, "
                    "download the text once and pass data.bigram.path instead."
                ) from e
            field = self.text_field
            if field not in ds.column_names:
                raise ValueError(f"data.bigram.text_field {field!r} not in dataset columns {ds.column_names}")
        return "".join(ds[field])

    def build(self) -> BigramModel:
        text = self.load_text()
        if len(text) < 2:
            raise ValueError(f"data.bigram: corpus {self.path or self.dataset!r} has fewer than 2 characters")
        itos = tuple(sorted(set(text)))
        stoi = {ch: i for i, ch in enumerate(itos)}
        ids = torch.tensor([stoi[ch] for ch in text])
        v = len(itos)
        counts = torch.zeros(v * v, dtype=torch.float64).index_add_(0, ids[:-1] * v + ids[1:], torch.ones(len(ids) - 1, dtype=torch.float64)).view(v, v)
        marginal = torch.bincount(ids, minlength=v).double()
        marginal /= marginal.sum()
        rows = counts.sum(-1, keepdim=True)
        transitions = torch.where(rows > 0, counts / rows.clamp_min(1), marginal)
        return BigramModel(transitions.float(), marginal.float(), itos)
