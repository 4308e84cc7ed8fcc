"""The headline of Chen, Bruna & Bietti (2406.03068) from the shipped CPU config, exactly as `make demo` runs it."""
import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_default_config_shows_noise_in_ff2_and_in_context_answers_without_it(repo, tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": repo}
    out = subprocess.run(
        [sys.executable, "main.py", "fit", "--config", "configs/noisy.yaml", "--trainer.default_root_dir", str(tmp_path),
         "--trainer.enable_progress_bar", "false"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (summary_path,) = tmp_path.glob("noisy/*/summary.json")
    table = json.loads(summary_path.read_text())["variants"]
    full, no_ff2 = table["full"], table["layers.1.ff.w2@rho0"]
    # the full model predicts the noise token about alpha = 0.5 of the time at repeated triggers
    assert 0.4 <= full["p_noise"] <= 0.6
    # without layer 2's feed-forward output, the noise is gone and the in-context token is predicted
    assert no_ff2["p_noise"] < 0.1
    assert no_ff2["acc"] >= 0.8
    assert no_ff2["acc"] > full["acc"] + 0.3
