"""Loading Hugging Face causal LMs at a training checkpoint, and naming their matrices by role for LASER."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal

from torch import nn

from lightning_modules.laser import rank_for, row_name
from run_record.names import FULL, grid_variant
from run_record.contract import RecordedModule

# Pythia's published checkpoints (Biderman et al. 2023): step0, powers of two up to 512, then every 1000 steps.
PYTHIA_STEPS = frozenset([0] + [2**i for i in range(10)] + list(range(1000, 143001, 1000)))


@dataclass(frozen=True)
class Fused:
    """Query, key and value rows of one fused projection: ``per_head`` ([head][q|k|v][head_dim], GPT-NeoX) or
    ``contiguous`` ([all q | all k | all v], Phi-3, with grouped key/value heads)."""

    suffix: str
    layout: Literal["per_head", "contiguous"]

    def rows(self, role: str, config) -> tuple[int, int, int | None]:
        """(start, stop, period) of the role's rows (attn_q | attn_k | attn_v)."""
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        part = "qkv".index(role[-1])
        if self.layout == "per_head":
            return part * head_dim, (part + 1) * head_dim, 3 * head_dim
        q, kv = heads * head_dim, (getattr(config, "num_key_value_heads", None) or heads) * head_dim
        start = (0, q, q + kv)[part]
        return start, start + (q, kv, kv)[part], None


# The matrices (suffixes inside a decoder layer) of each role, per architecture (config.model_type). Phi-3 fuses the
# gate and up projections into one matrix (mlp_in); Llama, Mistral and Qwen2 keep them apart (both are mlp_in).
# GPT-NeoX and Phi-3 fuse query, key and value into one matrix: attn_q/k/v truncate their rows alone.
_LLAMA_LIKE = {"mlp_in": ("mlp.gate_proj", "mlp.up_proj"), "mlp_out": ("mlp.down_proj",), "attn_out": ("self_attn.o_proj",),
               "attn_q": ("self_attn.q_proj",), "attn_k": ("self_attn.k_proj",), "attn_v": ("self_attn.v_proj",)}
_NEOX_QKV = Fused("attention.query_key_value", "per_head")
_PHI3_QKV = Fused("self_attn.qkv_proj", "contiguous")
ARCHITECTURES: dict[str, dict[str, tuple[str | Fused, ...]]] = {
    "gpt_neox": {"mlp_in": ("mlp.dense_h_to_4h",), "mlp_out": ("mlp.dense_4h_to_h",), "attn_out": ("attention.dense",),
                 "attn_q": (_NEOX_QKV,), "attn_k": (_NEOX_QKV,), "attn_v": (_NEOX_QKV,)},
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "phi3": {"mlp_in": ("mlp.gate_up_proj",), "mlp_out": ("mlp.down_proj",), "attn_out": ("self_attn.o_proj",),
             "attn_q": (_PHI3_QKV,), "attn_k": (_PHI3_QKV,), "attn_v": (_PHI3_QKV,)},
}
ROLES = ("mlp_in", "mlp_out", "attn_out", "attn_q", "attn_k", "attn_v")
STREAM_WRITERS = ("mlp_out", "attn_out")  # roles whose output is added to the residual stream


# Where each architecture keeps its decoder layers, its final norm, and each layer's attention and MLP (whose outputs
# are added to the residual stream): the parts the per-layer attribution reads.
_LLAMA_DECODER = ("model.layers", "model.norm", "self_attn", "mlp")
DECODERS = {"gpt_neox": ("gpt_neox.layers", "gpt_neox.final_layer_norm", "attention", "mlp"), "llama": _LLAMA_DECODER,
            "mistral": _LLAMA_DECODER, "qwen2": _LLAMA_DECODER, "phi3": _LLAMA_DECODER}


@dataclass
class Decoder:
    """An architecture's decoder, read through ``DECODERS``: its layers, final norm, and the attribute names of each
    layer's attention and MLP."""

    layers: nn.ModuleList
    final_norm: nn.Module
    attn: str
    mlp: str


