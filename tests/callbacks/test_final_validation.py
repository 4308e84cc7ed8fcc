"""Every fit that completes evaluates its final weights exactly once, checkpoints them and prints the table."""
import json

import lightning as L
import pytest
import torch

from main import main
from tests.pipeline.test_cli import TINY, only_run_dir


class CountValidations(L.Callback):
    steps: list[int] = []

    def on_validation_end(self, trainer, pl_module):
        CountValidations.steps.append(trainer.global_step)


COUNTER = '{"class_path": "tests.callbacks.test_final_validation.CountValidations"}'


@pytest.mark.parametrize("max_steps, interval, validated", [(2, 250, [2]), (7, 3, [3, 6, 7]), (6, 3, [3, 6])])
def test_the_last_step_is_validated_once_and_checkpointed(tmp_path, capsys, monkeypatch, max_steps, interval, validated):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    CountValidations.steps = []
    main(["fit", *TINY, "--trainer.max_steps", str(max_steps), "--trainer.val_check_interval", str(interval),
          f"--trainer.callbacks=[{COUNTER}]", "--trainer.default_root_dir", str(tmp_path)])
    assert CountValidations.steps == validated  # never twice at the last step when the schedule lines up
    run = only_run_dir(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["eval_step"] == summary["global_step"] == max_steps
    assert summary["variants"]["full"]["loss"] > 0 and "val/full/p_noise" in summary["metrics"]
    (ckpt,) = (run / "checkpoints").glob("*.ckpt")
    assert torch.load(ckpt, weights_only=True)["global_step"] == max_steps  # the final weights, not an earlier step's
    out = capsys.readouterr().out
    assert "Results on the clean test set at trigger positions:" in out and "(from step" not in out
