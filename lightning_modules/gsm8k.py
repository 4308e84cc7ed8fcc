"""GSM8KModule: few-shot chain of thought on GSM8K with LASER variants of any Hugging Face causal LM, scored by
lm-evaluation-harness (``main.py test --config configs/gsm8k.yaml``).

One model load serves every variant: each variant truncates its matrices in place (one SVD per matrix for the whole
run), the harness's ``HFLM`` evaluates that in-memory model, and the weights are restored bit for bit afterwards.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Literal

import lightning as L
import torch

from lightning_modules import lm_eval_results as lmr
from lightning_modules.laser import factorise, truncated
from lightning_modules.pretrained import (FULL, check_source, laser_variants, LaserGrid, LaserSpec, load_causal_lm,
                                          load_config, load_tokenizer, PretrainedRecord, require_packages,
                                          weights_fingerprint)
from run_record import files
from run_record.files import GENERATIONS_FILE
from run_record.kinds import GSM8K
from run_record.names import eval_key, evaluation_set
from run_record.wandb import wandb_logger



class _HarnessNotes(logging.Filter):
    """The harness's lines that say nothing to the user of this module, each time a variant is scored: its own task
    index overriding a task of the same name, the generation length and shot count this module sets on purpose, and
    the in-memory model this module passes on purpose (one process, no accelerate)."""

    NOTES = ("overrides existing task", "specified through cli, these settings will update", "Overwriting default num_fewshot",
             "`pretrained` model kwarg is not of type `str`", "Passed an already-initialized model through `pretrained`")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(n in str(record.msg) for n in self.NOTES)


def quiet_harness() -> None:
    import datasets

    datasets.disable_progress_bars()  # "Generating test split" for each task the harness builds from a local file
    for name in ("lm_eval.evaluator", "lm_eval.tasks._index", "lm_eval.models.huggingface"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _HarnessNotes) for f in logger.filters):
            logger.addFilter(_HarnessNotes())


def require_harness() -> None:
    import importlib.util

    if importlib.util.find_spec("lm_eval") is None:
        raise ModuleNotFoundError("GSM8K is scored by lm-evaluation-harness, which is not installed: "
                                  "pip install -e '.[pretrained]' (or make test, which installs it)")


def check_prompts_fit(model: dict, data: dict) -> None:
    """From the tokenizer and config files alone (no weights): the tokenizer has a chat template when one is asked
    for, and the longest prompt (the largest shot count, the longest question of the first ``limit`` documents of each
    local split) plus ``max_gen_toks`` fits the model's context as the harness resolves it."""
    from lm_eval.models.huggingface import HFLM
    from lm_eval.models.utils import resolve_max_length

    from datamodules.gsm8k import prompt_text, read_jsonl

    name, revision = model["model_name"], model.get("revision", "main")
    tokenizer = load_tokenizer(name, revision, model.get("cache_dir"), model.get("gguf_file"))
    if model.get("apply_chat_template") and not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"model.init_args.apply_chat_template: the tokenizer of {name} has no chat template "
                         "(a base model, not an instruct one): set apply_chat_template: false")
    context = resolve_max_length(load_config(name, revision, model.get("cache_dir"), model.get("gguf_file")), tokenizer,
                                 default=HFLM._DEFAULT_MAX_LENGTH)
    shots = max(data.get("num_fewshot") or [8])
    questions = [("the few-shot exemplars alone", "")]
    if data.get("data_dir"):  # the test documents the harness will prompt with (the first ``limit``)
        from pathlib import Path

        recs = read_jsonl(Path(data["data_dir"]) / "test.jsonl")[: data.get("limit")]
        questions += [(f"{data['data_dir']}/test.jsonl:{i}", r["question"]) for i, r in enumerate(recs, 1)]
    lengths = [(len(tokenizer(prompt_text(q, shots), add_special_tokens=False)["input_ids"]), where) for where, q in questions]
    longest, where = max(lengths)
    budget = model.get("max_gen_toks", 256)
    if longest + budget > context:
        raise ValueError(f"model.init_args.max_gen_toks {budget} + the longest prompt ({longest} tokens at {shots} shots, "
                         f"{where}) > the model's context of {context} tokens: the harness would cut the prompt's first "
                         "tokens. Lower max_gen_toks or data.init_args.num_fewshot")


