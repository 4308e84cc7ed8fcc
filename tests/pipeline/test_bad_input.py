"""Bad input through `main.py` as a user types it: one line that names the key, file or value, exit code 2, before
any compute, and nothing written. Degenerate runs are refused, or end as failed, never as "completed" garbage."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch

from main import main
from tests.pipeline.test_cli import TINY, only_run_dir


def refused(tmp_path, capsys, *args: str) -> str:
    """Runs main.py fit with TINY + args; asserts exit 2 and an empty run root; returns stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *TINY, "--trainer.default_root_dir", str(tmp_path / "runs"), *args])
    assert exit_info.value.code == 2
    assert not (tmp_path / "runs").exists(), "bad input must not create a run directory"
    return capsys.readouterr().err


@pytest.fixture(autouse=True)
def no_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")


@pytest.mark.parametrize("args, message", [
    (["--data.init_args.seq_len", "1"], "data.seq_len (1) / data.test_seq_len is too short to hold a repeated trigger"),
    (["--data.init_args.seq_len", "3", "--data.init_args.n_test", "1", "--data.init_args.test_seed", "1"],
     "the clean test set (1 sequences of length 3) has no scored trigger position"),
    (["--trainer.max_steps", "0"], "trainer.max_steps is 0: the run would train nothing"),
    (["--trainer.max_steps", "-1"], "trainer.max_steps is -1: the training stream is endless"),
    (["--trainer.callbacks", '[{"class_path": "callbacks.LaserTruncation", "init_args": {"targets": ["layers.1.ff.w2"], "rho": 0.0, "at_steps": [10]}}]'],
     "LaserTruncation.at_steps [10] come after trainer.max_steps (6): they would never truncate"),
    (["--model.init_args.optimizer.init_args.lr", "-0.1"], "model.optimizer / model.scheduler: Invalid learning rate: -0.1"),
    # values that reached compute with a raw traceback (issue 28.4)
    (["--trainer.val_check_interval", "0"], "trainer.val_check_interval must be a number of steps >= 1 or a fraction of an epoch in (0, 1], got 0"),
    (["--seed_everything", "-1"], "seed_everything must be in 0..4294967295 (numpy's seed range) or true (a random seed), got -1"),
    (["--seed_everything", str(2**40)], f"seed_everything must be in 0..4294967295 (numpy's seed range) or true (a random seed), got {2**40}"),
    (["--model.init_args.optimizer.init_args.lr", "nan"], "model.init_args.optimizer.init_args.lr: expected a finite number, got nan"),
    (["--model.init_args.optimizer.init_args.lr", "inf"], "model.init_args.optimizer.init_args.lr: expected a finite number, got inf"),
    (["--model.init_args.model.dim", "-4"], "model.dim must be >= 1, got -4"),
    (["--model.init_args.model.n_heads", "0"], "model.n_heads must be >= 1, got 0"),
    # a size refusal names the value that grew, not another field of the same tensor
    (["--model.init_args.model.max_seq_len", "1000000000"], "model.init_args.model.max_seq_len (1000000000): this run would need"),
    (["--data.init_args.n_triggers", "1000000000"], "data.init_args.n_triggers (1000000000): this run would need"),
])
def test_runs_that_cannot_work_are_refused_before_any_step(tmp_path, capsys, args, message):
    assert message in refused(tmp_path, capsys, *args)


def test_a_run_whose_loss_goes_non_finite_stops_and_is_marked_failed(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *TINY, "--trainer.default_root_dir", str(tmp_path),
              "--model.init_args.optimizer", '{"class_path": "torch.optim.SGD", "init_args": {"lr": 1e20}}'])
    assert exit_info.value.code == 1
    assert "training diverged" in capsys.readouterr().err
    summary = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())
    assert summary["status"] == "failed" and "train/loss is nan" in summary["error"] and summary["global_step"] < 6


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_asked_for_on_a_cpu_machine_is_one_line(tmp_path, capsys):
    err = refused(tmp_path, capsys, "--trainer.accelerator", "gpu")
    assert "trainer (accelerator='gpu'" in err and "This machine has no usable GPU: use --trainer.accelerator cpu" in err


@pytest.mark.parametrize("args, first_line", [
    (["--data.init_args.alpah", "0.3"],
     "error: invalid configuration: data.init_args.alpah: unknown key 'alpah' (did you mean 'alpha'?); accepted: bigram,"),
    (["--data.init_args.alpha", "abc"], "error: invalid configuration: data.init_args.alpha: expected float, got 'abc'"),
    (["--model.init_args.model.positional", "rop"],
     "error: invalid configuration: model.init_args.model.positional: expected one of 'absolute', 'sinusoidal', 'rope', 'relative', 'alibi', 'none', got 'rop'"),
    (["--model.init_args.optimizer.init_args.lrr", "0.1"],
     "error: invalid configuration: model.init_args.optimizer.init_args.lrr: unknown key 'lrr' (did you mean 'lr'?)"),
    # a prefix of one option is not that option (argparse would silently complete it to max_steps)
    (["--trainer.max_step", "10"],
     "error: invalid configuration: unrecognized arguments: --trainer.max_step 10 (did you mean --trainer.max_steps?)"),
    (["--report_", "false"], "error: invalid configuration: unrecognized arguments: --report_ false (did you mean --report?)"),
])
def test_config_errors_start_with_one_line_naming_the_key_and_value(tmp_path, capsys, args, first_line):
    err = refused(tmp_path, capsys, *args)
    assert err.splitlines()[0].startswith(first_line), err.splitlines()[0]
    assert "usage:" not in err and "--trainer.accelerator ACCELERATOR" not in err  # no 45 lines of usage


