"""Loading Hugging Face causal LMs at a training checkpoint, and naming their matrices by role for LASER."""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from typing import Literal

from torch import nn

from lightning_modules.laser import rank_for
from pipeline import network

# Pythia's published checkpoints (Biderman et al. 2023): step0, powers of two up to 512, then every 1000 steps.
PYTHIA_STEPS = frozenset([0] + [2**i for i in range(10)] + list(range(1000, 143001, 1000)))

# Parameter-name suffixes (inside a decoder layer) of each role, per architecture (config.model_type). Phi-3 fuses
# the gate and up projections into one matrix; Llama, Mistral and Qwen2 keep them apart (both are mlp_in).
_LLAMA_LIKE = {"mlp_in": ("mlp.gate_proj", "mlp.up_proj"), "mlp_out": ("mlp.down_proj",), "attn_out": ("self_attn.o_proj",)}
ARCHITECTURES: dict[str, dict[str, tuple[str, ...]]] = {
    "gpt_neox": {"mlp_in": ("mlp.dense_h_to_4h",), "mlp_out": ("mlp.dense_4h_to_h",), "attn_out": ("attention.dense",)},
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "phi3": {"mlp_in": ("mlp.gate_up_proj",), "mlp_out": ("mlp.down_proj",), "attn_out": ("self_attn.o_proj",)},
}
ROLES = ("mlp_in", "mlp_out", "attn_out")


def role_map(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """The role -> parameter-suffix map of the model's architecture; an unknown one is refused, naming it."""
    arch = getattr(getattr(model, "config", None), "model_type", None)
    if arch not in ARCHITECTURES:
        raise ValueError(f"LASER: architecture {arch!r} ({type(model).__name__}) has no role map; known: "
                         f"{', '.join(sorted(ARCHITECTURES))} (lightning_modules/pretrained.py ARCHITECTURES)")
    return ARCHITECTURES[arch]


LAYER_PARAM = re.compile(r"(?:^|\.)layers\.(\d+)\.(.+)\.weight$")


def check_revision(model_name: str, revision: str) -> None:
    """Pythia has a fixed set of checkpoints; a step that does not exist is an error here, not a 404 later."""
    if "pythia" not in model_name.lower() or os.path.isdir(model_name) or revision == "main":
        return
    m = re.fullmatch(r"step(\d+)", revision)
    if m is None or int(m.group(1)) not in PYTHIA_STEPS:
        raise ValueError(
            f"model.revision {revision!r} is not a Pythia checkpoint; they are step0, step1, step2, step4, ..., step512 "
            "(powers of two), and step1000 to step143000 every 1000 steps (or main)"
        )


def offline_help(what: str, name: str, revision: str, error: Exception) -> FileNotFoundError:
    return FileNotFoundError(
        f"{what} {name!r} at revision {revision!r} could not be loaded: it is not in the local Hugging Face cache "
        f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}) and the hub could not be reached ({type(error).__name__}). "
        f"On a machine with internet (e.g. a login node), download it first: `hf download {name} --revision {revision}`; "
        "then run with HF_HUB_OFFLINE=1. A local directory written by save_pretrained also works as the name."
    )


@functools.lru_cache(maxsize=None)
def _hub_answers(endpoint: str) -> bool:
    return network.reachable(endpoint, timeout=3.0)


def hub_offline(name: str) -> bool:
    """Load from the local cache only: HF_HUB_OFFLINE is set now (huggingface_hub reads it once, at import), or
    the hub does not answer within 3 s. Otherwise a compute node without network spends ~30 s in retries."""
    if os.path.isdir(name) or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return True
    return not _hub_answers(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))


def load_causal_lm(model_name: str, revision: str, dtype, cache_dir: str | None = None) -> nn.Module:
    """``AutoModelForCausalLM.from_pretrained(model_name, revision=...)`` in eval mode, with a clear offline error."""
    from transformers import AutoModelForCausalLM

    check_revision(model_name, revision)
    try:
        offline = hub_offline(model_name)
        model = AutoModelForCausalLM.from_pretrained(
            model_name, revision=revision, dtype=dtype, cache_dir=cache_dir, local_files_only=offline,
            # with peft installed (lm-eval[hf] brings it), transformers looks for an adapter config without
            # local_files_only: offline that is 5 retries, about 23 s, unless told here
            **({"adapter_kwargs": {"local_files_only": True}} if offline else {}),
        )
    except OSError as e:  # transformers reports missing files, cache misses and connection errors as OSError
        raise offline_help("model.model_name", model_name, revision, e) from e
    return model.eval()


