"""The attention-only model (configs/attention_only.yaml, no FF anywhere): the value matrix of layer 2 holds the noise
association in its tail, so keeping its top singular directions (LASER) removes the noise and keeps the in-context
answer, the opposite of the FF model's w2. Two seeds, trained as shipped, in parallel (one thread each)."""
import json
import os
import subprocess
import sys

import pytest

from tests.test_noisy_recall_headline import assert_predicted_signs

ONLY_ATTRIBUTION = '[{"class_path": "callbacks.SingularAttribution", "init_args": {"gap": "noise"}}]'


@pytest.mark.slow
def test_the_value_matrix_keeps_the_noise_in_its_tail_over_two_seeds(repo, tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": repo, "OMP_NUM_THREADS": "1"}
    procs = {seed: subprocess.Popen(
        [sys.executable, "main.py", "fit", "--config", "configs/attention_only.yaml", "--seed_everything", str(seed),
         "--trainer.callbacks", ONLY_ATTRIBUTION, "--trainer.val_check_interval", "500",
         "--model.init_args.early_eval_steps", "[]", "--trainer.enable_progress_bar", "false", "--report", "false",
         "--trainer.default_root_dir", str(tmp_path / str(seed))], cwd=repo, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for seed in (0, 1)}
    for seed, proc in procs.items():
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
        (path,) = (tmp_path / str(seed)).glob("attention_only/*/summary.json")
        summary = json.loads(path.read_text())
        table = summary["variants"]
        assert table["full"]["p_noise"] >= 0.3, (seed, table["full"])
        kept = [v for v in ("layers.1.attn.wv@rho0.1", "layers.1.attn.wv@rho0.2")
                if table[v]["p_noise"] < 0.1 and table[v]["acc"] >= 0.8]
        assert kept, (seed, {v: table[v] for v in table if "wv" in v})
        wv = summary["callbacks"]["singular_attribution"]["matrices"]["layers.1.attn.wv"]
        assert wv["carried_by"] == "tail" and wv["tail_gap"] > 1.0 and wv["top_gap"] < 0, (seed, wv["top_gap"], wv["tail_gap"])
        for name, record in summary["callbacks"]["singular_attribution"]["matrices"].items():
            assert_predicted_signs(record)
