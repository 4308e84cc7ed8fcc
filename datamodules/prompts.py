"""PromptDataModule: IOI or factual-recall prompts for a pretrained LM, tokenised, batched by length (no padding)."""
from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING, Literal

import lightning as L
from torch.utils.data import DataLoader

from datamodules.fact_hijack import FactHijack, hijack_rows
from datamodules.prompt_sources import IOI_TEMPLATES, NAMES, OBJECTS, PLACES, builtin_facts, fill
from lightning_modules.pretrained import check_revision, load_tokenizer
from run_record.contract import RecordedData

if TYPE_CHECKING:  # datasets is imported where prompts are built, so toy-model runs never load it (about 1 s of
    from datasets import Dataset  # import, and missing from some GPU images)


def single_token_id(tokenizer, text: str) -> int | None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids[0] if len(ids) == 1 else None


def single_token_names(tokenizer, names: list[str]) -> list[str]:
    """Names that are one token with their leading space (" Mary" yes, " Brittany" not in Pythia's tokenizer)."""
    return [n for n in names if single_token_id(tokenizer, " " + n) is not None]


def ioi_prompts(names: list[str], n: int, seed: int) -> list[dict[str, str]]:
    """Half ABBA (the indirect object named first), half BABA; the answer is the IO, the competitor the subject."""
    if len(names) < 2:
        raise ValueError(f"IOI needs at least 2 single-token names in the tokenizer, found {names}")
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        io, s = rng.sample(names, 2)
        kind = "ABBA" if i % 2 == 0 else "BABA"
        a, b = (io, s) if kind == "ABBA" else (s, io)
        prompt = fill(rng.choice(IOI_TEMPLATES), a, b, s, rng.choice(PLACES), rng.choice(OBJECTS))
        rows.append({"prompt": prompt, "answer": " " + io, "competitor": " " + s, "type": kind})
    return rows


def counterfact_prompts(source: str, split: str) -> list[dict[str, str]]:
    """CounterFact-style records (``requested_rewrite``: prompt with "{}", subject, target_true.str, relation_id)
    from a local JSON/JSONL file or a hub dataset id."""
    from datasets import load_dataset

    if os.path.exists(source):
        ds = load_dataset("json", data_files=source, split="train")
    elif source.endswith((".json", ".jsonl")):
        raise FileNotFoundError(f"data.facts: no such file {source!r}")
    else:
        try:
            ds = load_dataset(source, split=split)
        except Exception as e:  # noqa: BLE001  datasets raises many types for a missing or unreachable dataset
            raise FileNotFoundError(f"data.facts: could not load dataset {source!r} (split {split!r}): {e}") from e
    rows = []
    for rec in ds:
        rw = rec.get("requested_rewrite")
        if rw is None:
            raise ValueError(f"data.facts {source!r}: records need requested_rewrite.prompt/subject/target_true")
        rows.append({"prompt": rw["prompt"].format(rw["subject"]), "answer": " " + rw["target_true"]["str"].strip(),
                     "competitor": "", "type": rw.get("relation_id") or "counterfact"})
    return rows