def stream_writers(model: nn.Module) -> list[str]:
    """The LASER targets whose output is added to the residual stream (every layer's mlp_out and attn_out)."""
    return list(role_matrices(model, [LaserSpec(role, 1.0, "all") for role in STREAM_WRITERS]))


def decoder_of(model: nn.Module) -> Decoder:
    role_map(model)  # an unknown architecture is refused, naming the table to extend
    layers, norm, attn, mlp = DECODERS[model.config.model_type]
    return Decoder(model.get_submodule(layers), model.get_submodule(norm), attn, mlp)


def role_map(model: nn.Module) -> dict[str, tuple[str | Fused, ...]]:
    """The role -> matrices map of the model's architecture; an unknown one is refused, naming it."""
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


def hub_offline(name: str) -> bool:
    """Load from the local cache only: a local directory, or HF_HUB_OFFLINE is set. The CLI sets it before anything
    loads when the hub does not answer within 3 s (pipeline/hub_mode.py), so a compute node without network never
    spends ~30 s in retries."""
    return os.path.isdir(name) or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


PRETRAINED_EXTRA = "pip install -e '.[pretrained]'"


def require_packages(gguf_file: str | None, field: str = "model.init_args") -> None:
    """The optional packages a pretrained run needs are installed; else one line naming them and the install command
    (a missing package is not a config error)."""
    import importlib.util

    if gguf_file is None:
        return
    missing = [p for p in ("gguf", "accelerate") if importlib.util.find_spec(p) is None]
    if missing:  # transformers reads and dequantises GGUF with the pure-Python gguf, and loads it through accelerate
        raise ModuleNotFoundError(f"{field}.gguf_file needs the packages {', '.join(missing)}, which are not installed: "
                                  f"{PRETRAINED_EXTRA}")


def check_source(model_name: str, gguf_file: str | None, field: str = "model.init_args") -> None:
    """Before anything loads: a local GGUF file exists, and a folder that holds only GGUF files names one of them
    (transformers would say 'Unrecognized model ... should have a model_type key')."""
    model_name = os.path.expanduser(model_name)
    if not os.path.isdir(model_name):
        return
    ggufs = sorted(f for f in os.listdir(model_name) if f.endswith(".gguf"))
    if gguf_file is not None:
        if not os.path.isfile(os.path.join(model_name, gguf_file)):
            raise FileNotFoundError(f"{field}.gguf_file: {os.path.join(model_name, gguf_file)} does not exist"
                                    + (f"; {model_name} holds {', '.join(ggufs)}" if ggufs else ""))
    elif ggufs and not os.path.isfile(os.path.join(model_name, "config.json")):
        raise ValueError(f"{field}.model_name {model_name} holds GGUF files only ({', '.join(ggufs)}) and no config.json: "
                         f"set {field}.gguf_file to the one to load (model and tokenizer both come from it)")


def load_causal_lm(model_name: str, revision: str, dtype, cache_dir: str | None = None, gguf_file: str | None = None) -> nn.Module:
    """``AutoModelForCausalLM.from_pretrained(model_name, revision=..., gguf_file=...)`` in eval mode, with a clear
    offline error. A GGUF file is dequantised to ``dtype`` as it loads (it is no longer the quantised file)."""
    from transformers import AutoModelForCausalLM

    model_name = os.path.expanduser(model_name)  # a local folder may be given as ~/...
    check_revision(model_name, revision)
    check_source(model_name, gguf_file)
    try:
        offline = hub_offline(model_name)
        model = AutoModelForCausalLM.from_pretrained(
            model_name, revision=revision, dtype=dtype, cache_dir=cache_dir, local_files_only=offline,
            **({"gguf_file": gguf_file} if gguf_file else {}),
            # with peft installed (lm-eval[hf] brings it), transformers looks for an adapter config without
            # local_files_only: offline that is 5 retries, about 23 s, unless told here
            **({"adapter_kwargs": {"local_files_only": True}} if offline else {}),
        )
    except OSError as e:  # transformers reports missing files, cache misses and connection errors as OSError
        raise offline_help("model.model_name", model_name, revision, e) from e
    return model.eval()


