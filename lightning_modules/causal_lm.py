"""CausalLMModule: a pretrained Hugging Face causal LM at a training checkpoint, evaluated with and without LASER."""
from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from torch import nn

from lightning_modules.laser import factorise, truncated
from lightning_modules.metric_keys import eval_key
from lightning_modules.pretrained import FULL, LaserSpec, laser_variants, load_causal_lm, model_info
from lightning_modules.prompt_metrics import AnswerVsGenericMetrics



class CausalLMModule(L.LightningModule):
    """Next-token probabilities of the answer vs the generic token after each prompt (``main.py test``).

    Logged per variant (``full`` and each name in ``laser``): ``test/<variant>/<metric>`` over all prompts and
    ``test/<variant>:<prompt type>/<metric>``, metrics ``p_answer``, ``p_generic`` (of " the"), ``log_ratio``
    (log P(answer) / P(generic)), ``acc`` (answer is the argmax) and, for IOI, ``logit_diff`` (IO - S).

    Args:
        model_name: a hub id (``EleutherAI/pythia-410m``) or a local save_pretrained directory.
        revision: the checkpoint (Pythia: ``step0`` ... ``step143000``; checked before anything is downloaded).
        dtype: weights' dtype. LASER's SVD always runs in float32 at least.
        laser: ``{variant name: [LaserSpec, ...]}``; each variant truncates its matrices while it is evaluated
            and restores them bit for bit afterwards, so one loaded model serves every variant.
        svd: ``exact`` (torch.linalg.svd) or ``randomized`` (torch.svd_lowrank, for large matrices at low rank).
        vocab_size / noise_id: linked from the data by the CLI: the tokenizer's size (checked against the model)
            and the generic token's id.
        select_by: with a selection split (``data.selection_fraction``), the metric whose best value on that split
            chooses the variant (summary.json ``results.selection``); higher is better.
    """

    results_title = "Next-token probabilities after each prompt"
    SUBCOMMANDS = ("test",)  # evaluation only (pipeline/preflight.py)

    def __init__(
        self,
        model_name: str,
        revision: str = "main",
        dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        laser: dict[str, list[LaserSpec]] | None = None,
        svd: Literal["exact", "randomized"] = "exact",
        cache_dir: str | None = None,
        vocab_size: int | None = None,
        noise_id: int | None = None,
        select_by: Literal["p_answer", "log_ratio", "acc", "logit_diff"] = "log_ratio",
    ):
        super().__init__()
        if svd not in ("exact", "randomized"):
            raise ValueError(f"model.svd must be exact | randomized, got {svd!r}")
        self.save_hyperparameters()
        self.net = load_causal_lm(model_name, revision, getattr(torch, dtype), cache_dir)
        self.net.requires_grad_(False)
        rows = self.net.get_output_embeddings().weight.shape[0]
        if vocab_size is not None and vocab_size > rows:
            raise ValueError(f"the tokenizer has {vocab_size} tokens but {model_name} has {rows} output rows: mismatched tokenizer?")
        self.variants = laser_variants(self.net, laser)
        self.svd = svd
        self.metrics: nn.ModuleList | None = None

    def run_info(self) -> dict[str, Any]:
        return model_info(self.net, self.hparams.model_name, self.hparams.revision, self.variants)

    @staticmethod
    def check_before_build(model: dict, data: dict, context: dict) -> None:
        """Before the model loads (pipeline/preflight.py): logit_diff (IO - S) exists only for IOI prompts."""
        if model.get("select_by") == "logit_diff" and data.get("task", "ioi") != "ioi" and data.get("selection_fraction"):
            raise ValueError("model.init_args.select_by logit_diff needs IOI prompts (a competing name); use log_ratio, "
                             "p_answer or acc")

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        self.split_names = getattr(dm, "split_names", ["test"])
        self.metrics = nn.ModuleDict({split: nn.ModuleList(AnswerVsGenericMetrics(dm.prompt_types) for _ in self.variants)
                                      for split in self.split_names})
        self.selection: dict[str, Any] = {}

    def on_test_epoch_start(self) -> None:
        # one factorisation per matrix for the whole test (the weights do not change)
        self._factors = factorise(self.net, self.variants.values(), randomized=self.svd == "randomized")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        for metric, ranks in zip(self.metrics[self.split_names[dataloader_idx]], self.variants.values()):
            with truncated(self.net, ranks, self._factors):
                logits = self.net(input_ids=batch["input_ids"]).logits[:, -1]
            metric.update(logits, batch["answer_id"], batch["generic_id"], batch["competitor_id"], batch["type_id"])

    def on_test_epoch_end(self) -> None:
        overall: dict[str, dict[str, dict[str, float]]] = {}
        for split, metrics in self.metrics.items():
            test_set = "selection" if split == "selection" else None
            for metric, variant in zip(metrics, self.variants):
                for group, values in metric.compute().items():
                    key = variant if group == "all" else f"{variant}:{group}"
                    self.log_dict({eval_key("test", key, k, test_set): v.float() for k, v in values.items()})
                    if group == "all":
                        overall.setdefault(split, {})[variant] = {k: float(v) for k, v in values.items()}
                metric.reset()
        if "selection" in overall:  # the choice reads the selection split only
            by = self.hparams.select_by
            chosen = max(self.variants, key=lambda v: overall["selection"][v][by])  # ties keep the full model
            self.selection = {"by": by, "selected": chosen,
                              "selection": {v: r[by] for v, r in overall["selection"].items()},
                              "test": {v: r[by] for v, r in overall["test"].items()}}
            print(f"\nSelected on the selection split by {by}: {chosen} ({overall['selection'][chosen][by]:.4f}); "
                  f"on test {overall['test'][chosen][by]:.4f} (full model {overall['test'][FULL][by]:.4f})")
        self._factors = {}

    def results_summary(self) -> dict[str, Any]:
        return {"selection": self.selection} if getattr(self, "selection", None) else {}

    def configure_optimizers(self):
        return None  # evaluation only
