"""Ctrl-C: the run is marked interrupted (not failed), says where it is and how to resume; the resume command
continues the same run directory and the same W&B run."""
import pytest
import json
import os
import shlex
import signal
import subprocess
import sys
import time

from tests.pipeline.test_cli import TINY, only_run_dir


pytestmark = pytest.mark.slow  # end-to-end runs stopped and resumed: `make test`, not `make test-fast`


def sigint_as_in_a_terminal() -> None:
    """For the child: Ctrl-C's default disposition. A test run started in the background (a CI job, ``cmd &``)
    inherits SIGINT ignored, and Python then never raises KeyboardInterrupt: the run would not see the Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_and_wait_for_a_checkpoint(repo, tmp_path, env: dict, max_steps: int) -> subprocess.Popen:
    args = [*TINY, "--trainer.max_steps", str(max_steps), "--trainer.val_check_interval", "20", "--trainer.callbacks=[]",
            "--trainer.default_root_dir", str(tmp_path)]
    proc = subprocess.Popen([sys.executable, "main.py", "fit", *args], cwd=repo, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=sigint_as_in_a_terminal)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("noisy/*/checkpoints/*.ckpt")) and time.monotonic() < deadline:
        time.sleep(0.2)
    return proc


def test_ctrl_c_records_interrupted_and_the_printed_command_resumes_the_same_run(repo, tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": repo}
    proc = start_and_wait_for_a_checkpoint(repo, tmp_path, env, 1000)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]  # the shell's code for Ctrl-C (Lightning's own is 1)
    run = only_run_dir(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 20 <= summary["global_step"] < 1000
    assert f"Run directory: {run}" in err
    (resume,) = [line.strip() for line in err.splitlines() if line.strip().startswith("python main.py fit")]
    assert f"--config {run / 'config.yaml'}" in resume and "--ckpt_path" in resume
    assert resume == summary["error"].splitlines()[-1].strip()  # summary.json holds the command too

    # the printed command, as the user runs it: the same directory and W&B run id, trained to the end
    out = subprocess.run([sys.executable, *shlex.split(resume)[1:]], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert only_run_dir(tmp_path) == run
    final = json.loads((run / "summary.json").read_text())
    assert final["status"] == "completed" and final["global_step"] == 1000
    assert final["wandb"]["id"] == summary["wandb"]["id"]
    assert len(list((run / "wandb").glob("offline-run-*"))) == 2  # two parts of one W&B run id, synced in order


def test_sigterm_records_interrupted_and_exits_non_zero(repo, tmp_path):
    # kill, scancel and time limits send SIGTERM; Lightning alone would exit 0 and the summary would say "failed"
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": repo}
    proc = start_and_wait_for_a_checkpoint(repo, tmp_path, env, 100000)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    summary = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["error"].startswith("terminated (SIGTERM) at step")
    assert "--ckpt_path" in summary["error"] and "Terminated (SIGTERM) at step" in err


def history(path) -> dict[tuple[int, str], float]:
    """metrics.csv as {(step, key): value}; every (step, key) at most once."""
    from run_record.files import read_csv_rows

    out = {}
    for row in read_csv_rows(path):
        for k, v in row.items():
            if k not in ("step", "epoch") and v != "":
                assert (int(row["step"]), k) not in out, f"{k} logged twice at step {row['step']}"
                out[int(row["step"]), k] = float(v)
    return out


def test_a_resumed_run_keeps_its_history_before_the_checkpoint_and_matches_an_uninterrupted_run(repo, tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": repo}
    proc = start_and_wait_for_a_checkpoint(repo, tmp_path / "resumed", env, 200)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert "Previous log files" not in err  # Lightning's CSV writer would delete the history when it restarts
    run = only_run_dir(tmp_path / "resumed")
    before = history(run / "metrics.csv")
    (resume,) = [line.strip() for line in err.splitlines() if line.strip().startswith("python main.py fit")]
    ckpt_step = int(resume.rsplit("step=", 1)[1].split(".")[0])
    out = subprocess.run([sys.executable, *shlex.split(resume)[1:]], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Previous log files" not in out.stderr and only_run_dir(tmp_path / "resumed") == run
    after = history(run / "metrics.csv")
    # every row logged up to the checkpoint's step survives the resume, unchanged
    kept = {k: v for k, v in before.items() if k[0] <= ckpt_step}
    assert kept and all(after[k] == v for k, v in kept.items())
    # and the whole history is the one an uninterrupted run logs, step for step
    args = [*TINY, "--trainer.max_steps", "200", "--trainer.val_check_interval", "20", "--trainer.callbacks=[]",
            "--trainer.default_root_dir", str(tmp_path / "straight")]
    straight = subprocess.run([sys.executable, "main.py", "fit", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0 and "Previous log files" not in straight.stderr
    reference = history(only_run_dir(tmp_path / "straight") / "metrics.csv")
    timing = lambda d: {k: v for k, v in d.items() if not k[1].startswith("time/")}  # noqa: E731  wall-clock
    assert timing(after).keys() == timing(reference).keys()
    assert all(abs(after[k] - reference[k]) <= 1e-5 * max(1.0, abs(reference[k])) for k in timing(reference))
    # the first validation is dated at the step whose weights it evaluated, with the probes of the same weights
    assert (20, "val/full/p_noise") in after and (19, "val/full/p_noise") not in after