def load_config(name: str, revision: str, cache_dir: str | None = None, gguf_file: str | None = None):
    """The model's config (context length, architecture) without its weights."""
    from transformers import AutoConfig

    name = os.path.expanduser(name)
    try:
        return AutoConfig.from_pretrained(name, revision=revision, cache_dir=cache_dir, local_files_only=hub_offline(name),
                                          **({"gguf_file": gguf_file} if gguf_file else {}))
    except OSError as e:
        raise offline_help("model.model_name", name, revision, e) from e


def load_tokenizer(name: str, revision: str, cache_dir: str | None = None, gguf_file: str | None = None):
    """The tokenizer of a hub id or local directory, or the one inside a GGUF file (the model's own)."""
    from transformers import AutoTokenizer

    name = os.path.expanduser(name)
    check_source(name, gguf_file, field="data.init_args" if gguf_file is None else "model.init_args")
    try:
        return AutoTokenizer.from_pretrained(name, revision=revision, cache_dir=cache_dir, local_files_only=hub_offline(name),
                                             **({"gguf_file": gguf_file} if gguf_file else {}))
    except OSError as e:
        raise offline_help("data.tokenizer", name, revision, e) from e


@dataclass
class LaserSpec:
    """One LASER target: ``matrix`` (a role: mlp_in | mlp_out | attn_out | attn_q | attn_k | attn_v) of ``layers`` (an index, negative from the end,
    an inclusive range "10-15", or "all"), kept at rank max(1, floor(rho * min(m, n))) (rho = 0 removes it)."""

    matrix: Literal["mlp_in", "mlp_out", "attn_out", "attn_q", "attn_k", "attn_v"]
    rho: float
    layers: int | str = "all"


@dataclass
class LaserGrid:
    """A search space for the selection protocol: every (matrix, layers, rho) combination is one variant, named
    ``<matrix>_L<layers>@<rho>`` (run_record/names.py)."""

    matrices: list[str]
    layers: list[int | str]
    rhos: list[float]

    def variants(self) -> dict[str, list[LaserSpec]]:
        return {grid_variant(m, lay, rho): [LaserSpec(m, rho, lay)] for m in self.matrices for lay in self.layers for rho in self.rhos}

    def cells(self) -> list[dict]:
        """For summary.json: each grid point with its variant name (so readers never parse the name)."""
        return [{"variant": grid_variant(m, lay, rho), "matrix": m, "layers": lay, "rho": rho}
                for m in self.matrices for lay in self.layers for rho in self.rhos]


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


