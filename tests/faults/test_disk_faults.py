"""A full disk and a read-only directory, for real: the run ends with one line naming the file, is recorded as failed,
and every file it leaves is one a reader can trust (the previous checkpoint loads, no partial file remains)."""
import json
import os
import subprocess
import sys

import pytest
import torch

from run_record import checkpoints
from run_record.files import PARTIAL, read_csv_rows
from tests.pipeline.test_cli import TINY, only_run_dir


def run(repo, root, *extra, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": repo}
    return subprocess.run([sys.executable, "main.py", "fit", *TINY, "--trainer.callbacks=[]",
                           "--trainer.default_root_dir", str(root), *extra],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)


def test_a_full_disk_ends_the_run_in_one_line_and_leaves_only_whole_files(repo, small_fs):
    # 160 KiB: the run's files and its step-3 checkpoint (about 80 KiB) fit, the step-6 one does not
    out = run(repo, small_fs)
    assert out.returncode == 1, out.stderr[-2000:]
    run_dir = only_run_dir(small_fs)
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: could not write {run_dir}/checkpoints/epoch=0-step=6.ckpt: No space left on device")
    assert "Traceback" not in out.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "epoch=0-step=6.ckpt" in summary["error"]
    # the earlier checkpoint is whole and loads; the failed one left nothing behind
    (ckpt,) = (run_dir / "checkpoints").glob("*.ckpt")
    assert ckpt.name == "epoch=0-step=3.ckpt"
    assert checkpoints.read(str(ckpt))["global_step"] == 3
    assert torch.load(ckpt, weights_only=True)["state_dict"]
    assert not [p for p in run_dir.rglob("*") if PARTIAL in p.name]
    rows = read_csv_rows(run_dir / "metrics.csv")  # whole, and it holds the history up to the failure
    assert {int(r["step"]) for r in rows if r.get("val/full/p_noise")} == {0, 3, 6}  # step 0: an early evaluation


def test_a_read_only_root_is_refused_before_compute(repo, read_only_dir):
    out = run(repo, read_only_dir / "runs")
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == (f"error: invalid configuration: trainer.default_root_dir {read_only_dir / 'runs'}: "
                                           f"{read_only_dir} cannot be written (read-only or no permission); choose another directory")
    assert "Traceback" not in out.stderr and not any(read_only_dir.iterdir())


def test_readers_and_the_sweep_driver_on_a_read_only_directory_say_so_in_one_line(repo, tmp_path, read_only_dir):
    import shutil

    from reports.__main__ import main as reports_main

    out = run(repo, tmp_path / "runs")
    assert out.returncode == 0, out.stderr[-2000:]
    run_dir = only_run_dir(tmp_path / "runs")
    # a copy of the run on a read-only file system: the report cannot be written there
    subprocess.run(["mount", "-o", "remount,rw", str(read_only_dir)], check=True)
    shutil.copytree(run_dir, read_only_dir / "run")
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_dir)], check=True)
    with pytest.raises(SystemExit, match=rf"^error: could not write {read_only_dir}/run/report.*: Read-only file system"):
        reports_main([str(read_only_dir / "run")])
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text("base: configs/noisy.yaml\ngrid:\n  trainer.max_steps: [2]\n")
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": repo}
    out = subprocess.run([sys.executable, "-m", "pipeline.sweep", str(sweep_file), "--root", str(read_only_dir / "sweep")],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith(f"error: could not write {read_only_dir}/sweep/tasks.json")