class GSM8KModule(PretrainedRecord, L.LightningModule):
    """Args:
        model_name / revision / cache_dir: what ``from_pretrained`` loads (hub id or local directory).
        dtype: ``auto`` is bfloat16 on a GPU and float32 on a CPU.
        laser: ``{variant name: [LaserSpec, ...]}``, as for the Pythia runs; ``full`` is always evaluated too.
        search: a LaserGrid. With a selection split (``data.selection_size``) every grid variant is scored there, the
            best per shot count (by ``select_by``) is chosen, and only it and ``full`` (and ``laser``'s variants) are
            evaluated on test.
        batch_size: generation batch (an int, or the harness's ``auto``). max_gen_toks: the generation budget.
        apply_chat_template / fewshot_as_multiturn: the harness's chat formatting, for instruct models.
        gguf_file: a GGUF file in the ``model_name`` folder to load model and tokenizer from (dequantised to ``dtype``).
        stop_each_row: finish each row of a generation batch at its own stop string (``lightning_modules/stopping.py``;
            the same generations, fewer steps); false uses the harness's criterion unchanged.
    """

    results_title = "GSM8K exact match (lm-evaluation-harness gsm8k_cot)"
    SUBCOMMANDS = ("test",)  # evaluation only (pipeline/preflight.py)
    USES_HUB = True  # the CLI decides the hub mode before the model loads (pipeline/hub_mode.py)

    @staticmethod
    def check_before_build(model: dict, data: dict, context: dict) -> None:
        """Before the model loads: the model source exists (a GGUF file is named), and a LASER search has a selection
        split, or it would choose on the test split."""
        from datamodules.gsm8k import check_data_args

        require_harness()
        require_packages(model.get("gguf_file"))
        check_data_args(data)  # the data's own errors first: they need no model files
        if model.get("model_name"):
            check_source(model["model_name"], model.get("gguf_file"))
        if model.get("search") and not data.get("selection_size"):
            raise ValueError("model.init_args.search scores its grid on a selection split, and data.init_args.selection_size "
                             "is 0: the grid would be searched on the test split. Set data.init_args.selection_size "
                             "(e.g. 200 train documents), or list the variants to test in model.init_args.laser")
        from datamodules.gsm8k import selection_pool_size

        size = data.get("selection_size") or 0
        if size and size > (pool := selection_pool_size(data.get("data_dir"))):
            where = f"{data['data_dir']}/train.jsonl" if data.get("data_dir") else "openai/gsm8k train"
            raise ValueError(f"data.init_args.selection_size {size} > the {pool} documents of {where} that are not "
                             "few-shot exemplars")
        if model.get("model_name"):
            check_prompts_fit(model, data)

    def __init__(self, model_name: str, revision: str = "main", dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto",
                 laser: dict[str, list[LaserSpec]] | None = None, search: LaserGrid | None = None,
                 select_by: Literal["strict", "flexible"] = "flexible", svd: Literal["exact", "randomized"] = "exact",
                 cache_dir: str | None = None, batch_size: int | str = 8, max_gen_toks: int = 256,
                 apply_chat_template: bool = False, fewshot_as_multiturn: bool = False, stop_each_row: bool = True,
                 gguf_file: str | None = None):
        super().__init__()
        require_harness()
        if max_gen_toks < 1:
            raise ValueError(f"model.max_gen_toks must be >= 1, got {max_gen_toks}")
        if not (isinstance(batch_size, int) and batch_size >= 1) and not str(batch_size).startswith("auto"):
            raise ValueError(f"model.batch_size must be an integer >= 1 or 'auto', got {batch_size!r}")
        if fewshot_as_multiturn and not apply_chat_template:
            raise ValueError("model.fewshot_as_multiturn needs model.apply_chat_template: true")
        self.save_hyperparameters()
        if dtype == "auto":
            dtype = "bfloat16" if torch.cuda.is_available() else "float32"
        self.net = load_causal_lm(model_name, revision, getattr(torch, dtype), cache_dir, gguf_file)
        self.fingerprint = weights_fingerprint(self.net)  # before any variant is evaluated
        self.net.requires_grad_(False)
        self.tokenizer = load_tokenizer(model_name, revision, cache_dir, gguf_file)  # the same file's tokenizer
        grid = search.variants() if search else {}
        self.grid = set(grid)
        self.variants = laser_variants(self.net, {**(laser or {}), **grid})
        self.scores: dict[str, dict[str, dict[str, Any]]] = {}  # "<split>:<k>shot" -> variant -> scores
        self.chosen: dict[int, str] = {}
        self.generations: list[dict[str, Any]] = []

    def record_kinds(self) -> list[str]:
        return [GSM8K]

    def on_test_start(self) -> None:
        from lm_eval.models.huggingface import HFLM

        from lightning_modules.stopping import hflm_stopping_each_row

        lm_class = hflm_stopping_each_row() if self.hparams.stop_each_row else HFLM
        quiet_harness()
        self._lm = lm_class(pretrained=self.net, tokenizer=self.tokenizer, batch_size=self.hparams.batch_size)
        self._factors = factorise(self.net, self.variants.values(), randomized=self.hparams.svd == "randomized")
        self._tasks = self.trainer.datamodule.task_manager()
        self._cut: dict[str, int] = {}  # per setting, the prompts longer than the context allows

    def _evaluate(self, variant: str, split: str, k: int, limit: int | None) -> dict[int, dict[str, Any]]:
        import lm_eval

        task = self.trainer.datamodule.tasks[split]
        with truncated(self.net, self.variants[variant], self._factors):
            out = lm_eval.simple_evaluate(
                model=self._lm, tasks=[task], num_fewshot=k, limit=limit, log_samples=True, task_manager=self._tasks,
                gen_kwargs={"max_gen_toks": self.hparams.max_gen_toks}, apply_chat_template=self.hparams.apply_chat_template,
                fewshot_as_multiturn=self.hparams.fewshot_as_multiturn, random_seed=0, numpy_random_seed=0,
                torch_random_seed=0, fewshot_random_seed=0)
        setting = f"{split}:{k}shot"
        self.scores.setdefault(setting, {})[variant] = lmr.scores(out, task)
        first = setting not in self._cut  # the prompts are the same for every variant of a setting: count once
        cut = self._cut.setdefault(setting, self._truncated_prompts(out["samples"][task]) if first else 0)
        self.scores[setting][variant]["truncated_prompts"] = cut
        if cut and first:  # the harness keeps the last tokens of a prompt that does not fit, with only a log line
            print(f"warning: {cut} {split} prompt(s) at {k} shots are longer than the model's context "
                  f"({self._lm.max_length} tokens) minus max_gen_toks ({self.hparams.max_gen_toks}); the harness "
                  "dropped their first tokens. summary.json records truncated_prompts", file=sys.stderr)
        docs = lmr.documents(out, task)
        self.generations += [{"variant": variant, "split": split, "num_fewshot": k, **d} for d in docs.values()]
        return docs

    def _truncated_prompts(self, samples: list[dict]) -> int:
        room = self._lm.max_length - self.hparams.max_gen_toks
        prompts = {s["doc_id"]: s["arguments"][0][0] for s in samples}
        return sum(len(self.tokenizer(p, add_special_tokens=False)["input_ids"]) > room for p in prompts.values())

    def test_step(self, evaluation: dict[str, Any], batch_idx: int) -> None:
        split, k, limit = evaluation["split"], evaluation["num_fewshot"], evaluation["limit"]
        names = list(self.variants)
        if split == "test" and k in self.chosen:  # the grid was searched on the selection split: only the choice runs
            names = [v for v in names if v not in self.grid or v == self.chosen[k]]
        full = self._evaluate(FULL, split, k, limit)
        setting = f"{split}:{k}shot"
        base = self.scores[setting][FULL]
        for variant in names[1:]:
            docs = self._evaluate(variant, split, k, limit)
            row = self.scores[setting][variant]
            for short in lmr.FILTERS:
                row[f"delta_{short}"] = row[f"em_{short}"] - base[f"em_{short}"]
                row.update(lmr.flips(full, docs, short))
        if split == "selection" and self.grid:
            scores = self.scores[setting]  # ties keep the evaluation order: full first
            self.chosen[k] = max(scores, key=lambda v: scores[v][f"em_{self.hparams.select_by}"])
        test_set = evaluation_set(f"{k}shot", selection=split == "selection")
        for variant, row in self.scores[setting].items():
            self.log_dict({eval_key("test", variant, m, test_set): float(v) for m, v in row.items() if v is not None},
                          batch_size=1)

    def on_test_epoch_end(self) -> None:
        if not self.trainer.is_global_zero:
            return
        self._generations_path = os.path.join(self.trainer.log_dir, GENERATIONS_FILE)
        files.write_jsonl(self._generations_path, self.generations)
        lg = wandb_logger(self.loggers)
        if lg is not None:
            score_cols = ["em_strict", "em_strict_stderr", "em_flexible", "em_flexible_stderr"]
            rows = [[s, v] + [r.get(c) for c in score_cols] for s, by_v in self.scores.items() for v, r in by_v.items()]
            lg.log_table("gsm8k/scores", columns=["setting", "variant", *score_cols], data=rows)
            cols = ["variant", "split", "num_fewshot", "doc_id", "question", "target", "generation", "extracted_strict",
                    "correct_strict", "extracted_flexible", "correct_flexible"]
            lg.log_table("gsm8k/generations", columns=cols, data=[[r.get(c) for c in cols] for r in self.generations])

    def record_files(self) -> list[str]:
        """For summary.json's file list (RunSummary)."""
        path = getattr(self, "_generations_path", None)
        return [path] if path and os.path.isfile(path) else []

    def results_summary(self) -> dict[str, Any]:
        """For summary.json: scores per setting and variant, and the selection's choice per shot count."""
        protocol = {"by": f"em_{self.hparams.select_by}", "variant_keys": ["model.init_args.laser", "model.init_args.search"],
                    "evaluation_keys": ["data.init_args.num_fewshot"]}  # a shot count is an evaluation within a task
        return {"gsm8k": {"scores": self.scores, "selected": {f"{k}shot": v for k, v in self.chosen.items()},
                          "generations": GENERATIONS_FILE}, "selection_protocol": protocol}

    def configure_optimizers(self):
        return None  # evaluation only