def role_matrices(model: nn.Module, specs: list[LaserSpec]) -> dict[str, tuple[int, int]]:
    """{LASER target name: shape} of the matrices the specs name: whole parameters, or a fused projection's rows
    (``...query_key_value.weight[0:64/192]``, laser.py's grammar)."""
    roles = role_map(model)
    by_layer: dict[int, dict[str, tuple[str, nn.Parameter]]] = {}  # layer -> suffix -> (name, parameter)
    for name, p in model.named_parameters():
        m = LAYER_PARAM.search(name)
        if m and p.ndim == 2:
            by_layer.setdefault(int(m.group(1)), {})[m.group(2)] = (name, p)
    if not by_layer:
        raise ValueError(f"{type(model).__name__} has no decoder layers named '*.layers.<i>.*'")
    out: dict[str, tuple[int, int]] = {}
    for spec in specs:
        if spec.matrix not in ROLES:
            raise ValueError(f"LASER spec {spec}: matrix must be one of {list(ROLES)}")
        for i in _layer_indices(spec, len(by_layer)):
            for entry in roles[spec.matrix]:
                suffix = entry.suffix if isinstance(entry, Fused) else entry
                if suffix not in by_layer[i]:
                    raise ValueError(f"LASER spec {spec}: layer {i} has no {spec.matrix} matrix ({suffix})")
                name, p = by_layer[i][suffix]
                if isinstance(entry, Fused):
                    start, stop, period = entry.rows(spec.matrix, model.config)
                    n = (stop - start) * (p.shape[0] // period if period else 1)
                    out[row_name(name, start, stop, period)] = (n, p.shape[1])
                else:
                    out[name] = tuple(p.shape)
    return out


def laser_ranks(model: nn.Module, specs: list[LaserSpec]) -> dict[str, int]:
    """{LASER target name: rank} for the specs (the pretrained-model rule: rho > 0 keeps at least rank 1)."""
    ranks: dict[str, int] = {}
    for spec in specs:
        ranks.update({n: rank_for(shape, spec.rho, min_rank=1) for n, shape in role_matrices(model, [spec]).items()})
    return ranks


def laser_variants(model: nn.Module, laser: dict[str, list] | None) -> dict[str, dict[str, int]]:
    """``{"full": {}, <name>: {parameter: rank}}`` from a config's ``{name: [LaserSpec or its dict, ...]}``; the full
    model comes first, and names that would break the metric keys are refused."""
    variants: dict[str, dict[str, int]] = {FULL: {}}
    for name, specs in (laser or {}).items():
        if name == FULL or ":" in name or "/" in name:
            raise ValueError(f"model.laser variant name {name!r} is reserved or contains ':' or '/'")
        variants[name] = laser_ranks(model, [s if isinstance(s, LaserSpec) else LaserSpec(**s) for s in specs])
    return variants


FINGERPRINT_SAMPLES = 64


def weights_fingerprint(model: nn.Module, samples: int = FINGERPRINT_SAMPLES) -> str:
    """A digest of the weights: every tensor's name, shape and dtype and ``samples`` of its values at fixed,
    evenly spaced positions (cheap on a billion parameters; two checkpoints that differ anywhere in training differ
    in these). Two revisions with one fingerprint served the same weights."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name, t in model.state_dict().items():
        flat = t.detach().reshape(-1)
        k = min(samples, flat.numel())  # evenly spaced, in integers (a float linspace rounds past the end)
        idx = (torch.arange(k, dtype=torch.int64) * (flat.numel() - 1) // max(k - 1, 1)).to(flat.device)
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        digest.update(flat[idx].to(torch.float64).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def model_info(model: nn.Module, model_name: str, revision: str, variants: dict[str, dict[str, int]],
               gguf_file: str | None = None, fingerprint: str | None = None) -> dict:
    """For summary.json: which weights were evaluated (the hub commit a revision resolved to: some Pythia branches
    have served wrong weights; a GGUF file and its size), in which dtype, and each variant's ranks."""
    model_name = os.path.expanduser(model_name)
    local = os.path.isdir(model_name)
    out = {"model_name": model_name, "revision": None if local else revision,  # a local directory has no revisions
           "commit": getattr(model.config, "_commit_hash", None), "dtype": str(model.dtype).removeprefix("torch."),
           "architecture": getattr(model.config, "model_type", None), "laser_ranks": variants,
           "fingerprint": fingerprint, "fingerprint_samples": FINGERPRINT_SAMPLES}
    if gguf_file:
        path = os.path.join(model_name, gguf_file)
        out["gguf_file"] = {"name": gguf_file, "bytes": os.path.getsize(path) if os.path.isfile(path) else None,
                            "dequantised_to": out["dtype"]}
    return out


class PretrainedRecord(RecordedModule):
    """What summary.json records of a pretrained model and its LASER variants; for LightningModules holding the model as
    self.net, the variants' ranks as self.variants, the fingerprint of the weights as loaded as self.fingerprint
    (``weights_fingerprint``, taken before any variant is evaluated) and model_name/revision/gguf_file
    hyperparameters."""

    def variant_specs(self) -> dict[str, dict]:
        """What each variant is (its matrices' ranks)."""
        return {v: {"ranks": ranks} for v, ranks in self.variants.items()}

    def run_info(self) -> dict:
        return model_info(self.net, self.hparams.model_name, self.hparams.revision, self.variants, self.hparams.gguf_file,
                          self.fingerprint)
