"""SIGKILL in the middle of a checkpoint save (no handler runs): every file left is whole, and the run resumes."""
import pytest
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import torch

from run_record import checkpoints
from run_record.files import PARTIAL, read_csv_rows
from tests.pipeline.test_cli import TINY, only_run_dir


pytestmark = pytest.mark.slow  # end-to-end runs stopped and resumed: `make test`, not `make test-fast`


def test_sigkill_during_a_checkpoint_save_leaves_only_whole_checkpoints_and_the_run_resumes(repo, tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": repo}
    # dim 256: a checkpoint of about 13 MB takes long enough to write that the kill lands inside one
    args = [*TINY, "--model.init_args.model.dim", "256", "--trainer.max_steps", "40", "--trainer.val_check_interval", "1",
            "--trainer.callbacks=[]", "--trainer.default_root_dir", str(tmp_path)]
    proc = subprocess.Popen([sys.executable, "main.py", "fit", *args], cwd=repo, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    partial, deadline = None, time.monotonic() + 180
    while partial is None and proc.poll() is None and time.monotonic() < deadline:
        for ckpt_dir in tmp_path.glob("noisy/*/checkpoints"):
            found = [p for p in os.listdir(ckpt_dir) if PARTIAL in p]
            if found and len(list(ckpt_dir.glob("*.ckpt"))) >= 1:  # a second save is being written
                partial = ckpt_dir / found[0]
                break
        else:
            time.sleep(0.0005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert partial is not None, "the run ended before the kill could land inside a checkpoint save"
    run = only_run_dir(tmp_path)
    saved = sorted((run / "checkpoints").glob("*.ckpt"))
    assert saved and all(PARTIAL not in p.name for p in saved)
    for ckpt in saved:  # each one whole: the resume command can trust whichever is latest
        assert torch.load(ckpt, weights_only=True, map_location="cpu")["state_dict"]
        checkpoints.read(str(ckpt))
    summary = json.loads((run / "summary.json").read_text())  # whole JSON: the latest validation's numbers
    assert summary["status"] == "running" and summary["eval_step"] >= 1
    assert read_csv_rows(run / "metrics.csv")
    latest = max(saved, key=lambda p: int(p.stem.split("step=")[1]))
    resume = f"python main.py fit --config {run / 'config.yaml'} --ckpt_path {latest}"
    out = subprocess.run([sys.executable, *shlex.split(resume)[1:]], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    final = json.loads((run / "summary.json").read_text())
    assert final["status"] == "completed" and final["global_step"] == 40
    assert not [p for p in run.rglob("*") if PARTIAL in p.name]  # the killed process's partial file is cleaned up
