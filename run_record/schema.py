"""The typed schema of ``summary.json`` (schema 3) and of each kind's ``results``, checked where the record is written.

``check(summary)`` returns the mismatches as ``<path>: <what>`` lines. RunSummary checks every summary it writes: a
writer that drifts from the schema fails the test suite (``FFVA_STRICT_RECORD=1``, set by tests/conftest.py) and is
warned about, once, in a user's run (the record is still written: losing a run's numbers over a schema slip would
be worse).
"""

import types
import typing
from typing import Any, Literal, TypedDict, Union

try:  # Python 3.11
    from typing import NotRequired
except ImportError:  # pragma: no cover
    from typing_extensions import NotRequired

from run_record.kinds import GSM8K, KNOWLEDGE_HIJACK, NOISY_RECALL, PRETRAINED_PROMPTS

Status = Literal["running", "completed", "failed", "interrupted", "requeued"]


class FileEntry(TypedDict):
    bytes: int
    sha256: str


class Machine(TypedDict):
    """What ran the run: the digits of its metrics depend on these (README, "Which digits depend on the machine")."""
    python: str
    torch: str
    lightning: str
    platform: str
    cpu: str | None
    device: str
    gpu: str | None
    torch_threads: int
    cpu_capability: str
    portable_cpu: bool
    deterministic: bool
    precision: str | None  # what ran: the trainer's precision plugin, not what the config asked for


class SweepTask(TypedDict):
    sweep: str
    task: int
    attempt: str
    point: dict[str, Any]
    started: NotRequired[str]


class Summary(TypedDict):
    schema: int
    kinds: list[str]
    status: Status
    run_dir: str
    config: str
    seed: int | None
    global_step: int
    ckpt_path: str | None
    eval_step: int | None
    wall_time_s: float
    timing: dict[str, Any] | None
    untrained: bool
    weights: str  # "trained" | "checkpoint" | "random initialisation" | "pretrained"
    machine: Machine
    metrics: dict[str, float | None]
    undefined_metrics: dict[str, str]
    variants: dict[str, dict[str, float | None]]
    variant_specs: dict[str, dict[str, Any]]
    sweep_task: SweepTask | None
    wandb: dict[str, Any] | None
    model: dict[str, Any] | None
    results: dict[str, Any] | None
    callbacks: dict[str, Any]
    files: NotRequired[dict[str, FileEntry]]
    error: NotRequired[str]


# --- each kind's ``results`` (what the LightningModule's results_summary returns) -------------------------------------

class TestSet(TypedDict):
    name: str | None
    length: int | None
    placement: str


class Constructed(TypedDict):
    scales: dict[str, float]
    t_train: int | None


class Intervals(TypedDict):
    """95% intervals of the newest evaluation's means, per variant and metric key (as in ``variants``), over the
    test sequences of each set (n: set -> sequences; ``main`` for the main test set)."""
    over: str
    method: str  # "delta": the ratio estimator's standard error, sequences as units (lightning_modules/metrics.py)
    n: dict[str, int]
    variants: dict[str, dict[str, list[float] | None]]


class NoisyRecallResults(TypedDict):
    laser_grid: list[dict[str, Any]]
    test_sets: list[TestSet]
    t_train: int | None
    constructed: NotRequired[Constructed]  # the theory's model was evaluated (model.init_args.constructed)
    intervals: NotRequired[Intervals]


class SelectionProtocol(TypedDict):
    by: str
    variant_keys: list[str]
    evaluation_keys: list[str]
    keeping: NotRequired[dict[str, Any]]


class LayerAttribution(TypedDict):
    """CausalLMModule(layer_attribution): per variant and prompt type ("all" too), the mean share of log P(answer) /
    P(" the") of each part of the final stream (embed, layers.<i>.attn, layers.<i>.mlp, bias) and the model's total."""
    split: str
    max_residual: float  # the largest |sum of the parts - the gap| over prompts and variants
    n: dict[str, int]  # prompts per type
    variants: dict[str, dict[str, dict[str, float]]]