def load_tokenizer(name: str, revision: str, cache_dir: str | None = None):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, revision=revision, cache_dir=cache_dir, local_files_only=hub_offline(name))
    except OSError as e:
        raise offline_help("data.tokenizer", name, revision, e) from e


@dataclass
class LaserSpec:
    """One LASER target: ``matrix`` (mlp_in | mlp_out | attn_out) of ``layers`` (an index, negative from the end,
    an inclusive range "10-15", or "all"), kept at rank max(1, floor(rho * min(m, n))) (rho = 0 removes it)."""

    matrix: Literal["mlp_in", "mlp_out", "attn_out"]
    rho: float
    layers: int | str = "all"


def _layer_indices(spec: LaserSpec, n_layers: int) -> list[int]:
    where = f"LASER spec {spec}"
    if isinstance(spec.layers, int):
        i = spec.layers + n_layers if spec.layers < 0 else spec.layers
        if not 0 <= i < n_layers:
            raise ValueError(f"{where}: layer {spec.layers} out of range for {n_layers} layers")
        return [i]
    if spec.layers == "all":
        return list(range(n_layers))
    m = re.fullmatch(r"(\d+)-(\d+)", str(spec.layers))
    if m is None or not int(m.group(1)) <= int(m.group(2)) < n_layers:
        raise ValueError(f"{where}: layers must be an index, 'a-b' with a <= b < {n_layers}, or 'all'")
    return list(range(int(m.group(1)), int(m.group(2)) + 1))


def laser_ranks(model: nn.Module, specs: list[LaserSpec]) -> dict[str, int]:
    """{parameter name: rank} for the specs (the pretrained-model rule: rho > 0 keeps at least rank 1)."""
    roles = role_map(model)
    by_layer: dict[int, dict[str, nn.Parameter]] = {}
    for name, p in model.named_parameters():
        m = LAYER_PARAM.search(name)
        if m and p.ndim == 2:
            by_layer.setdefault(int(m.group(1)), {})[name] = p
    if not by_layer:
        raise ValueError(f"{type(model).__name__} has no decoder layers named '*.layers.<i>.*'")
    ranks: dict[str, int] = {}
    for spec in specs:
        if spec.matrix not in ROLES:
            raise ValueError(f"LASER spec {spec}: matrix must be one of {list(ROLES)}")
        for i in _layer_indices(spec, len(by_layer)):
            hits = {n: p for n, p in by_layer[i].items() if LAYER_PARAM.search(n).group(2) in roles[spec.matrix]}
            if not hits:
                raise ValueError(f"LASER spec {spec}: layer {i} has no {spec.matrix} matrix ({'/'.join(roles[spec.matrix])})")
            ranks.update({n: rank_for(tuple(p.shape), spec.rho, min_rank=1) for n, p in hits.items()})
    return ranks


FULL = "full"


def laser_variants(model: nn.Module, laser: dict[str, list] | None) -> dict[str, dict[str, int]]:
    """``{"full": {}, <name>: {parameter: rank}}`` from a config's ``{name: [LaserSpec or its dict, ...]}``; the full
    model comes first, and names that would break the metric keys are refused."""
    variants: dict[str, dict[str, int]] = {FULL: {}}
    for name, specs in (laser or {}).items():
        if name == FULL or ":" in name or "/" in name:
            raise ValueError(f"model.laser variant name {name!r} is reserved or contains ':' or '/'")
        variants[name] = laser_ranks(model, [s if isinstance(s, LaserSpec) else LaserSpec(**s) for s in specs])
    return variants


def model_info(model: nn.Module, model_name: str, revision: str, variants: dict[str, dict[str, int]]) -> dict:
    """For summary.json: which weights were evaluated (the hub commit a revision resolved to: some Pythia branches
    have served wrong weights), in which dtype, and each variant's ranks."""
    local = os.path.isdir(model_name)
    return {"model_name": model_name, "revision": None if local else revision,  # a local directory has no revisions
            "commit": getattr(model.config, "_commit_hash", None), "dtype": str(model.dtype).removeprefix("torch."),
            "laser_ranks": variants}
