"""The benchmark scripts run here on CPU (their GPU figures come from benchmarks/gpu.sh on a GPU machine): the
precision fidelity check compares settings against fp32 and writes its verdicts; stacked replicas train as each alone."""
import json

import pytest

from tests.pipeline.test_cli import TINY


@pytest.mark.slow
def test_the_precision_check_compares_each_setting_with_fp32_and_writes_a_verdict(tmp_path, monkeypatch):
    import sys

    sys.path.insert(0, "benchmarks")
    import precision

    out = tmp_path / "precision.json"
    tiny = [a for a in TINY if a != "configs/noisy.yaml" and a != "--config"] + ["--trainer.max_steps", "12",
                                                                              "--trainer.val_check_interval", "6"]
    report = precision.main(["--config", "small", "--settings", "fp32", "bf16-mixed", "--seeds", "0", "1",
                             "--out", str(out), "--extra", *tiny])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    fp32 = [r for r in report["results"] if r["setting"] == "fp32"]
    assert len(fp32) == 2 and all(0 <= r["p_noise"] <= 1 and r["step_seconds"] > 0 for r in fp32)
    verdict = report["verdicts"]["bf16-mixed"]
    assert verdict["pass"] in (True, False) and set(verdict["checks"]) == set(precision.QUANTITIES)
    band = verdict["checks"]["p_noise"]["band"]
    assert band[0] <= min(verdict["checks"]["p_noise"]["fp32"]) <= max(verdict["checks"]["p_noise"]["fp32"]) <= band[1]


def test_the_gpu_rehearsal_runs_without_the_packages_the_gpu_image_lacks(tmp_path):
    """benchmarks/gpu.py --smoke runs under benchmarks/gpu_image: wandb and datasets are missing there, as on the GPU
    machine. A toy run must not need them, and the benchmarks' logger-less config copies must parse where the
    shipped configs (WandbLogger, whose options only wandb's signature can check) are refused in one line that says
    what to install or change."""
    import os
    import subprocess
    import sys

    script = f"""
import importlib.util, sys
sys.path.insert(0, "benchmarks")
assert importlib.util.find_spec("wandb") is None and importlib.util.find_spec("datasets") is None
from pathlib import Path
import precision
from main import main
def parses(config):
    try:
        main(["fit", "--config", config, "--print_config"])
    except SystemExit as e:
        return e.code in (0, None)
print("shipped", parses("configs/paper/noisy.yaml"), file=sys.stdout, flush=True)
print("copy", parses(precision.without_logger("configs/paper/noisy.yaml", Path({str(tmp_path)!r}))))
print("datasets loaded", "datasets" in sys.modules)
"""
    env = {**os.environ, "FFVA_GPU_IMAGE": "1", "PYTHONPATH": os.pathsep.join(["benchmarks/gpu_image", "."])}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith(("shipped", "copy", "datasets"))]
    assert lines == ["shipped False", "copy True", "datasets loaded False"], out.stdout[-2000:]
    refusal = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert refusal == ["error: --config configs/paper/noisy.yaml: trainer.logger is lightning.pytorch.loggers.WandbLogger, "
                       "which needs the wandb package: pip install wandb (or pip install -e .), or set trainer.logger: "
                       "false in a copy of the config to run without W&B"], out.stderr[-2000:]


def test_stacked_replicas_train_exactly_as_each_seed_alone_and_time_per_replica(tmp_path):
    """benchmarks/stacking.py (the measurement that chooses stacking or packing processes on a GPU): 2 seeds of
    configs/hijack.yaml stacked follow, step for step, the losses of each trained alone by the module's own loss."""
    import sys

    sys.path.insert(0, "benchmarks")
    import stacking

    check = stacking.main(["--check", "8"])["check"]
    assert check["steps"] == 8 and check["replicas_differ"]  # two seeds, two models
    assert check["max_loss_gap"] < 1e-4  # rounding only (measured 1e-6 after 20 steps)
    out = tmp_path / "stacking.json"
    runs = stacking.main(["--device", "cpu", "--replicas", "2", "--steps", "2", "--warmup", "1", "--out", str(out)])["runs"]
    assert [r["replicas"] for r in runs] == [1, 2] and json.loads(out.read_text())["runs"] == runs
    assert all(r["final_losses_finite"] and r["step_s"] > 0 and isinstance(r["ops_looped_per_replica"], list) for r in runs)
    assert runs[0]["time_ratio_alone_over_stacked"] == 1.0
    assert runs[1]["step_s_per_replica"] == runs[1]["step_s"] / 2