class Prediction(TypedDict):
    """CausalLMModule(predict): each variant's change of the mean log ratio, predicted from singular components
    (per method; None where a method does not cover its matrices) and measured, on one split."""
    split: str
    n_prompts: int
    gap: float
    seconds: dict[str, float]  # svd, attribution, search
    variants: dict[str, dict[str, float | None]]  # variant -> {direct, linear, measured}
    spearman: dict[str, float | None]
    spearman_ci: dict[str, list[float] | None]  # 95%, the variants resampled
    n_variants: dict[str, int]
    ranking: list[str]
    file: str  # singular_effects.json: every component's effect


class PromptResults(TypedDict):
    selection_protocol: SelectionProtocol
    predictions: str
    search_grid: NotRequired[list[dict[str, Any]]]
    selection: NotRequired[dict[str, Any]]
    layer_attribution: NotRequired[LayerAttribution]
    prediction: NotRequired[Prediction]
    hijack: NotRequired[dict[str, Any]]  # knowledge-hijack prompts: per variant, cells, boundaries, fit (fact_hijack.py)


class GSM8KScores(TypedDict):
    scores: dict[str, dict[str, dict[str, Any]]]
    selected: dict[str, str]
    generations: str


class GSM8KResults(TypedDict):
    gsm8k: GSM8KScores
    selection_protocol: SelectionProtocol


RESULTS = {NOISY_RECALL: NoisyRecallResults, KNOWLEDGE_HIJACK: NoisyRecallResults, PRETRAINED_PROMPTS: PromptResults,
           GSM8K: GSM8KResults}


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__annotations__") and hasattr(tp, "__total__")


def _check(value: Any, tp: Any, path: str, out: list[str]) -> None:
    origin = typing.get_origin(tp)
    if tp is Any:
        return
    if origin is typing.NotRequired:
        return _check(value, typing.get_args(tp)[0], path, out)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            sub: list[str] = []
            _check(value, arg, path, sub)
            if not sub:
                return
        out.append(f"{path}: {type(value).__name__} {value!r:.60} is none of {tp}")
        return
    if tp is type(None):
        if value is not None:
            out.append(f"{path}: expected null, got {type(value).__name__}")
        return
    if origin is Literal:
        if value not in typing.get_args(tp):
            out.append(f"{path}: {value!r} is not one of {typing.get_args(tp)}")
        return
    if _is_typeddict(tp):
        if not isinstance(value, dict):
            out.append(f"{path}: expected an object, got {type(value).__name__}")
            return
        hints = typing.get_type_hints(tp, include_extras=True)
        required = getattr(tp, "__required_keys__", set(hints))
        for key in sorted(set(value) - set(hints)):
            out.append(f"{path}.{key}: not declared in {tp.__name__}")
        for key in sorted(required - set(value)):
            out.append(f"{path}.{key}: missing ({tp.__name__})")
        for key, hint in hints.items():
            if key in value:
                _check(value[key], hint, f"{path}.{key}", out)
        return
    if origin is list:
        if not isinstance(value, list):
            out.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        (item,) = typing.get_args(tp) or (Any,)
        for i, v in enumerate(value):
            _check(v, item, f"{path}[{i}]", out)
        return
    if origin is dict:
        if not isinstance(value, dict):
            out.append(f"{path}: expected an object, got {type(value).__name__}")
            return
        _, item = typing.get_args(tp) or (str, Any)
        for k, v in value.items():
            _check(v, item, f"{path}.{k}", out)
        return
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            out.append(f"{path}: expected a number, got {type(value).__name__}")
        return
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            out.append(f"{path}: expected an integer, got {type(value).__name__}")
        return
    if isinstance(tp, type) and not isinstance(value, tp):
        out.append(f"{path}: expected {tp.__name__}, got {type(value).__name__}")


def check(summary: dict) -> list[str]:
    """The mismatches between a summary and its schema (the top level and each declared kind's ``results``)."""
    out: list[str] = []
    _check(summary, Summary, "summary", out)
    results = summary.get("results")
    for kind in summary.get("kinds") or []:
        if kind in RESULTS and results is not None:
            _check(results, RESULTS[kind], f"summary.results ({kind})", out)
    return out
