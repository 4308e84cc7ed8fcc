"""CausalLMModule: a pretrained Hugging Face causal LM at a training checkpoint, evaluated with and without LASER."""
from __future__ import annotations

import contextlib
import math
import os
import time
from typing import Any, Literal

import lightning as L
import torch
from torch import nn

from lightning_modules.laser import factorise, truncated
from lightning_modules.pretrained import (FULL, check_source, laser_variants, LaserGrid, LaserSpec, load_causal_lm,
                                          PretrainedRecord, require_packages, weights_fingerprint)
from lightning_modules.fact_hijack import hijack_results
from lightning_modules.pretrained_attribution import PromptBatch, component_effects, parts_recorder, predict_variants, split_gap
from lightning_modules.prompt_metrics import AnswerVsGenericMetrics, prompt_scores
from run_record import files
from run_record.files import PREDICTIONS_FILE, SINGULAR_EFFECTS_FILE
from run_record.kinds import PRETRAINED_PROMPTS
from run_record.names import eval_key, evaluation_set, prompt_group, split_metric, split_prompt_group

VARIANT_KEYS = ("model.init_args.laser", "model.init_args.search")  # grid keys that only choose the variants



def _check_predict(predict: bool | None, svd: str) -> None:
    if predict and svd != "exact":
        raise ValueError("model.init_args.predict needs model.init_args.svd: exact (a prediction sums the removed "
                         "tail's components, which a randomized SVD does not compute)")


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
        layer_attribution: record the direct logit attribution of log P(answer) / P(" the") to each layer's attention
            and MLP output, per prompt type, on the test split (``results.layer_attribution``; read from the forward
            passes the variants run anyway).
        predict: before the variants are scored, predict each one's change of log P(answer) / P(" the") from the
            singular components of its matrices (``pretrained_attribution``: ``direct`` for the stream-writing
            matrices, ``linear`` for all), on the selection split (or test without one); ``results.prediction`` holds
            the prediction, the measured change, their Spearman correlation and the time of each; every component's
            effect is in ``singular_effects.json``. Needs ``svd: exact`` (the tail's components).
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
        layer_attribution: bool = True,
        predict: bool = False,
    ):
        super().__init__()
        if svd not in ("exact", "randomized"):
            raise ValueError(f"model.svd must be exact | randomized, got {svd!r}")
        _check_predict(predict, svd)
        if not 0.0 <= select_keeping <= 1.0:
            raise ValueError(f"model.select_keeping must be in [0, 1], got {select_keeping}")
        self.save_hyperparameters()
        self.net = load_causal_lm(model_name, revision, getattr(torch, dtype), cache_dir, gguf_file)
        self.fingerprint = weights_fingerprint(self.net)  # before any variant is evaluated
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
        """Before the model loads (pipeline/preflight.py): the model source exists (a GGUF file is named), a
        prediction has the exact SVD it needs, knowledge-hijack cells are valid, and logit_diff (IO - S) exists only
        for IOI prompts."""
        require_packages(model.get("gguf_file"))
        if model.get("model_name"):
            check_source(model["model_name"], model.get("gguf_file"))
        _check_predict(model.get("predict"), model.get("svd", "exact"))
        if data.get("task") == "hijack" and data.get("hijack"):  # the cells, checked before the model loads
            from datamodules.fact_hijack import FactHijack

            spec = data["hijack"]
            (spec if isinstance(spec, FactHijack) else FactHijack(**dict(spec))).check()
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
        # variant -> prompt type -> part -> [sum over prompts, count] of each part's share of the gap, on the test split
        self._layer_sums: dict[str, dict[str, dict[str, list[float]]]] = {}
        self._layer_residual = 0.0  # the largest |sum of the parts - the model's gap| seen
        self.prediction: dict[str, Any] = {}
        self._console_lines: list[str] = []  # printed after the results table, the choice last (console_results)
        self._choice_line = ""

    def on_test_epoch_start(self) -> None:
        self._started = time.perf_counter()
        # one factorisation per matrix for the whole test (the weights do not change)
        self._factors = factorise(self.net, self.variants.values(), randomized=self.svd == "randomized")
        self._svd_seconds = time.perf_counter() - self._started
        if self.hparams.predict:
            self._predict()

    def _predict(self) -> None:
        """Each variant's change of the mean gap on the selection split (test without one), predicted from the singular
        components of its matrices before any variant is scored."""
        dm = self.trainer.datamodule
        split = "selection" if "selection" in self.split_names else "test"
        start = time.perf_counter()
        with torch.inference_mode(False):  # the linear method takes one gradient
            batches = [PromptBatch(b["input_ids"].clone().to(self.device), b["answer_id"].clone().to(self.device),
                                   b["generic_id"].clone().to(self.device)) for b in dm.split_loader(split)]
            targets = [t for ranks in self.variants.values() for t in ranks]
            effects = component_effects(self.net, targets, self._factors, batches, ("direct", "linear"))
        methods = {m: predict_variants(effects, self.variants, m) for m in ("direct", "linear")}
        self.prediction = {"split": split, "n_prompts": effects.n, "gap": effects.gap,
                           "seconds": {"svd": self._svd_seconds, "attribution": time.perf_counter() - start},
                           "variants": {v: {m: methods[m][v] for m in methods} for v in self.variants if v != FULL}}
        self._effects = effects

    def _record_layer_parts(self, variant: str, parts: dict[str, torch.Tensor], type_id: torch.Tensor) -> None:
        total = parts["total"]
        shares = {k: v for k, v in parts.items() if k != "total"}
        self._layer_residual = max(self._layer_residual, float((sum(shares.values()) - total).abs().max()))
        by_type = self._layer_sums.setdefault(variant, {})
        for group, chosen in [("all", torch.ones_like(type_id, dtype=torch.bool))] + [
                (name, type_id == i) for i, name in enumerate(self.trainer.datamodule.prompt_types)]:
            if not chosen.any():
                continue
            sums = by_type.setdefault(group, {})
            for k, v in parts.items():
                entry = sums.setdefault(k, [0.0, 0])
                entry[0] += float(v[chosen].double().sum())
                entry[1] += int(chosen.sum())

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        split = self.split_names[dataloader_idx]
        record_parts = self.hparams.layer_attribution and split == "test"
        for metric, (variant, ranks) in zip(self.metrics[split], self.variants.items()):
            with truncated(self.net, ranks, self._factors), (parts_recorder(self.net) if record_parts
                                                                   else contextlib.nullcontext()) as seen:
                # only the last position's logits are needed: the model computes no others (logits_to_keep)
                out = self.net(input_ids=batch["input_ids"], logits_to_keep=1).logits
                if record_parts:
                    prompts = PromptBatch(batch["input_ids"], batch["answer_id"], batch["generic_id"])
                    self._record_layer_parts(variant, split_gap(self.net, seen, prompts, out), batch["type_id"])
            logits = out[:, -1]
            args = (batch["answer_id"], batch["generic_id"], batch["competitor_id"])
            metric.update(logits, *args, batch["type_id"])
            scores = {k: v.tolist() for k, v in prompt_scores(logits, *args).items()}
            for i, row in enumerate(batch["row"].tolist()):
                self.predictions.setdefault((split, row), {})[variant] = {
                    "p_answer": math.exp(scores["lp_answer"][i]), "p_generic": math.exp(scores["lp_generic"][i]),
                    "log_ratio": scores["lp_answer"][i] - scores["lp_generic"][i],
                    "logit_diff": None if math.isnan(scores["logit_diff"][i]) else scores["logit_diff"][i],
                    "argmax_id": scores["argmax"][i], "top_ids": scores["top_ids"][i],
                    "top_p": [math.exp(x) for x in scores["top_lp"][i]]}
        self._progress(batch_idx, dataloader_idx)

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
            self._choice_line = (f"Chosen on the selection split by {by}: {chosen} ({overall['selection'][chosen][by]:.4f}); "
                                 f"on test {overall['test'][chosen][by]:.4f} (full model {overall['test'][FULL][by]:.4f}); "
                                 f"{len(self.variants)} variants scored, every one on the run's page.")
        if self.prediction:
            self._compare_prediction(overall[self.prediction["split"]])
        if getattr(self.trainer.datamodule, "hijack", None) is not None:
            self._summarise_hijack()
        self._factors = {}
        if self.trainer.is_global_zero:
            self._write_predictions()

    def console_results(self, variants: dict[str, dict[str, float | None]]) -> tuple[dict, str]:
        """The console's table: over all prompts of the test split, the full model, the chosen variant and the named
        ones (a search's grid points are on the page), and the choice after it."""
        grid = {c["variant"] for c in self.grid} - {self.selection.get("selected")}
        shown = {v: {k: x for k, x in row.items() if split_metric(k)[1] is None} for v, row in variants.items()
                 if split_prompt_group(v)[1] is None and v not in grid}
        return shown, "\n".join(self._console_lines + ([self._choice_line] if self._choice_line else []))

    def _progress(self, batch_idx: int, dataloader_idx: int) -> None:
        """With the progress bar off (a long CPU run under a scheduler's log), one line per batch scored by every
        variant, with the time so far and the time left."""
        if self.trainer.progress_bar_callback is not None or not self.trainer.is_global_zero:
            return
        batches = self.trainer.num_test_batches[dataloader_idx]
        done = batch_idx + 1 + sum(self.trainer.num_test_batches[:dataloader_idx])
        total = sum(self.trainer.num_test_batches)
        elapsed = time.perf_counter() - self._started
        print(f"scored batch {batch_idx + 1}/{batches} of the {self.split_names[dataloader_idx]} split with all "
              f"{len(self.variants)} variants: {elapsed:.0f} s so far, about {elapsed / done * (total - done):.0f} s left",
              flush=True)

    def _compare_prediction(self, measured: dict[str, dict[str, float]]) -> None:
        """The measured change of the mean log ratio beside the prediction, and their Spearman correlation per method."""
        from torchmetrics.functional import spearman_corrcoef

        p = self.prediction
        for v, entry in p["variants"].items():
            entry["measured"] = measured[v]["log_ratio"] - measured[FULL]["log_ratio"]
        p["seconds"]["search"] = time.perf_counter() - self._started - p["seconds"]["attribution"] - p["seconds"]["svd"]
        p["spearman"], p["spearman_ci"], p["n_variants"] = {}, {}, {}
        for method in ("direct", "linear"):
            pairs = torch.tensor([(e[method], e["measured"]) for e in p["variants"].values() if e[method] is not None],
                                 dtype=torch.float64).reshape(-1, 2)
            p["n_variants"][method] = len(pairs)
            if len(pairs) < 3:
                p["spearman"][method] = p["spearman_ci"][method] = None
                continue
            p["spearman"][method] = float(spearman_corrcoef(pairs[:, 0], pairs[:, 1]))
            # 95% interval over the variants, resampled with replacement (the prompts are fixed)
            g = torch.Generator().manual_seed(0)
            boot = [spearman_corrcoef(*pairs[torch.randint(len(pairs), (len(pairs),), generator=g)].T) for _ in range(1000)]
            boot = torch.stack(boot).double().nan_to_num(0.0)  # a resample of tied values has no rank correlation
            p["spearman_ci"][method] = torch.quantile(boot, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
        p["ranking"] = sorted(p["variants"], key=lambda v: -p["variants"][v]["linear"])
        rho = ", ".join(f"{m} {r:+.2f} [95% {p['spearman_ci'][m][0]:+.2f}, {p['spearman_ci'][m][1]:+.2f}] "
                        f"({p['n_variants'][m]} variants)" for m, r in p["spearman"].items() if r is not None)
        self._console_lines.append(f"Predicted from singular directions in {p['seconds']['attribution']:.1f} s (the search: "
                                   f"{p['seconds']['search']:.1f} s): Spearman with the measured change on the "
                                   f"{p['split']} split: {rho}")

    def _summarise_hijack(self) -> None:
        """Knowledge-hijack prompts: per variant and cell, P(B_fake), P(B), the win rate and the gap; the boundary n*
        and the toy model's logit-gap fit (``lightning_modules/fact_hijack.py``)."""
        test = self.trainer.datamodule.splits["test"]
        rows = [test[i] for i in range(len(test))]
        scores = {row: by_variant for (split, row), by_variant in self.predictions.items() if split == "test"}
        self.hijack = hijack_results(rows, scores)
        for variant, r in self.hijack["variants"].items():
            where = "; ".join(f"k={b['k']}, distance {b['distance']}: n* = {b['measured']}" for b in r["boundaries"])
            self._console_lines.append(f"Knowledge hijack, {variant}: {where}")

    def _write_predictions(self) -> None:
        """predictions.jsonl: each prompt (split, text, answer, competitor, type) with every variant's P(answer),
        P(generic), log ratio, logit difference, argmax token and top 3 tokens with their probabilities, so any mean
        can be audited and the page can show examples."""
        dm = self.trainer.datamodule
        decode = lambda i: dm.tokenizer.decode([i])  # noqa: E731
        records = []
        for (split, row), by_variant in sorted(self.predictions.items()):
            prompt = dm.splits[split][row]
            records.append({"split": split, "row": row, **{k: prompt[k] for k in ("prompt", "answer", "competitor", "type")},
                            "variants": {v: {k: x for k, x in m.items() if k not in ("argmax_id", "top_ids", "top_p")}
                                         | {"argmax": decode(m["argmax_id"]),
                                            "top": [[decode(t), p] for t, p in zip(m["top_ids"], m["top_p"])]}
                                         for v, m in by_variant.items()}})
        self._predictions_path = os.path.join(self.trainer.log_dir, PREDICTIONS_FILE)
        files.write_jsonl(self._predictions_path, records)
        if self.prediction:
            fx = self._effects
            self._effects_path = os.path.join(self.trainer.log_dir, SINGULAR_EFFECTS_FILE)
            files.write_json(self._effects_path, {
                "split": self.prediction["split"], "n_prompts": fx.n, "gap": fx.gap,
                "singular_values": {t: s.tolist() for t, s in fx.singular_values.items()},
                "effects": {m: {t: e.tolist() for t, e in by_target.items()} for m, by_target in fx.effects.items()}})

    def record_files(self) -> list[str]:
        """For summary.json's file list (RunSummary)."""
        paths = [getattr(self, "_predictions_path", None), getattr(self, "_effects_path", None)]
        return [p for p in paths if p and os.path.isfile(p)]

    def results_summary(self) -> dict[str, Any]:
        """For summary.json: the choice on the selection split, and (for a sweep's table) how choices compare: by which
        metric, and which grid keys only choose variants."""
        out = {"selection_protocol": {"by": self.hparams.select_by, "variant_keys": list(VARIANT_KEYS), "evaluation_keys": [],
                                      "keeping": {"metric": "p_answer", "fraction": self.hparams.select_keeping}},
               "predictions": PREDICTIONS_FILE}
        if self.grid:
            out["search_grid"] = self.grid
        if getattr(self, "_layer_sums", None):
            keep = {FULL, (self.selection or {}).get("selected"), *(self.hparams.laser or {})}  # not every grid point
            out["layer_attribution"] = {
                "split": "test", "max_residual": self._layer_residual,
                "n": {group: parts["total"][1] for group, parts in self._layer_sums[FULL].items()},
                "variants": {v: {group: {k: s / n for k, (s, n) in parts.items()} for group, parts in by_type.items()}
                             for v, by_type in self._layer_sums.items() if v in keep}}
        if getattr(self, "prediction", None):
            out["prediction"] = self.prediction | {"file": SINGULAR_EFFECTS_FILE}
        if getattr(self, "hijack", None):
            out["hijack"] = self.hijack
        return out | ({"selection": self.selection} if getattr(self, "selection", None) else {})

    def configure_optimizers(self):
        return None  # evaluation only
