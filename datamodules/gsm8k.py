"""GSM8K for few-shot chain of thought, as lm-evaluation-harness tasks (``gsm8k_cot``: its prompt, exemplars, stop
sequences, answer extraction and exact match).

Documents come from the hub through the harness (``openai/gsm8k``) or, with ``data_dir``, from local JSONL files
(``train.jsonl``, ``test.jsonl``; the published ``{"question", "answer"}`` format) through the task definition
``configs/lm_eval/gsm8k_cot_local.yaml``, rendered into the run directory. When the hub does not answer, the CLI
sets the hub and datasets offline flags before anything loads (pipeline/hub_mode.py), so nothing waits on it.

A *selection* split (``selection_size`` documents drawn from GSM8K train with ``selection_seed``, none of them an
exemplar question) serves to choose a LASER variant without looking at the test split: its task's only data file is
the selection file, so the harness cannot read a test document while selecting.

The loop the Trainer runs yields one evaluation per (split, num_fewshot); ``lightning_modules/gsm8k.py`` evaluates
every LASER variant on each.
"""
from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from torch.utils.data import DataLoader

from run_record import files
from run_record.contract import RecordedData

TEMPLATE = Path(__file__).resolve().parents[1] / "configs" / "lm_eval" / "gsm8k_cot_local.yaml"
HUB_TASK, LOCAL_TASK, SELECTION_TASK = "gsm8k_cot", "gsm8k_cot_local", "gsm8k_cot_selection"
TASK_DIR, SELECTION_FILE = "lm_eval_tasks", "gsm8k_selection.jsonl"
MAX_SHOTS = 8  # gsm8k_cot's fixed exemplars (first_n sampler)
# the answer's last line: "#### 1,234" (the target), in ASCII digits: the harness's extraction regexes read [0-9] only,
# so "#### ７２" or "#### ٧٢" could never be matched (exact match 0 for every model)
FINAL_ANSWER = re.compile(r"####\s*-?\$?[0-9,]*\.?[0-9]+\s*$", re.ASCII)
GSM8K_TRAIN_DOCS = 7473  # openai/gsm8k main, train split: the selection pool when no data_dir is given


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """GSM8K records, each with ``question`` and ``answer``; a malformed line is refused naming the file and line."""
    if not path.is_file():
        raise FileNotFoundError(f"data.data_dir: {path} does not exist (GSM8K JSONL: one {{\"question\", \"answer\"}} per line). "
                                "Download on a machine with internet: see README, 'GSM8K'")
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise ValueError(f"{path}:{i} is not JSON ({e})") from e
        if not isinstance(rec, dict) or not isinstance(rec.get("question"), str) or not isinstance(rec.get("answer"), str):
            raise ValueError(f"{path}:{i}: a GSM8K record needs string fields 'question' and 'answer'")
        for field in ("question", "answer"):
            try:  # valid JSON can still hold text no file or tokenizer can encode (a lone surrogate escape)
                rec[field].encode("utf-8")
            except UnicodeEncodeError as e:
                raise ValueError(f"{path}:{i}: the {field} is not encodable text ({e.reason} at character {e.start}: "
                                 f"{rec[field][max(0, e.start - 20):e.start]!r}...)") from None
        if not FINAL_ANSWER.search(rec["answer"]):
            # gsm8k_cot's target is the text after '####': without it the target is the whole rationale, and exact
            # match is 0 whatever the model says
            raise ValueError(f"{path}:{i}: the answer has no final '#### <number>' line in ASCII digits (GSM8K's format: "
                             f"the rationale, then '#### 72'; the harness extracts [0-9] only); got {rec['answer'][-60:]!r}")
        out.append(rec)
    if not out:
        raise ValueError(f"{path} holds no GSM8K records")
    return out


def exemplars() -> list[dict[str, str]]:
    """gsm8k_cot's fixed few-shot exemplars, in order ({"question", "target"}; the harness's own task file)."""
    return yaml.safe_load(harness_task_file().read_text())["fewshot_config"]["samples"]


def exemplar_questions() -> set[str]:
    """The questions of gsm8k_cot's fixed few-shot exemplars."""
    return {s["question"].strip() for s in exemplars()}


def selection_pool_size(data_dir: str | None) -> int:
    """How many train documents a selection split can be drawn from (train minus the exemplar questions)."""
    if data_dir is None:
        return GSM8K_TRAIN_DOCS - len(exemplar_questions())
    shots = exemplar_questions()
    return sum(r["question"].strip() not in shots for r in read_jsonl(Path(data_dir) / "train.jsonl"))


def prompt_text(question: str, shots: int) -> str:
    """gsm8k_cot's prompt at ``shots`` exemplars (doc_to_text "Q: ...\\nA:", target delimiter " ", fewshot
    delimiter "\\n\\n"), for the length check before the model loads."""
    head = "".join(f"Q: {s['question']}\nA: {s['target']}\n\n" for s in exemplars()[:shots])
    return f"{head}Q: {question}\nA:"


def harness_task_file() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k-cot.yaml"


def render_task(directory: Path, name: str, data_files: dict[str, str]) -> Path:
    """The shipped task definition with absolute paths: the harness's gsm8k-cot.yaml and ``data_files``."""
    cfg = yaml.safe_load(TEMPLATE.read_text())
    cfg.update(task=name, include=str(harness_task_file()), dataset_kwargs={"data_files": {k: str(Path(v).resolve()) for k, v in data_files.items()}})
    return files.write_text(directory / f"{name}.yaml", yaml.safe_dump(cfg, sort_keys=False))


