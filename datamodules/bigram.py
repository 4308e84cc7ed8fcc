"""Where the bigram statistics come from: a seeded synthetic Zipf model, or a character-level text corpus."""
from __future__ import annotations

import os
from dataclasses import dataclass

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
