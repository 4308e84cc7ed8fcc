"""CausalLMModule: a pretrained Hugging Face causal LM at a training checkpoint, evaluated with and without LASER."""
from __future__ import annotations

import math
import os
from typing import Any, Literal

import lightning as L
import torch
from torch import nn

from lightning_modules.laser import factorise, truncated
from lightning_modules.pretrained import (FULL, LaserGrid, LaserSpec, PretrainedRecord, check_source, laser_variants, load_causal_lm,
                                          require_packages)
from lightning_modules.prompt_metrics import AnswerVsGenericMetrics, prompt_scores
from run_record import files
from run_record.files import PREDICTIONS_FILE
from run_record.kinds import PRETRAINED_PROMPTS
from run_record.names import eval_key, evaluation_set, prompt_group

VARIANT_KEYS = ("model.init_args.laser", "model.init_args.search")  # grid keys that only choose the variants



class CausalLMModule(PretrainedRecord, L.LightningModule):
    """Next-token probabilities of the answer vs the generic token after each prompt (``main.py test``).

    Logged per variant (``full``, each name in ``laser`` and each point of ``search``): ``test/<variant>/<metric>``
    over all prompts and ``test/<variant>:<prompt type>/<metric>``, metrics ``p_answer``, ``p_generic`` (of " the"),
    ``log_ratio`` (log P(answer) / P(generic)), ``acc`` (answer is the argmax) and, for IOI, ``logit_diff`` (IO - S).
    ``predictions.jsonl`` in the run directory holds every prompt with every variant's numbers and argmax token.

    Args:
        model_name: a hub id (``EleutherAI/pythia-410m``), a local save_pretrained directory, or a folder with a GGUF
            file (``gguf_file``: model and tokenizer both load from it, dequantised to ``dtype``).
        revision: the checkpoint (Pythia: ``step0`` ... ``step143000``; checked before anything is downloaded).
        dtype: weights' dtype. LASER's SVD always runs in float32 at least.
        laser: ``{variant name: [LaserSpec, ...]}``; each variant truncates its matrices while it is evaluated
            and restores them bit for bit afterwards, so one loaded model serves every variant.
        search: a LaserGrid (matrix role x layer band x rho), every point one more variant; with a selection split
            the best on it by ``select_by`` is chosen (the test split plays no part in the choice).
        svd: ``exact`` (torch.linalg.svd) or ``randomized`` (torch.svd_lowrank, for large matrices at low rank).
        vocab_size / noise_id: linked from the data by the CLI: the tokenizer's size (checked against the model)
            and the generic token's id.
        select_by: with a selection split (``data.selection_fraction``), the metric whose best value on that split
            chooses the variant (summary.json ``results.selection``); higher is better.
        select_keeping: only variants that keep at least this fraction of the full model's P(answer) on the selection
            split are candidates (0: any). A ratio P(answer) / P(" the") also rises when both collapse, to some third
            token: this keeps the choice to variants that still answer.
    """

    results_title = "Next-token probabilities after each prompt"
    SUBCOMMANDS = ("test",)  # evaluation only (pipeline/preflight.py)
    USES_HUB = True  # the CLI decides the hub mode before the model loads (pipeline/hub_mode.py)

    def __init__(
        self,
        model_name: str,
        revision: str = "main",
        dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        laser: dict[str, list[LaserSpec]] | None = None,
        search: LaserGrid | None = None,
        svd: Literal["exact", "randomized"] = "exact",
        cache_dir: str | None = None,
        vocab_size: int | None = None,
        noise_id: int | None = None,
        select_by: Literal["p_answer", "log_ratio", "acc", "logit_diff"] = "log_ratio",
        select_keeping: float = 0.0,
        gguf_file: str | None = None,
    ):
        super().__init__()
        if svd not in ("exact", "randomized"):
            raise ValueError(f"model.svd must be exact | randomized, got {svd!r}")
        if not 0.0 <= select_keeping <= 1.0:
            raise ValueError(f"model.select_keeping must be in [0, 1], got {select_keeping}")
        self.save_hyperparameters()
        self.net = load_causal_lm(model_name, revision, getattr(torch, dtype), cache_dir, gguf_file)
        self.net.requires_grad_(False)
        rows = self.net.get_output_embeddings().weight.shape[0]
        if vocab_size is not None and vocab_size > rows:
            raise ValueError(f"the tokenizer has {vocab_size} tokens but {model_name} has {rows} output rows: mismatched tokenizer?")
        self.grid = search.cells() if search else []
        self.variants = laser_variants(self.net, {**(laser or {}), **(search.variants() if search else {})})
        self.svd = svd
        self.metrics: nn.ModuleList | None = None

    def record_kinds(self) -> list[str]:
        return [PRETRAINED_PROMPTS]

    @staticmethod
    def check_before_build(model: dict, data: dict, context: dict) -> None:
        """Before the model loads (pipeline/preflight.py): the model source exists (a GGUF file is named), and
        logit_diff (IO - S) exists only for IOI prompts."""
        require_packages(model.get("gguf_file"))
        if model.get("model_name"):
            check_source(model["model_name"], model.get("gguf_file"))
        if model.get("select_by") == "logit_diff" and data.get("task", "ioi") != "ioi" and data.get("selection_fraction"):
            raise ValueError("model.init_args.select_by logit_diff needs IOI prompts (a competing name); use log_ratio, "
                             "p_answer or acc")

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        self.split_names = getattr(dm, "split_names", ["test"])
        self.metrics = nn.ModuleDict({split: nn.ModuleList(AnswerVsGenericMetrics(dm.prompt_types) for _ in self.variants)
                                      for split in self.split_names})
        self.selection: dict[str, Any] = {}
        self.predictions: dict[tuple[str, int], dict[str, dict]] = {}  # (split, row) -> variant -> that prompt's numbers

    def on_test_epoch_start(self) -> None:
        # one factorisation per matrix for the whole test (the weights do not change)
        self._factors = factorise(self.net, self.variants.values(), randomized=self.svd == "randomized")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        split = self.split_names[dataloader_idx]
        for metric, (variant, ranks) in zip(self.metrics[split], self.variants.items()):
            with truncated(self.net, ranks, self._factors):
                # only the last position's logits are needed: the model computes no others (logits_to_keep)
                logits = self.net(input_ids=batch["input_ids"], logits_to_keep=1).logits[:, -1]
            args = (batch["answer_id"], batch["generic_id"], batch["competitor_id"])
            metric.update(logits, *args, batch["type_id"])
            scores = {k: v.tolist() for k, v in prompt_scores(logits, *args).items()}
            for i, row in enumerate(batch["row"].tolist()):
                self.predictions.setdefault((split, row), {})[variant] = {
                    "p_answer": math.exp(scores["lp_answer"][i]), "p_generic": math.exp(scores["lp_generic"][i]),
                    "log_ratio": scores["lp_answer"][i] - scores["lp_generic"][i],
                    "logit_diff": None if math.isnan(scores["logit_diff"][i]) else scores["logit_diff"][i],
                    "argmax_id": scores["argmax"][i]}

    def on_test_epoch_end(self) -> None:
        overall: dict[str, dict[str, dict[str, float]]] = {}
        for split, metrics in self.metrics.items():
            test_set = evaluation_set(None, selection=split == "selection")
            for metric, variant in zip(metrics, self.variants):
                for group, values in metric.compute().items():
                    key = variant if group == "all" else prompt_group(variant, group)
                    self.log_dict({eval_key("test", key, k, test_set): v.float() for k, v in values.items()})
                    if group == "all":
                        overall.setdefault(split, {})[variant] = {k: float(v) for k, v in values.items()}
                metric.reset()
        if "selection" in overall:  # the choice reads the selection split only
            by, sel = self.hparams.select_by, overall["selection"]
            keep = self.hparams.select_keeping * sel[FULL]["p_answer"]
            candidates = [v for v in self.variants if sel[v]["p_answer"] >= keep]  # the full model always is one
            chosen = max(candidates, key=lambda v: sel[v][by])  # ties keep the full model
            self.selection = {"by": by, "selected": chosen, "keeping": self.hparams.select_keeping, "candidates": len(candidates),
                              "selection": {v: r[by] for v, r in overall["selection"].items()},
                              "test": {v: r[by] for v, r in overall["test"].items()}}
            print(f"\nSelected on the selection split by {by}: {chosen} ({overall['selection'][chosen][by]:.4f}); "
                  f"on test {overall['test'][chosen][by]:.4f} (full model {overall['test'][FULL][by]:.4f})")
        self._factors = {}
        if self.trainer.is_global_zero:
            self._write_predictions()

    def _write_predictions(self) -> None:
        """predictions.jsonl: each prompt (split, text, answer, competitor, type) with every variant's P(answer),
        P(generic), log ratio, logit difference and argmax token, so any mean can be audited."""
        dm = self.trainer.datamodule
        decode = lambda i: dm.tokenizer.decode([i])  # noqa: E731
        records = []
        for (split, row), by_variant in sorted(self.predictions.items()):
            prompt = dm.splits[split][row]
            records.append({"split": split, "row": row, **{k: prompt[k] for k in ("prompt", "answer", "competitor", "type")},
                            "variants": {v: {k: x for k, x in m.items() if k != "argmax_id"} | {"argmax": decode(m["argmax_id"])}
                                         for v, m in by_variant.items()}})
        self._predictions_path = os.path.join(self.trainer.log_dir, PREDICTIONS_FILE)
        files.write_jsonl(self._predictions_path, records)

    def record_files(self) -> list[str]:
        """For summary.json's file list (RunSummary)."""
        path = getattr(self, "_predictions_path", None)
        return [path] if path and os.path.isfile(path) else []

    def results_summary(self) -> dict[str, Any]:
        """For summary.json: the choice on the selection split, and (for a sweep's table) how choices compare: by which
        metric, and which grid keys only choose variants."""
        out = {"selection_protocol": {"by": self.hparams.select_by, "variant_keys": list(VARIANT_KEYS), "evaluation_keys": [],
                                      "keeping": {"metric": "p_answer", "fraction": self.hparams.select_keeping}},
               "predictions": PREDICTIONS_FILE}
        if self.grid:
            out["search_grid"] = self.grid
        return out | ({"selection": self.selection} if getattr(self, "selection", None) else {})

    def configure_optimizers(self):
        return None  # evaluation only