def check_arguments(num_fewshot: list[int], limit: int | None, selection_size: int, selection_limit: int | None) -> None:
    bad = [k for k in num_fewshot if not 0 <= k <= MAX_SHOTS]
    if bad or not num_fewshot:
        raise ValueError(f"data.num_fewshot: each in 0..{MAX_SHOTS} (gsm8k_cot has {MAX_SHOTS} exemplars), got {num_fewshot}")
    for name, value in (("limit", limit), ("selection_limit", selection_limit)):
        if value is not None and value < 1:
            raise ValueError(f"data.{name} must be >= 1 or null, got {value}")
    if selection_size < 0:
        raise ValueError(f"data.selection_size must be >= 0, got {selection_size}")


def check_data_args(data: dict) -> None:
    """What GSM8KDataModule's constructor checks, from its config arguments (before any model loads)."""
    check_arguments(data.get("num_fewshot") or [8], data.get("limit"), data.get("selection_size") or 0,
                    data.get("selection_limit"))
    if data.get("data_dir"):
        for split in ("train", "test"):
            read_jsonl(Path(data["data_dir"]) / f"{split}.jsonl")


class GSM8KDataModule(RecordedData, L.LightningDataModule):
    """Args:
        num_fewshot: shot counts, each in 0..8 (gsm8k_cot's exemplars, the first k of its fixed list).
        data_dir: a folder with ``train.jsonl`` and ``test.jsonl``; None reads openai/gsm8k through the harness.
        limit: evaluate only the first ``limit`` test documents (quick runs); None is the whole split (1319).
        selection_size: documents of the selection split carved from GSM8K train (0: no selection split).
        selection_seed: which train documents are drawn.
        selection_limit: like ``limit``, for the selection split.
    """

    def __init__(self, num_fewshot: list[int] | None = None, data_dir: str | None = None, limit: int | None = None,
                 selection_size: int = 0, selection_seed: int = 0, selection_limit: int | None = None):
        super().__init__()
        self.num_fewshot = num_fewshot if num_fewshot is not None else [8]
        check_arguments(self.num_fewshot, limit, selection_size, selection_limit)
        self.data_dir = Path(data_dir) if data_dir else None
        self.limit, self.selection_limit = limit, selection_limit
        self.selection_size, self.selection_seed = selection_size, selection_seed
        self.train_records: list[dict[str, Any]] | None = None  # read once: checked here, sampled in setup
        if self.data_dir is not None:  # bad files fail here, before a model is loaded
            self.train_records = read_jsonl(self.data_dir / "train.jsonl")
            read_jsonl(self.data_dir / "test.jsonl")
        self.tasks: dict[str, str] = {}
        self.include_path: Path | None = None
        self.selection_docs: list[dict[str, Any]] = []

    def check_trainer(self, trainer, stage: str | None = None) -> None:
        """Called by the CLI before any compute: the harness evaluates in this one process."""
        if trainer.world_size > 1:
            raise ValueError(f"trainer.devices / num_nodes: GSM8K runs in one process (got {trainer.world_size}); "
                             "spread variants and models over GPUs as sweep tasks (configs/sweeps/gsm8k_laser.yaml)")

    @property
    def splits(self) -> list[str]:
        return (["selection"] if self.selection_size else []) + ["test"]

    def setup(self, stage: str) -> None:
        run_dir = Path(self.trainer.log_dir) if self.trainer is not None else Path(".")
        self.include_path = run_dir / TASK_DIR
        if self.data_dir is not None:
            render_task(self.include_path, LOCAL_TASK, {s: str(self.data_dir / f"{s}.jsonl") for s in ("train", "test")})
            self.tasks["test"] = LOCAL_TASK
        else:
            self.tasks["test"] = HUB_TASK
        if self.selection_size:
            train = self._train_documents()
            shots = exemplar_questions()
            pool = [r for r in train if r["question"].strip() not in shots]
            if len(pool) < self.selection_size:  # (checked before the model loads too: GSM8KModule.check_before_build)
                raise ValueError(f"data.selection_size {self.selection_size} > the {len(pool)} train documents available")
            self.selection_docs = random.Random(self.selection_seed).sample(pool, self.selection_size)
            path = files.write_jsonl(run_dir / SELECTION_FILE, self.selection_docs)
            render_task(self.include_path, SELECTION_TASK, {"test": str(path)})  # the selection file is its only data
            self.tasks["selection"] = SELECTION_TASK

    def _train_documents(self) -> list[dict[str, Any]]:
        if self.train_records is not None:
            return self.train_records
        import datasets

        try:
            return [dict(r) for r in datasets.load_dataset("openai/gsm8k", "main", split="train")]
        except Exception as e:  # noqa: BLE001 - datasets raises several kinds for a cache miss offline
            raise FileNotFoundError(
                "GSM8K train (for data.selection_size) could not be loaded from the hub or the cache "
                f"({type(e).__name__}). On a login node: `python -c \"import datasets; datasets.load_dataset('openai/gsm8k', 'main')\"`, "
                "or give data.data_dir") from e

    def evaluations(self) -> list[dict[str, Any]]:
        return [{"split": s, "num_fewshot": k, "limit": self.selection_limit if s == "selection" else self.limit}
                for s in self.splits for k in self.num_fewshot]

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.evaluations(), batch_size=1, collate_fn=lambda items: items[0])

    def task_manager(self):
        from lm_eval.tasks import TaskManager

        return TaskManager(include_path=str(self.include_path) if self.include_path and self.include_path.is_dir() else None)
