"""SingularAttribution: which singular directions of each LASER target carry the association, at the end of training
(and at chosen steps), recorded per component in summary.json (``callbacks.singular_attribution``)."""
from __future__ import annotations

import time
from typing import Any, Literal

import lightning as L
import torch

from callbacks.common import log_scalars, network, require_generator
from datamodules import hijack_prompts
from lightning_modules.laser import rank_for, target_shapes
from lightning_modules.singular_attribution import attribute, last_position_gap, noise_gap_positions
from run_record.contract import SINGULAR_ATTRIBUTION, RecordedCallback


def split_at(record: dict, k: int) -> dict[str, Any]:
    """Where the gap sits, as the removals predict: what the top k components add to it (``top_gap``: the gap kept by
    LASER at rank k minus the gap with the matrix removed) and what the rest add (``tail_gap``: the full gap minus the
    gap kept at rank k). ``carried_by``: ``top`` when the top adds more to the gap than the tail (keeping the top
    keeps the association), ``tail`` when the tail does (keeping the top removes it), ``neither`` when both push
    against it (the matrix does not hold the association)."""
    curve = record["predicted_keep_top"]
    top, tail = curve[k] - curve[0], curve[-1] - curve[k]
    where = "neither" if max(top, tail) <= 0 else "top" if top > tail else "tail"
    return {"top_rank": k, "top_gap": top, "tail_gap": tail, "carried_by": where}


class SingularAttribution(RecordedCallback, L.Callback):
    """For each target matrix (default: the module's LASER targets) the contribution of each singular component to a
    logit gap (``lightning_modules/singular_attribution.py``), at the end of training and at ``at_steps``.

    Args:
        targets: parameter names or globs; None: the run's ``laser_targets``.
        gap: ``noise``: logit(noise) - logit(in-context answer) at the scored triggers of ``n_sequences`` clean test
            sequences; ``hijack``: logit(o) - logit(b) after the final q of hijack prompts at T_train with
            ``hijack_pairs`` in-context pairs.
        at_steps: optimizer steps at which to attribute during training as well (logged as
            ``attribution/<matrix>/{top_gap,tail_gap}``).
        top_rho: where the top ends for ``top_gap`` / ``tail_gap`` (the kept fraction of the rank, as LASER's rho).
    """

    record_name = SINGULAR_ATTRIBUTION

    def __init__(self, targets: list[str] | None = None, gap: Literal["noise", "hijack"] = "noise", n_sequences: int = 64,
                 at_steps: list[int] | None = None, hijack_pairs: int = 2, top_rho: float = 0.1, seed: int = 0,
                 chunk: int = 8):
        if n_sequences < 1 or chunk < 1 or hijack_pairs < 0 or not 0 < top_rho <= 1:
            raise ValueError(f"SingularAttribution: n_sequences, chunk >= 1, hijack_pairs >= 0, top_rho in (0, 1]; got "
                             f"{n_sequences}, {chunk}, {hijack_pairs}, {top_rho}")
        if gap not in ("noise", "hijack"):
            raise ValueError(f"SingularAttribution.gap must be noise | hijack, got {gap!r}")
        self.targets, self.gap, self.n_sequences = targets, gap, n_sequences
        self.at_steps = sorted(set(at_steps or []))
        self.hijack_pairs, self.top_rho, self.seed, self.chunk = hijack_pairs, top_rho, seed, chunk
        self.matrices: list[str] = []
        self.shapes: dict[str, tuple[int, int]] = {}
        self.final: dict[str, Any] = {}
        self.over_training: dict[str, dict[str, Any]] = {}

    def check_config(self, model: torch.nn.Module, datamodule: Any) -> None:
        require_generator(self, datamodule)
        patterns = self.targets if self.targets is not None else list(getattr(model, "hparams", {}).get("laser_targets") or [])
        if not patterns:
            raise ValueError("SingularAttribution.targets: none given and the model has no laser_targets")
        # a typo fails before training; every matrix of a joint target (a+b) and a layer's W_O W_V (attn.ov) too
        self.shapes = target_shapes(network(model), patterns)
        self.matrices = sorted(self.shapes)
        if self.gap == "hijack":
            t = datamodule.gen.seq_len
            if self.hijack_pairs > len(hijack_prompts.pair_slots(t, "late", t)):
                raise ValueError(f"SingularAttribution.hijack_pairs {self.hijack_pairs} do not fit a {t}-token prompt")

    def _where(self, trainer: L.Trainer, pl_module: L.LightningModule):
        dm, device = trainer.datamodule, pl_module.device
        g = torch.Generator().manual_seed(self.seed)
        if self.gap == "noise":
            batch = dm.clean_generator().sample(self.n_sequences, g)
            where = noise_gap_positions(batch, pl_module.hparams.noise_id)
        else:
            p = hijack_prompts.build(dm.bigram, self.hijack_pairs, dm.gen.seq_len, "late", t_train=dm.gen.seq_len,
                                     n_prompts=self.n_sequences, seed=self.seed)
            where = last_position_gap(p.tokens, p.o, p.b)
        return type(where)(*(x.to(device) for x in (where.tokens, where.mask, where.plus, where.minus)))

    def _ranks(self, pl_module: L.LightningModule, name: str, shape) -> list[int]:
        grid = getattr(pl_module, "laser_grid", []) or []
        ranks = [cell.get("ranks", {}).get(name, cell["rank"]) for cell in grid
                 if cell["target"] == name or name in cell.get("ranks", {})]
        # the full rank is the full model (the figure's dashed line), measured already
        return sorted(set(ranks + [rank_for(tuple(shape), self.top_rho)]) - {min(shape)})

    @torch.no_grad()
    def _attribute(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        net = network(pl_module)
        was_training = net.training
        net.eval()
        where = self._where(trainer, pl_module)
        out = {}
        for name in self.matrices:
            shape = self.shapes[name]
            found = attribute(net, name, where, ranks=self._ranks(pl_module, name, shape), chunk=self.chunk)
            record, k = found.as_dict(), rank_for(tuple(shape), self.top_rho)
            # the split with its 95% interval, bootstrapped over the sequences (prompts) the gap averages
            out[name] = record | split_at(record, k) | found.split_interval(k) | {"n_sequences": int((found.counts > 0).sum())}
        net.train(was_training)
        return out

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if step in self.at_steps and str(step) not in self.over_training and trainer.is_global_zero:
            records = self._attribute(trainer, pl_module)
            self.over_training[str(step)] = {m: {k: r[k] for k in ("gap", "top_gap", "tail_gap", "carried_by")}
                                             for m, r in records.items()}
            log_scalars(trainer, {f"attribution/{m}/{k}": r[k] for m, r in records.items() for k in ("top_gap", "tail_gap")})

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            start = time.perf_counter()
            self.final = self._attribute(trainer, pl_module)
            self.final_step = trainer.global_step
            self.seconds = round(time.perf_counter() - start, 3)  # its cost, beside the run's wall time

    def summary(self) -> dict[str, Any]:
        return {"gap": self.gap, "n_sequences": self.n_sequences, "top_rho": self.top_rho,
                "step": getattr(self, "final_step", None), "seconds": getattr(self, "seconds", None),
                "matrices": self.final, "over_training": self.over_training}
