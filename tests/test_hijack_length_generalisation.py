"""configs/hijack.yaml end to end (Wang & Sato's setup: zero-initialised W_K1, W_K2, W_O2 trained, a trained FF for the
global bigram): the relative position bias keeps the in-context answer beyond the training length, APE does not."""
import json
import os
import subprocess
import sys

import pytest


def run(repo, root, positional: str) -> dict:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": repo}
    out = subprocess.run([sys.executable, "main.py", "fit", "--config", "configs/hijack.yaml", "--model.init_args.model.positional",
                          positional, "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root)],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    (path,) = root.glob("hijack/*/summary.json")
    return json.loads(path.read_text())["variants"]["full"]


@pytest.mark.slow
def test_relative_bias_generalises_beyond_the_training_length_and_ape_does_not(repo, tmp_path):
    relative, absolute = run(repo, tmp_path / "rel", "relative"), run(repo, tmp_path / "ape", "absolute")
    # measured on seed 0 (README, "Knowledge hijack"): relative 0.96 / 0.70 / 0.78, APE 0.83 / 0.32 / 0.53
    assert relative["acc"] >= 0.9  # the induction head at T_train
    assert absolute["acc@T128:beyond"] < 0.5  # pairs beyond T_train: APE's previous-token head has no trained positions
    for test_set in ("T128:beyond", "T256:beyond"):
        assert relative[f"acc@{test_set}"] >= absolute[f"acc@{test_set}"] + 0.15, test_set
    assert relative["acc@T256:beyond"] >= 0.7
