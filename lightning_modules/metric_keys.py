"""The names of every logged metric, in one place: the LightningModules and callbacks log under these keys, and the
reports (local figures, the W&B report's panels) read them, so a renamed metric cannot leave a panel empty."""
from __future__ import annotations

RECALL_METRICS = ("p_correct", "p_noise", "acc", "loss")  # per variant, at scored trigger positions
PROMPT_METRICS = ("p_answer", "p_generic", "log_ratio", "acc", "logit_diff")  # pretrained LMs, per variant
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
