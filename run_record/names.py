"""Every name in the run record, in one place: variant names (their grammar is written here and never parsed back:
what a variant is comes from summary.json's ``variant_specs``), and the metric keys the LightningModules and
callbacks log under, which the reports (local figures, the W&B report's panels) read. A renamed metric cannot leave
a panel empty."""
from __future__ import annotations

from dataclasses import dataclass

FULL = "full"  # the model as trained / loaded, no truncation
CONSTRUCTED = "constructed"  # HijackProbe: the associative-memory model built from the theory (lightning_modules/memory.py)


@dataclass(frozen=True)
class Metric:
    """One metric, as every writer and reader names it: its key, its label on tables and axes, its direction."""

    name: str
    label: str
    higher_is_better: bool | None  # None: no better direction (a probability of the generic token...)


METRICS = {m.name: m for m in (
    Metric("p_correct", "P(in-context token)", True),
    Metric("p_noise", "P(noise token)", None),  # the noise is what the study measures, neither good nor bad
    Metric("acc", "accuracy (argmax = answer)", True),
    Metric("loss", "cross-entropy", False),
    Metric("p_global", "P(global bigram answer)", None),
    Metric("p_answer", "P(answer)", True),
    Metric("p_generic", 'P(" the")', None),
    Metric("log_ratio", 'log P(answer) / P(" the")', True),
    Metric("logit_diff", "logit(IO) - logit(S)", True),
    Metric("em_strict", "exact match (strict)", True),
    Metric("em_flexible", "exact match (flexible)", True),
    Metric("p_o", "P(in-context o)", None),
    Metric("p_b", "P(global b)", None),
    Metric("logit_gap", "logit(o) - logit(b)", None),
    Metric("o_wins", "in-context o wins", None),
    Metric("b_wins", "global b wins", None),
    Metric("other_wins", "another token wins", None),
    Metric("attn_after_q", "attention to the token after q", None),
    Metric("attn_after_o", "attention after the (q, o) pairs", None),
    Metric("attn_after_b", "attention after the (q, b) pairs", None),
)}


def metric_label(name: str) -> str:
    """The label of metric ``name`` (a key not declared here is shown as itself)."""
    return METRICS[name].label if name in METRICS else name


RECALL_METRICS = ("p_correct", "p_noise", "acc", "loss")  # per variant, at scored trigger positions
RECALL_PLOTTED = ("p_noise", "p_correct", "acc")  # the three the noisy-recall figures draw, in this order
GLOBAL_METRIC = "p_global"  # on length-generalisation sets: P(the trigger's global bigram answer)
PROMPT_METRICS = ("p_answer", "p_generic", "log_ratio", "acc", "logit_diff")  # pretrained LMs, per variant
PROMPT_PLOTTED = ("p_answer", "p_generic", "log_ratio", "logit_diff")
GSM8K_METRICS = ("em_strict", "em_flexible")  # exact match of lm-eval's two answer extractions
HIJACK_METRICS = ("p_o", "p_b", "logit_gap", "o_wins", "b_wins", "other_wins", "attn_after_q", "attn_after_o",
                  "attn_after_b")  # per hijack prompt set
TABLE_ORDER = ("p_correct", "p_noise", "p_global", "p_answer", "p_generic", "log_ratio", "acc", "logit_diff", "loss")
SELECTION_SET = "selection"  # the split a variant is chosen on (never the test split)


def laser_variant(target: str, rho: float) -> str:
    """A toy-model LASER variant: ``<parameter>@rho<rho>``, e.g. ``layers.1.ff.w2@rho0.1``."""
    return f"{target}@rho{rho:g}"


def grid_variant(matrix: str, layers: int | str, rho: float) -> str:
    """A pretrained-model search-grid variant: ``<role>_L<layers>@<rho>``, e.g. ``mlp_out_L28-31@0.01``."""
    return f"{matrix}_L{layers}@{rho:g}"


def prompt_group(variant: str, group: str) -> str:
    """A pretrained-model variant's metrics over one prompt type: ``<variant>:<type>``, e.g. ``full:ABBA``."""
    return f"{variant}:{group}"


def split_prompt_group(name: str) -> tuple[str, str | None]:
    """``full:ABBA`` -> (``full``, ``ABBA``); ``full`` -> (``full``, None)."""
    variant, _, group = name.partition(":")
    return variant, group or None


