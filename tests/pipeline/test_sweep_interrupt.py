"""A sweep stopped from outside: Ctrl-C in a local sweep stops the whole sweep (exit 130) with the task interrupted,
not failed, and the next task not started; a packer that passes SIGTERM on reports its runs as interrupted (exit
143), not failed."""
import pytest
import json
import os
import signal
import subprocess
import sys
import time

import yaml

from reports import table as collect
from tests.pipeline.test_interrupt import sigint_as_in_a_terminal
from tests.pipeline.test_sweep import TINY_GRID

LONG = TINY_GRID | {"trainer.max_steps": [5000], "trainer.val_check_interval": [20], "seed_everything": [0, 1]}


pytestmark = pytest.mark.slow  # end-to-end runs stopped and resumed: `make test`, not `make test-fast`


def start(repo, tmp_path, *extra) -> tuple[subprocess.Popen, object]:
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump({"base": "configs/noisy.yaml", "grid": LONG}))
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": repo, "OMP_NUM_THREADS": "1"}
    root = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.sweep", str(path), "--root", str(root), *extra], cwd=repo,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_in_a_terminal)
    return proc, root


def wait_for_checkpoints(root, n: int) -> None:
    deadline = time.monotonic() + 180
    while len(list(root.glob("*/noisy/*/checkpoints/*.ckpt"))) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(list(root.glob("*/noisy/*/checkpoints/*.ckpt"))) >= n


def test_ctrl_c_stops_a_local_sweep_with_the_task_interrupted(repo, tmp_path):
    proc, root = start(repo, tmp_path)
    wait_for_checkpoints(root, 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "stopped at task 0" in err and "tasks 1..1 were not run" in err
    assert not (root / "0" / "error.txt").exists() and not (root / "1").exists()  # task 1 never started
    rows = {r["task"]: r for r in collect.rows(root)}
    assert rows[0]["status"] == "interrupted" and rows[1]["status"] == "missing"


def test_a_packer_passing_sigterm_on_reports_interrupted_runs(repo, tmp_path):
    proc, root = start(repo, tmp_path, "--task", "0", "--pack", "2")
    wait_for_checkpoints(root, 2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "task 0 interrupted (exit code 143)" in out and "task 1 interrupted (exit code 143)" in out
    assert "failed" not in out
    statuses = [json.loads(p.read_text())["status"] for p in root.glob("*/noisy/*/summary.json")]
    assert statuses == ["interrupted", "interrupted"]
