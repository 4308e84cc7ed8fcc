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
    # 6 steps and 2 validations (at 3 and 6), each measured
    assert timing["step_seconds"] > 0 and timing["validation_seconds"] > 0
    assert timing["estimated_total_seconds"] == timing["step_seconds"] * 6 + timing["validation_seconds"] * 2
    assert "v_num" not in bar  # Lightning's logger version is not the run directory: not shown


def test_the_estimate_is_printed_after_the_first_steps_and_warns_of_long_cpu_runs(tmp_path, caplog):
    model, dm = tiny_model_and_data()
    estimate = TrainingTimeEstimate(after_steps=3, long_run_seconds=0.0)
    with caplog.at_level(logging.INFO):
        tiny_trainer(tmp_path, [estimate], max_steps=8).fit(model, dm)
    (line,) = [r.getMessage() for r in caplog.records if "Training speed" in r.getMessage()]
    assert "s/step over 3 steps (callbacks included); 8 steps take about" in line and "Validation is not measured yet" in line
    assert "This is a long run for a CPU: fewer steps (--trainer.max_steps)" in line  # longer than long_run_seconds
    assert estimate.estimate_seconds == estimate.step_seconds * 8  # this trainer never validates


def test_after_the_first_validation_the_estimate_includes_the_validations(tmp_path, caplog):
    model, dm = tiny_model_and_data()
    estimate = TrainingTimeEstimate(after_steps=2)
    with caplog.at_level(logging.INFO):
        tiny_trainer(tmp_path, [estimate], max_steps=12, limit_val_batches=1.0, val_check_interval=4,
                     check_val_every_n_epoch=None).fit(model, dm)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Estimated time:")]
    assert "for 12 steps, training" in line and "and 3 validations" in line
    assert estimate.estimate_seconds == estimate.step_seconds * 12 + estimate.validation_seconds * 3


def test_the_long_run_advice_names_the_paper_config_and_never_sends_the_cpu_default_to_itself():
    from callbacks.progress import long_run_advice

    paper = long_run_advice(["configs/paper/noisy.yaml"])
    assert "configs/paper/noisy.yaml is meant for a GPU" in paper and "configs/noisy.yaml is the CPU default" in paper
    default = long_run_advice(["configs/noisy.yaml", "configs/laser_midtrain.yaml"])
    assert "configs/noisy.yaml" not in default and "--trainer.max_steps" in default


def test_the_cli_tells_the_estimate_its_config_files():
    from pipeline.cli import ExperimentCLI

    cli = ExperimentCLI.__new__(ExperimentCLI)  # only the argument reading, no parse
    cli.argv = ["fit", "--config", "configs/noisy.yaml", "--config=configs/laser_midtrain.yaml", "--trainer.max_steps", "5"]
    assert cli.config_files() == ["configs/noisy.yaml", "configs/laser_midtrain.yaml"]