@pytest.mark.parametrize("content, message", [
    ("", "the file is empty or not a mapping of keys"),
    ("trainer:\n  max_steps: [1\n", "YAML syntax error at line 3, column 1"),
    ("- just\n- a list\n", "the file is empty or not a mapping of keys"),
])
def test_config_file_problems_name_the_file(tmp_path, capsys, content, message):
    path = tmp_path / "my.yaml"
    path.write_text(content)
    err = refused(tmp_path, capsys, "--config", str(path))
    assert err.splitlines()[0] == f"error: --config {path}: {message}" or err.startswith(f"error: --config {path}: {message}")


def test_the_user_sees_one_line_and_exit_code_2_from_the_command_line(repo, tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": repo}
    out = subprocess.run([sys.executable, "main.py", "fit", "--config", "configs/noisy.yaml", "--data.init_args.alpah", "0.3",
                          "--trainer.default_root_dir", str(tmp_path)], cwd=repo, env=env, capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("error: invalid configuration: data.init_args.alpah: unknown key 'alpah' (did you mean 'alpha'?)")
    assert not any(tmp_path.iterdir())


def test_wandb_mode_online_without_a_server_falls_back_to_offline_within_seconds(repo, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once released
    env = {**os.environ, "PYTHONPATH": repo, "WANDB_MODE": "online", "WANDB_API_KEY": "k" * 40,
           "WANDB_BASE_URL": f"http://127.0.0.1:{port}"}
    start = time.monotonic()
    out = subprocess.run([sys.executable, "main.py", "fit", *TINY, "--trainer.default_root_dir", str(tmp_path)],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert time.monotonic() - start < 90
    assert f"warning: W&B mode: offline (WANDB_MODE=online was set, but the W&B server http://127.0.0.1:{port} did not answer" in out.stderr
    assert list(only_run_dir(tmp_path).glob("wandb/offline-run-*"))


@pytest.mark.parametrize("args, message", [
    (["--data.init_args.bigram.init_args.vocab_size", "1000000"], "data.init_args.bigram.init_args.vocab_size (1000000): this run would need about"),
    (["--model.init_args.model.dim", "100000"], "model.init_args.model.dim (100000): this run would need about"),
    (["--data.init_args.n_test", "100000000"], "data.init_args.n_test (100000000): this run would need about"),
    # RoPE has no position table to stop a 1e5-token sequence: its activations do not fit
    (["--data.init_args.seq_len", "100000", "--model.init_args.model.positional", "rope", "--data.init_args.batch_size", "64",
      "--model.init_args.model.dim", "128"], "data.init_args.batch_size x data.init_args.seq_len (64 x 100000): this run would need"),
])
def test_sizes_that_cannot_fit_are_refused_naming_the_field_before_anything_is_allocated(tmp_path, capsys, args, message):
    start = time.monotonic()
    err = refused(tmp_path, capsys, *args)
    assert err.splitlines()[0].startswith(f"error: invalid configuration: {message}"), err.splitlines()[0]
    assert "GiB is free" in err and time.monotonic() - start < 30  # refused from the estimate, not by the allocator


def test_a_long_step_is_announced_with_its_estimate_before_the_first_step():
    from lightning_modules import cost

    model = {"model": {"dim": 64, "ff": ["none", "mlp"], "positional": "rope"}}
    data = {"seq_len": 16384, "batch_size": 1, "n_test": 1}
    e = cost.estimate(model, data)
    assert e.attention_flops / e.step_flops > 0.9  # quadratic in the length
    line = cost.check(model, data, "cpu", max_steps=1500)
    assert line.startswith("Estimated cost: ") and "per step on this cpu" in line and "1500 steps take about" in line
    assert cost.check({"model": {"dim": 16}}, {"seq_len": 24, "batch_size": 8, "n_test": 16}, "cpu", 6) is None


def test_test_lengths_without_a_scored_position_are_refused_naming_the_field(tmp_path, capsys):
    err = refused(tmp_path, capsys, "--data.init_args.test_lengths", "[3]")
    assert "error: invalid configuration: data.test_lengths [3]: the test set(s) ['T3:anywhere']" in err
    assert "hold no scored trigger position" in err


def test_an_unknown_wandb_mode_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "bogus")
    err = refused(tmp_path, capsys)
    assert err.splitlines()[0] == ("error: invalid configuration: WANDB_MODE='bogus' is not a W&B mode: use online | "
                                   "offline | disabled, or unset it (online with credentials and a server that answers, else offline)")
