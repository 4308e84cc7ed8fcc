"""NoisyRecallModule: trains the toy transformer and measures where the noise lives (LASER sweep at validation)."""
from __future__ import annotations

from dataclasses import asdict, replace
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from lightning_modules import memory
from lightning_modules.laser import SVDFactors, factorise, rank_for, target_groups, target_shapes, truncated
from lightning_modules.metrics import TriggerRecallMetrics, evaluate_recall
from lightning_modules.transformer import Transformer, TransformerConfig
from run_record.names import FULL, TRAIN_LOSS, eval_key, laser_variant
from run_record.contract import RecordedModule


def _default_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3)


def sequence_loss(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``NoisyRecallModule.loss`` of a one-sequence batch, written without boolean indexing so that torch.func can
    vmap it over sequences (per-sequence gradients: GradientNoise; stacked replicas: benchmarks/stacking.py): the
    mean cross-entropy of the next token over the scored positions. logits (B, T-1, V), tokens (B, T), mask (B, T-1)."""
    ce = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten(), reduction="none")
    scored = mask.flatten().to(ce.dtype)
    return (ce * scored).sum() / scored.sum().clamp_min(1)


class NoisyRecallModule(RecordedModule, L.LightningModule):
    # settings that only change what is evaluated: a checkpoint may be evaluated with other values (run_record/checkpoints.py)
    # settings that do not change the model (what is evaluated, how fast it is computed): a checkpoint may be
    # evaluated or resumed with other values (run_record/checkpoints.py)
    EVALUATION_HPARAMS = ("laser_targets", "laser_rhos", "early_eval_steps", "matmul_precision", "compile")
    results_title = "Results on the clean test set at trigger positions"
    trained_by_fit = True  # `validate` / `test` without a checkpoint evaluate an untrained model: the CLI says so

    """Toy transformer on noisy in-context recall.

    Logged validation metrics (on the clean test set, at scored trigger positions), for ``<variant>`` = ``full``
    and each ``<param>@rho<rho>`` of ``laser_targets`` x ``laser_rhos``: ``val/<variant>/{p_correct,p_noise,acc,loss}``.
    A rho that keeps the full rank (rho 1) is the full model itself: it is evaluated once, as ``full``.

    Args:
        model: the transformer's configuration.
        optimizer / scheduler: set in YAML (class_path + init_args); the scheduler steps every optimizer step.
        laser_targets: parameter names (glob patterns allowed) whose truncations are evaluated at validation.
        laser_rhos: rank fractions; rank = floor(rho * min(m, n)).
        early_eval_steps: more evaluations of every variant on the main test set at these optimizer steps (step 0:
            the initialisation), logged like the validations: the early curves where the FF learns the noise before
            the induction head forms, which ``val_check_interval`` alone is too coarse to show.
        matmul_precision: float32 matmuls at ``highest`` (true fp32), ``high`` (TF32 on NVIDIA GPUs) or ``medium`` (bf16
            passes); null leaves torch's setting. Mixed precision itself is Lightning's ``trainer.precision``
            (``bf16-mixed``). LASER's SVDs, the probes and the spectra compute in float32 whatever these say.
        compile: ``torch.compile`` the network's training forward (the evaluations stay eager: they truncate weights
            in place between variants).
        constructed: evaluate the associative-memory transformer the theory builds (lightning_modules/memory.py)
            instead of a trained one: its architecture from ``model``, its weights from the data once it is known
            (``setup``); ``validate`` / ``test`` only. ``construction_scales``: its free scales (``ConstructionScales``).
        vocab_size / noise_id: linked from the datamodule by the CLI.
    """

    def __init__(
        self,
        model: TransformerConfig | None = None,
        optimizer: OptimizerCallable = _default_optimizer,
        scheduler: LRSchedulerCallable | None = None,
        laser_targets: list[str] | None = None,
        laser_rhos: list[float] | None = None,
        early_eval_steps: list[int] | None = None,
        matmul_precision: Literal["highest", "high", "medium"] | None = None,
        compile: bool = False,
        constructed: bool = False,
        construction_scales: dict[str, float] | None = None,
        vocab_size: int | None = None,
        noise_id: int | None = None,
    ):
        super().__init__()
        if isinstance(model, dict):  # from a checkpoint's hyper_parameters (load_from_checkpoint)
            model = TransformerConfig(**model)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        # plain types only, so checkpoints load with torch.load(weights_only=True)
        self.hparams["model"] = asdict(model) if model is not None else None
        if vocab_size is None or noise_id is None:
            raise ValueError("model.vocab_size and model.noise_id must be set (the CLI links them from the datamodule)")
        cfg = replace(model or TransformerConfig(), vocab_size=vocab_size)
        if constructed:  # the theory's model: built from the data in setup, not trained
            cfg = memory.constructed_config(cfg)
            try:
                self.scales = memory.ConstructionScales(**(construction_scales or {}))
            except TypeError as err:
                raise ValueError(f"model.construction_scales: {err} (fields: position, induction, output, global_)") from None
            self.trained_by_fit = False  # validate / test evaluate it as built: nothing to load
        self.constructed_from: int | None = None  # the training length it was built for
        self.net = Transformer(cfg)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        groups = target_groups(self.net, laser_targets if laser_targets is not None else ["layers.1.ff.w2"])
        rhos = laser_rhos if laser_rhos is not None else [0.0, 0.1, 0.2, 1.0]
        for rho in rhos:
            if not 0.0 <= rho <= 1.0:
                raise ValueError(f"model.laser_rhos entries must be in [0, 1], got {rho}")
        if matmul_precision not in (None, "highest", "high", "medium"):
            raise ValueError(f"model.matmul_precision must be highest | high | medium or null, got {matmul_precision!r}")
        # not a submodule (parameter names stay layers.1.ff.w2): the compiled callable runs the same parameters
        object.__setattr__(self, "_train_forward", torch.compile(self.net) if compile else self.net)
        if any(s < 0 for s in early_eval_steps or []):
            raise ValueError(f"model.early_eval_steps must be >= 0, got {early_eval_steps}")
        self.early_eval_steps = sorted(set(early_eval_steps or []))
        shapes = target_shapes(self.net, [n for _, names in groups for n in names])
        # variant -> {matrix: rank}; ``full`` truncates nothing. laser_grid: (target, rho) -> the variant evaluated
        # (a target of several matrices truncates them all at once; ``ranks`` says each one's rank)
        self.variants: dict[str, dict[str, int]] = {FULL: {}}
        self.laser_grid: list[dict] = []
        for target, names in groups:
            for rho in rhos:
                ranks = {n: rank_for(shapes[n], rho) for n in names}
                full_ranks = {n: min(shapes[n]) for n in names}
                variant = FULL if ranks == full_ranks else laser_variant(target, rho)
                if variant != FULL:
                    self.variants[variant] = ranks
                self.laser_grid.append({"target": target, "rho": rho, "rank": min(ranks.values()),
                                        "full_rank": min(full_ranks.values()), "ranks": ranks, "variant": variant})
        # ModuleDict keys may not contain '.', so metrics are keyed by position
        self.val_metrics = nn.ModuleList(TriggerRecallMetrics(noise_id) for _ in self.variants)
        # more validation sets (length generalisation, datamodule.eval_set_names): one metric list per set, in setup
        self.set_names: list[str] = []
        self.set_metrics = nn.ModuleList()
        self._factors: dict[str, SVDFactors] = {}
        self._intervals: dict[str, dict[str, list[float] | None]] = {}  # variant -> metric key -> 95% interval
        self._sequences: dict[str, int] = {}  # test set -> sequences the intervals are over

    @staticmethod
    def check_before_build(model: dict, data: dict, context: dict) -> str | None:
        """Before anything is allocated (pipeline/preflight.py): refuse a run that cannot fit in memory, naming the
        field; the estimated time per step when it is long."""
        from lightning_modules import cost

        if model.get("constructed") and context["subcommand"] == "fit":
            raise ValueError("model.init_args.constructed: true builds the theory's model from the data; it is evaluated "
                             "with `validate` or `test`, not trained with `fit`")

        return cost.check(model, data, context["device"], context["max_steps"] if context["subcommand"] == "fit" else None)

    def setup(self, stage: str) -> None:
        if self.hparams.get("matmul_precision"):
            torch.set_float32_matmul_precision(self.hparams.matmul_precision)
        dm = self.trainer.datamodule if self.trainer is not None else None
        if self.hparams.get("constructed") and dm is not None and self.constructed_from != dm.gen.seq_len:
            self.build_constructed(dm.gen)
        names = list(getattr(dm, "eval_set_names", []) or [])
        if names and names != self.set_names:
            self.set_names = names
            self.set_metrics = nn.ModuleList(
                nn.ModuleList(TriggerRecallMetrics(self.hparams.noise_id, dm.global_answer) for _ in self.variants) for _ in names
            ).to(self.device)

    @torch.no_grad()
    def build_constructed(self, gen) -> None:
        """Set the network's weights to the theory's construction for the data source ``gen`` (its bigram, its
        training length), from the network's own random embeddings, positions and first-layer value/output maps."""
        built = memory.construct(self.net, gen.global_next_token(), gen.seq_len, scales=self.scales)
        self.net.load_state_dict(built.state_dict())
        self.constructed_from = gen.seq_len

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens)

    def check_data(self, datamodule) -> None:
        """Called by the CLI before anything runs: the data must fit the model's position table."""
        max_len = self.net.cfg.max_len
        if max_len is not None and getattr(datamodule, "seq_len", 0) > max_len:
            raise ValueError(
                f"data.seq_len / data.test_seq_len ({datamodule.seq_len}) exceeds model.model.max_seq_len ({max_len}) "
                "of the absolute position table; raise max_seq_len or use positional: rope | sinusoidal"
            )

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the next token at the scored positions (``batch["mask"]``): the training objective."""
        tokens, mask = batch["tokens"], batch["mask"]
        logits = self._train_forward(tokens[:, :-1]) if self.training else self.net(tokens[:, :-1])
        if not mask.any():  # a batch with no repeated trigger (short sequences): nothing to learn, not a NaN
            return logits.sum() * 0.0
        return F.cross_entropy(logits[mask], tokens[:, 1:][mask])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        bad = not bool(torch.isfinite(loss))
        if self.trainer.world_size > 1:  # every rank stops together, or the others wait forever
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            raise FloatingPointError(f"train/loss is {float(loss.detach())} at step {self.global_step}: training diverged "
                                     "(a lower learning rate or gradient clipping may help)")
        self.log(TRAIN_LOSS, loss, prog_bar=True)
        return loss

    @torch.no_grad()
    def evaluate(self, dataloader) -> dict[str, float]:
        """The full model's metrics on ``dataloader``, outside Lightning's loops (callbacks use it around a
        mid-training truncation). Not reduced across DDP ranks: each rank evaluates the whole dataloader."""
        was_training = self.training
        self.eval()
        out = evaluate_recall(self.net, dataloader, self.hparams.noise_id, device=self.device)
        self.train(was_training)
        return out

    def on_validation_epoch_start(self) -> None:
        # one SVD per target matrix per validation, shared by all its ranks
        self._factors = factorise(self.net, self.variants.values())

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        tokens = batch["tokens"]
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        metrics = self.val_metrics if dataloader_idx == 0 else self.set_metrics[dataloader_idx - 1]
        for metric, ranks in zip(metrics, self.variants.values()):
            with truncated(self.net, ranks, self._factors):
                logits = self.net(inputs)
            metric.update(logits, targets, batch["answer"], batch["mask"], inputs)

    def on_validation_epoch_end(self) -> None:
        stage = "test" if self.trainer.testing else "val"
        for test_set, metrics in [(None, self.val_metrics), *zip(self.set_names, self.set_metrics)]:
            for metric, variant in zip(metrics, self.variants):
                values = metric.compute()  # already reduced across DDP ranks
                self.log_dict({eval_key(stage, variant, k, test_set): v.float() for k, v in values.items()}, prog_bar=False)
                # the newest evaluation's intervals, as summary.json's variants hold its means (key as there)
                self._intervals.setdefault(variant, {}).update(
                    {k + (f"@{test_set}" if test_set else ""): ci for k, ci in metric.computed_intervals.items()})
                self._sequences[test_set or "main"] = metric.computed_sequences
                metric.reset()
        # the weights evaluated are those after global_step optimizer steps: log them there, where the probes and
        # spectra of the same weights are (Lightning's own step for validation is one less)
        self.log("step", float(self.global_step))
        self._factors = {}

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.validation_step(batch, batch_idx, dataloader_idx)

    on_test_epoch_start = on_validation_epoch_start
    on_test_epoch_end = on_validation_epoch_end

    def attached_datamodule(self):
        """The trainer's datamodule, None when the module is used without a trainer."""
        try:
            return self.trainer.datamodule
        except RuntimeError:  # Lightning: "not attached to a Trainer"
            return None

    def variant_specs(self) -> dict[str, dict]:
        """For summary.json: what each variant is (its matrices' ranks), so no reader parses a variant's name."""
        return {v: {"ranks": ranks} for v, ranks in self.variants.items()}

    def results_summary(self) -> dict:
        """For summary.json: the LASER grid, each (target, rho) with the variant that holds its numbers, and the test
        sets (the main one, and each length-generalisation set with its length and placement)."""
        dm = self.attached_datamodule()
        sets = [{"name": None, "length": getattr(dm, "test_seq_len", None), "placement": "main"}]
        sets += [{"name": n, "length": length, "placement": p} for n, length, p in getattr(dm, "eval_sets", [])]
        out = {"laser_grid": self.laser_grid, "test_sets": sets, "t_train": getattr(getattr(dm, "gen", None), "seq_len", None)}
        if self._intervals:
            out["intervals"] = {"over": "sequences", "method": "delta", "n": self._sequences, "variants": self._intervals}
        if self.hparams.get("constructed"):  # what was evaluated: the theory's model, built for this training length
            out["constructed"] = {"scales": asdict(self.scales), "t_train": self.constructed_from}
        return out

    def on_train_start(self) -> None:
        self._early_evaluation()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self._early_evaluation()

    @torch.no_grad()
    def _early_evaluation(self) -> None:
        """Every variant on the main test set at the steps of ``early_eval_steps`` that no validation falls on."""
        step, trainer = self.global_step, self.trainer
        regular = step > 0 and isinstance(trainer.val_check_batch, int) and step % trainer.val_check_batch == 0
        if step not in self.early_eval_steps or regular or getattr(self, "_early_done", None) == step:
            return
        self._early_done = step
        loader = trainer.datamodule.val_dataloader()
        loader = loader[0] if isinstance(loader, (list, tuple)) else loader
        metrics = [TriggerRecallMetrics(self.hparams.noise_id, sync_on_compute=False).to(self.device) for _ in self.variants]
        factors = factorise(self.net, self.variants.values())
        was_training = self.training
        self.eval()
        for batch in loader:
            tokens = batch["tokens"].to(self.device)
            for metric, ranks in zip(metrics, self.variants.values()):
                with truncated(self.net, ranks, factors):
                    logits = self.net(tokens[:, :-1])
                metric.update(logits, tokens[:, 1:], batch["answer"].to(self.device), batch["mask"].to(self.device))
        self.train(was_training)
        if trainer.is_global_zero:  # each rank evaluated the whole set; rank 0 logs it, at the step of these weights
            values = {eval_key("val", v, k): float(x) for m, v in zip(metrics, self.variants) for k, x in m.compute().items()}
            for logger in trainer.loggers:
                logger.log_metrics(values, step=step)

    def configure_optimizers(self):
        opt = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.scheduler_factory(opt), "interval": "step"}}
