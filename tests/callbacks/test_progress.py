"""Long runs say how long they will take: the progress bar counts steps against max_steps, and an early estimate of
the total time is printed and recorded."""
import json
import logging

from callbacks.progress import TrainingTimeEstimate
from main import main
from tests.callbacks.fixtures import tiny_model_and_data, tiny_trainer
from tests.pipeline.test_cli import TINY, only_run_dir


def test_the_bar_counts_optimizer_steps_against_max_steps(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    main(["fit", *TINY, "--trainer.enable_progress_bar", "true", "--trainer.accumulate_grad_batches", "2",
          "--trainer.default_root_dir", str(tmp_path)])
    bar = capsys.readouterr().out  # Lightning's tqdm bars write to stdout
    assert "Training steps: 100%" in bar and "6/6 [" in bar  # 6 optimizer steps (12 batches)
    assert "/-2" not in bar and " 12/" not in bar and "/12 [" not in bar
    timing = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())["timing"]
    assert timing["step_seconds"] > 0 and timing["estimated_total_seconds"] == timing["step_seconds"] * 6


def test_the_estimate_is_printed_after_the_first_steps_and_warns_of_long_cpu_runs(tmp_path, caplog):
    model, dm = tiny_model_and_data()
    estimate = TrainingTimeEstimate(after_steps=3, long_run_seconds=0.0)
    with caplog.at_level(logging.INFO):
        tiny_trainer(tmp_path, [estimate], max_steps=8).fit(model, dm)
    (line,) = [r.getMessage() for r in caplog.records if "Training speed" in r.getMessage()]
    assert "s/step over 3 steps; 8 steps take about" in line
    assert "configs/paper/ are meant for a GPU" in line  # a CPU run longer than long_run_seconds
    assert estimate.estimate_seconds == estimate.step_seconds * 8
