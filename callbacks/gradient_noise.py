"""GradientNoise: the paper's explanation of why feed-forward layers learn the noise token first, measured.

Chen, Bruna & Bietti (2406.03068, Sec. 4): at initialisation the gradient that raises the noise token's logit after
a trigger is *coherent* for feed-forward weights (every example pushes the same way: trigger -> noise) and *noisy*
for attention weights (the push depends on which tokens happen to be in the context). Per parameter group, each
example's loss gradient is projected on that direction; the ratio of the projections' mean to their standard
deviation is the group's signal-to-noise ratio.
"""
from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn
import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from callbacks.common import log_scalars, network, probe_batch, require_generator, trainable_matrices
from lightning_modules.laser import select_parameters
from lightning_modules.noisy_recall import sequence_loss
from run_record.names import gradnoise_key
from run_record.contract import RecordedCallback, GRADIENT_NOISE


def default_groups(net: nn.Module) -> dict[str, list[str]]:
    """One group per trainable matrix, except that a layer's feed-forward matrices form one group
    (``layers.1.ff``: w1 and w2 together), as in the paper's FF vs W_K / W_V / W_O comparison."""
    groups: dict[str, list[str]] = {}
    for name in trainable_matrices(net):
        key = name.rsplit(".", 1)[0] if ".ff." in name else name
        groups.setdefault(key, []).append(name)
    return groups


def noise_margin(logits: torch.Tensor, mask: torch.Tensor, noise_id: int) -> torch.Tensor:
    """Mean over scored positions of logit(noise) - mean logit: what a step "towards the noise token" raises."""
    scored = logits[mask]
    return (scored[:, noise_id] - scored.mean(-1)).mean()