def evaluation_set(evaluation: str | None, selection: bool) -> str | None:
    """The test-set part of a metric key for one evaluation of a task (a GSM8K shot count ``1shot``, or None for a
    prompt set) on the selection or the test split: ``selection``, ``selection:1shot``, ``1shot`` or None."""
    if selection:
        return f"{SELECTION_SET}:{evaluation}" if evaluation else SELECTION_SET
    return evaluation


def selection_evaluation(test_set: str | None) -> tuple[bool, str | None]:
    """The inverse of ``evaluation_set`` for the selection split: (True, ``1shot`` or None) for ``selection[:1shot]``,
    (False, None) for any other test set."""
    if test_set == SELECTION_SET:
        return True, None
    if test_set and test_set.startswith(SELECTION_SET + ":"):
        return True, test_set.split(":", 1)[1]
    return False, None


def length_set(length: int, placement: str) -> str:
    """A length-generalisation test set: ``T<L>:<placement>``, e.g. ``T256:beyond``."""
    return f"T{length}:{placement}"


TRAIN_LOSS = "train/loss"
STEP = "trainer/global_step"  # W&B's x axis for Lightning runs


def eval_key(stage: str, variant: str, metric: str, test_set: str | None = None) -> str:
    """``val/<variant>/<metric>`` (``test/...`` for main.py test), e.g. ``val/layers.1.ff.w2@rho0/p_noise``; on an
    extra test set (length generalisation) ``val/<variant>/<metric>@<set>``, e.g. ``val/full/acc@T256:beyond``."""
    return f"{stage}/{variant}/{metric}" + (f"@{test_set}" if test_set else "")


def split_metric(metric: str) -> tuple[str, str | None]:
    """``acc@T256:beyond`` -> (``acc``, ``T256:beyond``); ``acc`` -> (``acc``, None)."""
    name, _, test_set = metric.partition("@")
    return name, test_set or None


def split_eval_key(key: str) -> tuple[str, str, str] | None:
    """(stage, variant, metric) of an eval key, else None."""
    parts = key.split("/")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 and parts[0] in ("val", "test") else None


def hijack_key(placement: str, length: int, variant: str, n: int, metric: str, k: int = 0) -> str:
    """HijackProbe: ``hijack/<placement>/T<L>/<variant>/n<n>/<metric>``, with k > 0 global pairs ``.../n<n>k<k>/...``."""
    return f"hijack/{placement}/T{length}/{variant}/n{n}{f'k{k}' if k else ''}/{metric}"


def prev_token_key(test_set: str, where: str) -> str:
    """HijackProbe: layer 1's previous-token attention ``hijack/prev_token/T<L>/{inside,beyond}`` (T_train)."""
    return f"hijack/prev_token/{test_set}/{where}"


def memory_key(layer: int, matrix: str, name: str) -> str:
    """MemoryProbe: ``memory/layers.<i>.<matrix>/<name>``, matrix ``attn.wk``, ``attn.ov`` or ``ff``."""
    return f"memory/layers.{layer}.{matrix}/{name}"


def probe_key(layer: int, part: str, name: str) -> str:
    """AttentionProbe: ``probe/layers.<i>.attn/{prev_token,prev_token_after_trigger,to_output,to_noise}`` and
    ``probe/layers.<i>.ff/noise_margin``."""
    return f"probe/layers.{layer}.{part}/{name}"


def spectrum_key(matrix: str, stat: str) -> str:
    """WeightSpectrumLogger: ``spectrum/<matrix>/{top,stable_rank,effective_rank,nuclear_norm,histogram,chart}``."""
    return f"spectrum/{matrix}/{stat}"


def gradnoise_key(group: str, stat: str) -> str:
    """GradientNoise: ``gradnoise/<group>/{mean,std,snr}``."""
    return f"gradnoise/{group}/{stat}"


def laser_key(when: str, metric: str) -> str:
    """LaserTruncation: ``laser/{before,after}/<metric>`` around a mid-training truncation."""
    return f"laser/{when}/{metric}"


LASER_COUNT = "laser/truncations"
STEP_SECONDS, ESTIMATED_SECONDS = "time/step_seconds", "time/estimated_total_seconds"
