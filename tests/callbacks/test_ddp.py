"""Real DDP (2 CPU processes, gloo) through main.py: truncation leaves identical weights on both ranks, and the final
weights are evaluated and checkpointed although max_steps is not a multiple of val_check_interval."""
import json

import pytest
import os
import subprocess
import sys

import torch

from tests.callbacks.fixtures import numerical_rank
from tests.pipeline.test_cli import TINY, only_run_dir

CALLBACKS = """
trainer:
  callbacks:
    - class_path: callbacks.LaserTruncation
      init_args: {targets: [layers.1.ff.w2], rank: 2, at_steps: [3]}
    - class_path: tests.callbacks.fixtures.SaveWeights
      init_args: {at_steps: [3, 6]}
"""


@pytest.mark.slow
def test_ddp_two_processes_truncate_to_identical_weights(repo, tmp_path):
    (tmp_path / "callbacks.yaml").write_text(CALLBACKS)
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": repo}
    cmd = [sys.executable, "main.py", "fit", *TINY, "--config", str(tmp_path / "callbacks.yaml"),
           "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.max_steps", "7",
           "--trainer.default_root_dir", str(tmp_path / "runs")]
    out = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    run = only_run_dir(tmp_path / "runs")  # both processes wrote to one run directory
    weights = run / "weights"
    for step in (3, 6):
        r0 = torch.load(weights / f"rank0_step{step}.pt", weights_only=True)
        r1 = torch.load(weights / f"rank1_step{step}.pt", weights_only=True)
        for name in r0:
            torch.testing.assert_close(r0[name], r1[name], rtol=0, atol=0, msg=f"{name} at step {step}")
    assert numerical_rank(torch.load(weights / "rank0_step3.pt", weights_only=True)["layers.1.ff.w2"]) == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["global_step"] == 7 and summary["eval_step"] == 7
    assert [p.name for p in (run / "checkpoints").glob("*.ckpt")] == ["epoch=0-step=7.ckpt"]
    assert "Results on the clean test set" in out.stdout and "(from step" not in out.stdout
    assert [e["step"] for e in summary["callbacks"]["laser_truncation"]["events"]] == [3]