def projected_gradients(
    pl_module: nn.Module, batch: dict[str, torch.Tensor], groups: dict[str, list[nn.Parameter]], noise_id: int,
    max_floats: int = 1 << 26,
) -> dict[str, torch.Tensor]:
    """Per group, each example's descent direction (minus the gradient of its loss, ``sequence_loss``: the training
    loss of a one-sequence batch) projected on the unit direction that raises the noise margin over the batch:
    positive values push towards the noise token. Examples are the batch's sequences with at least one scored trigger.

    The per-example gradients come from one vmapped pass (torch.func: vmap of grad) per chunk of examples, the chunk
    holding at most ``max_floats`` gradient numbers, instead of a backward pass per example (hundreds of tiny
    launches on a GPU). Attention uses SDPA's math kernel there: the fused kernels have no batching rule."""
    net = network(pl_module)
    examples = batch["mask"].any(1).nonzero().flatten()
    params = [p for ps in groups.values() for p in ps]
    tokens, mask = batch["tokens"][examples], batch["mask"][examples]
    with torch.enable_grad():
        margin = noise_margin(net(tokens[:, :-1]), mask, noise_id)
        direction = torch.autograd.grad(margin, params, allow_unused=True)
    units, i = {}, 0
    for g, ps in groups.items():
        d = [torch.zeros_like(p) if x is None else x for p, x in zip(ps, direction[i : i + len(ps)])]
        norm = torch.sqrt(sum((x.double() ** 2).sum() for x in d))
        units[g] = [x / norm if norm > 0 else x for x in d]
        i += len(ps)
    name = {id(p): n for n, p in net.named_parameters()}
    trained = {name[id(p)]: p.detach() for p in params}
    fixed = {n: p.detach() for n, p in net.named_parameters() if n not in trained} | dict(net.named_buffers())

    def loss_of(weights: dict[str, torch.Tensor], seq: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
        logits = functional_call(net, {**fixed, **weights}, (seq[None, :-1],))
        return sequence_loss(logits, seq[None], scored[None])

    per_example = vmap(grad(loss_of), in_dims=(None, 0, 0))
    size = max(1, max_floats // max(1, sum(p.numel() for p in params)))
    proj: dict[str, list[torch.Tensor]] = {g: [] for g in groups}
    with sdpa_kernel(SDPBackend.MATH):
        for start in range(0, len(examples), size):
            grads = per_example(trained, tokens[start : start + size], mask[start : start + size])
            for g, ps in groups.items():
                proj[g].append(-sum((grads[name[id(p)]].double() * u).flatten(1).sum(1) for p, u in zip(ps, units[g])))
    return {g: torch.cat(v).cpu() for g, v in proj.items()}


class GradientNoise(RecordedCallback, L.Callback):
    """At the given optimizer steps (default: 0, initialisation), logs per parameter group
    ``gradnoise/<group>/{mean,std,snr}`` of the per-example gradients projected on the noise direction
    (see ``projected_gradients``); snr = mean / std.

    Measured on a fixed batch of noisy training sequences (the same at every step, so the curves show the model
    changing, not the data), on global rank 0. The per-sequence gradients come from vmapped passes over chunks of
    sequences: 256 sequences take 0.7 s for the CPU default model on 2 cores (as a backward pass per sequence did
    there; on a GPU it replaces hundreds of tiny passes).

    Args:
        at_steps: optimizer steps at which to measure (before that step's update).
        groups: ``{group name: [parameter patterns]}``; default ``default_groups`` (each layer's FF; each
            attention matrix alone).
        n_sequences / seed: the probe batch, drawn from the datamodule's generator (``datamodule.gen``).

    Needs a LightningModule with ``loss(batch)`` and ``hparams.noise_id`` (``NoisyRecallModule``).
    """

    record_name = GRADIENT_NOISE  # its section of summary.json callbacks

    def __init__(
        self, at_steps: list[int] | None = None, groups: dict[str, list[str]] | None = None, n_sequences: int = 256,
        seed: int = 0,
    ):
        self.at_steps = sorted(set(at_steps if at_steps is not None else [0]))
        if any(s < 0 for s in self.at_steps):
            raise ValueError(f"GradientNoise.at_steps must be >= 0, got {self.at_steps}")
        if n_sequences < 2:
            raise ValueError(f"GradientNoise.n_sequences must be >= 2 (a standard deviation needs two), got {n_sequences}")
        self.group_patterns, self.n_sequences, self.seed = groups, n_sequences, seed
        self.results: dict[int, dict[str, dict[str, float]]] = {}

    def groups(self, pl_module: nn.Module) -> dict[str, list[nn.Parameter]]:
        net = network(pl_module)
        patterns = self.group_patterns if self.group_patterns is not None else default_groups(net)
        return {g: list(select_parameters(net, pats).values()) for g, pats in patterns.items()}

    def check_config(self, model: nn.Module, datamodule: Any) -> None:
        if not hasattr(model, "loss") or getattr(model, "hparams", {}).get("noise_id") is None:
            raise ValueError(f"GradientNoise needs a model with loss(batch) and a noise_id; {type(model).__name__} has not")
        require_generator(self, datamodule)
        self.groups(model)  # pattern typos fail here

    def check_trainer(self, trainer: L.Trainer) -> None:
        """Before a fit: a step at or after max_steps never starts, so it is not measured (said before the first step;
        a shortened run keeps its callbacks)."""
        if trainer.max_steps is not None and trainer.max_steps > 0:
            never = [s for s in self.at_steps if s >= trainer.max_steps]
            if never:
                rank_zero_warn(f"GradientNoise.at_steps {never} are not before trainer.max_steps ({trainer.max_steps}): "
                               "they will not be measured")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.batch = probe_batch(trainer, self.n_sequences, self.seed)

    def state_dict(self) -> dict[str, Any]:
        return {"results": self.results}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.results = dict(state["results"])

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if step not in self.at_steps or step in self.results or not trainer.is_global_zero:
            return
        probe = {k: v.to(pl_module.device) for k, v in self.batch.items()}
        proj = projected_gradients(pl_module, probe, self.groups(pl_module), pl_module.hparams.noise_id)
        stats = {}
        for g, a in proj.items():
            mean, std = float(a.mean()), float(a.std())
            stats[g] = {"mean": mean, "std": std, "snr": mean / std if std > 0 else math.nan, "n": a.numel()}
        self.results[step] = stats
        log_scalars(trainer, {gradnoise_key(g, k): v for g, s in stats.items() for k, v in s.items() if k != "n"}, step)

    def summary(self) -> dict[str, Any]:
        return {str(step): stats for step, stats in self.results.items()}