class PromptDataModule(RecordedData, L.LightningDataModule):
    """Prompts whose next token is either the answer (in context for IOI, a fact for facts) or a generic token.

    Args:
        task: ``ioi`` (Wang et al. 2022 templates, ABBA and BABA), ``facts``, or ``hijack`` (knowledge-hijack prompts
            built from the facts, ``datamodules/fact_hijack.py``: the answer is a counterfactual stated n times in
            context, the competitor the fact's true answer; one prompt type per cell).
        tokenizer / revision / gguf_file: the tokenizer to load (``from_pretrained``, from a GGUF file when given);
            under main.py these are linked from ``model.init_args.model_name`` / ``revision`` / ``gguf_file`` (the
            model's own tokenizer, at its revision, from its file).
        n_prompts: IOI prompts to generate (default 400); for facts, at most this many (default all).
        seed: IOI sampling seed (names, templates, places).
        facts: CounterFact-style JSON file or hub dataset id; default the built-in facts (capitals, languages,
            continents), of which those with a single-token answer are used.
        generic_token: the generic competitor, " the" by default (must be one token).
        batch_size: prompts per batch; batches hold prompts of one token length, so nothing is padded.
        hijack: with ``task: hijack``, the cells (n, k, distance, length) and facts per cell (``FactHijack``).
        selection_fraction: this share of the prompts (drawn with ``selection_seed``) is a selection split, on which
            the model chooses its best LASER variant (``model.select_by``); the rest is the test split.

    ``answer_id`` is the answer's first token; ``competitor_id`` the IOI subject's (-1 for facts).
    """

    def __init__(
        self,
        task: Literal["ioi", "facts", "hijack"] = "ioi",
        tokenizer: str | None = None,
        revision: str | None = None,
        n_prompts: int | None = None,
        seed: int = 0,
        facts: str | None = None,
        facts_split: str = "train",
        generic_token: str = " the",
        batch_size: int = 32,
        cache_dir: str | None = None,
        selection_fraction: float = 0.0,
        selection_seed: int = 0,
        gguf_file: str | None = None,
        hijack: FactHijack | None = None,
    ):
        super().__init__()
        if task not in ("ioi", "facts", "hijack"):
            raise ValueError(f"data.task must be ioi | facts | hijack, got {task!r}")
        self.hijack = (hijack or FactHijack()) if task == "hijack" else None
        if self.hijack is not None:
            self.hijack.check()
        if batch_size < 1 or (n_prompts is not None and n_prompts < 1):
            raise ValueError(f"data.batch_size and data.n_prompts must be >= 1, got {batch_size}, {n_prompts}")
        if not 0.0 <= selection_fraction < 1.0:
            raise ValueError(f"data.selection_fraction must be in [0, 1), got {selection_fraction}")
        if tokenizer is None:  # main.py links it from model.init_args.model_name (pipeline/cli.py)
            raise ValueError("data.tokenizer: none given; under main.py it is linked from model.init_args.model_name")
        check_revision(tokenizer, revision or "main")  # a Pythia step that does not exist: refused before any download
        self.tokenizer = load_tokenizer(tokenizer, revision or "main", cache_dir, gguf_file)
        self.generic_id = single_token_id(self.tokenizer, generic_token)
        if self.generic_id is None:
            raise ValueError(f"data.generic_token {generic_token!r} is not a single token of {tokenizer}")
        if task == "ioi":
            rows = ioi_prompts(single_token_names(self.tokenizer, NAMES), n_prompts or 400, seed)
        else:
            rows = (builtin_facts() if facts is None else counterfact_prompts(facts, facts_split))
            rows = [f | {"competitor": ""} for f in rows if facts is not None or single_token_id(self.tokenizer, f["answer"]) is not None]
            if task == "hijack":  # the counterfactual must be one token too
                usable = [f for f in rows if single_token_id(self.tokenizer, f["answer"]) is not None]
                rows = hijack_rows(usable, self.hijack, lambda text: len(self.tokenizer(text)["input_ids"]))
        rows = rows[:n_prompts] if n_prompts and task != "hijack" else rows
        if not rows:
            raise ValueError(f"data: no usable {task} prompts for tokenizer {tokenizer}")
        self.prompt_types = sorted({r["type"] for r in rows})
        self.batch_size = batch_size
        encoded = [self._encode(r) for r in rows]
        chosen: set[int] = set()
        if selection_fraction:
            n = max(1, round(selection_fraction * len(encoded)))
            if n >= len(encoded):
                raise ValueError(f"data.selection_fraction {selection_fraction} leaves no test prompts of {len(encoded)}")
            chosen = set(random.Random(selection_seed).sample(range(len(encoded)), n))
        # the two splits share no prompt; the model reads the selection split only to choose a variant. "row": the
        # prompt's index in its split (predictions.jsonl joins the model's numbers back to the prompt by it)
        from datasets import Dataset

        numbered = lambda rows: Dataset.from_list([e | {"row": j} for j, e in enumerate(rows)])  # noqa: E731
        self.splits = {"selection": numbered([e for i, e in enumerate(encoded) if i in chosen])} if chosen else {}
        self.splits["test"] = self.dataset = numbered([e for i, e in enumerate(encoded) if i not in chosen])

    def _encode(self, row: dict[str, str]) -> dict:
        first = lambda text: self.tokenizer(text, add_special_tokens=False)["input_ids"][0]  # noqa: E731
        return row | {
            "input_ids": self.tokenizer(row["prompt"])["input_ids"],
            "answer_id": first(row["answer"]),
            "generic_id": self.generic_id,
            "competitor_id": first(row["competitor"]) if row["competitor"] else -1,
            "type_id": self.prompt_types.index(row["type"]),
        }

    # Linked into the model by the CLI: the generic token plays the noise token's part.
    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def noise_id(self) -> int:
        return self.generic_id

    def length_batches(self, dataset: Dataset | None = None) -> list[list[int]]:
        by_len: dict[int, list[int]] = {}
        for i, ids in enumerate((dataset if dataset is not None else self.dataset)["input_ids"]):
            by_len.setdefault(len(ids), []).append(i)
        return [idx[j : j + self.batch_size] for _, idx in sorted(by_len.items()) for j in range(0, len(idx), self.batch_size)]

    def _loader(self, dataset: Dataset) -> DataLoader:
        columns = ["input_ids", "answer_id", "generic_id", "competitor_id", "type_id", "row"]
        return DataLoader(dataset.with_format("torch", columns=columns), batch_sampler=self.length_batches(dataset))

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """The test split; with a selection split, [selection, test] (in the order of ``split_names``)."""
        loaders = [self._loader(d) for d in self.splits.values()]
        return loaders[0] if len(loaders) == 1 else loaders

    @property
    def split_names(self) -> list[str]:
        return list(self.splits)

    def split_loader(self, name: str) -> DataLoader:
        """One split's prompts (``selection`` or ``test``), batched as in testing."""
        return self._loader(self.splits[name])

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.dataset)
