"""Precision and compilation as config, on a CPU (their speed is measured on a GPU by benchmarks/gpu.sh): bf16 mixed
precision and torch.compile train the same model, LASER and the probes still compute in float32."""
import json

import pytest
import torch

from main import main
from tests.pipeline.test_cli import TINY, only_run_dir

PROBE = '[{"class_path": "callbacks.AttentionProbe", "init_args": {"every_n_steps": 3}}]'


def fit(tmp_path, name, *extra) -> dict:
    main(["fit", *TINY, "--trainer.callbacks", PROBE, "--trainer.default_root_dir", str(tmp_path / name), *extra])
    return json.loads((only_run_dir(tmp_path / name) / "summary.json").read_text())


@pytest.fixture(autouse=True)
def no_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    yield
    torch.set_float32_matmul_precision("highest")  # a process-wide setting: leave it as the other tests expect


def test_bf16_mixed_precision_and_tf32_train_and_evaluate_every_variant(tmp_path):
    fp32 = fit(tmp_path, "fp32")
    bf16 = fit(tmp_path, "bf16", "--trainer.precision", "bf16-mixed", "--model.init_args.matmul_precision", "high")
    assert bf16["status"] == "completed" and set(bf16["variants"]) == set(fp32["variants"])
    for variant, row in bf16["variants"].items():  # the same model within bf16's rounding after 6 steps
        assert row["loss"] == pytest.approx(fp32["variants"][variant]["loss"], abs=0.05), variant
    probe = bf16["callbacks"]["attention_probe"]  # probes run outside autocast, on the float32 weights
    assert all(isinstance(v, float) for k, v in probe.items() if k not in ("step", "example"))  # the example: its own record


def test_a_compiled_training_forward_trains_the_same_model_as_eager(tmp_path):
    from torch._dynamo.utils import counters

    eager = fit(tmp_path, "eager")
    counters.clear()
    # GradientNoise's one-sequence losses run eager: one graph for the training batch, no second compile for them
    callbacks = PROBE[:-1] + ', {"class_path": "callbacks.GradientNoise", "init_args": {"at_steps": [0, 3], "n_sequences": 8}}]'
    compiled = fit(tmp_path, "compiled", "--model.init_args.compile", "true", "--trainer.callbacks", callbacks)
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    assert set(compiled["callbacks"]["gradient_noise"]) == {"0", "3"}
    for key, value in eager["metrics"].items():
        if key.startswith("val/"):
            assert compiled["metrics"][key] == pytest.approx(value, abs=1e-4), key
    assert compiled["variant_specs"] == eager["variant_specs"]  # parameter names unchanged (layers.1.ff.w2)


def test_a_bad_matmul_precision_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", *TINY, "--model.init_args.matmul_precision", "low", "--trainer.default_root_dir", str(tmp_path)])
    assert "model.init_args.matmul_precision" in capsys.readouterr().err
