"""The headline of Chen, Bruna & Bietti (2406.03068) from the shipped CPU config, exactly as `make demo` runs it."""
import json

import numpy as np
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
    # what make demo shows last: the report of the run, written
    assert out.stdout.strip().splitlines()[-1] == f"Report: {summary_path.parent / 'report' / 'index.html'}"
    assert (summary_path.parent / "report" / "figures" / "metrics_over_training.png").is_file()
    summary = json.loads(summary_path.read_text())
    table = summary["variants"]
    full, no_ff2 = table["full"], table["layers.1.ff.w2@rho0"]
    # the full model predicts the noise token about alpha = 0.5 of the time at repeated triggers
    assert 0.4 <= full["p_noise"] <= 0.6
    # without layer 2's feed-forward output, the noise is gone and the in-context token is predicted
    assert no_ff2["p_noise"] < 0.1
    assert no_ff2["acc"] >= 0.8
    assert no_ff2["acc"] > full["acc"] + 0.3

    # the callbacks' curves tell how: the FF maps the trigger to the noise token ...
    probe = summary["callbacks"]["attention_probe"]
    assert probe["step"] == 1500
    assert probe["probe/layers.1.ff/noise_margin"] > 0
    # ... while layer 2's attention reads the in-context outputs after earlier triggers and skips the noise there
    assert probe["probe/layers.1.attn/to_output"] > 0.8 and probe["probe/layers.1.attn/to_noise"] < 0.1
    # at initialisation the gradient towards the noise token is most consistent for the FF
    snr = {g: s["snr"] for g, s in summary["callbacks"]["gradient_noise"]["0"].items()}
    assert snr["layers.1.ff"] == max(snr.values())
    assert summary["callbacks"]["weight_spectrum"]["steps"] == 16  # steps 0, 100, ..., 1500
    # the page's example, checked by hand from its tokens: at the last trigger, layer 2 attends to the outputs after
    # the trigger's earlier occurrences; the full model ranks the noise first or second, the variant without FF2 not first
    example = probe["example"]
    with np.load(summary_path.parent / example["file"]) as z:
        layer2 = z["patterns:full"][1]
    tokens, q = example["tokens"], example["query"] - example["start"]
    after = [j + 1 for j in range(q) if tokens[j] == tokens[q] and example["roles"][j + 1] == "output"]
    assert after and layer2[q, after].sum() > 0.5
    assert example["noise_id"] in [t for t, _ in example["top"]["full"][:2]]
    assert example["top"]["layers.1.ff.w2@rho0"][0][0] != example["noise_id"]
    # where the noise sits in w2: its top singular directions (keeping 10% of the rank keeps it), and the
    # single-component removals predict the direction of every measured LASER point
    w2 = summary["callbacks"]["singular_attribution"]["matrices"]["layers.1.ff.w2"]
    assert w2["carried_by"] == "top" and w2["top_gap"] > 1.0 and w2["tail_gap"] < 0
    assert_predicted_signs(w2)
    assert (summary_path.parent / "report" / "figures" / "singular_attribution.png").is_file()


def assert_predicted_signs(record: dict) -> None:
    """For every measured LASER rank: the predicted change of the gap has the measured change's sign."""
    assert record["measured"], "no LASER rank was measured"
    for k, measured in record["measured"].items():
        predicted = record["predicted_keep_top"][int(k)]
        change, predicted_change = measured - record["gap"], predicted - record["gap"]
        # (a change within float rounding of the gap has no sign to predict)
        assert abs(change) < 1e-4 * (1 + abs(record["gap"])) or change * predicted_change > 0, (k, measured, predicted, record["gap"])
