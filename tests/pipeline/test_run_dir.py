"""Where a run writes: one directory per run (SLURM jobs included), stable only where a run must find itself again."""
import json

import pytest
import os
import subprocess
import sys
from pathlib import Path

import yaml

from run_record.run_dir import PARENT_RUN_DIR, RUN_VERSION, run_dir, run_version

TINY = ["--config", "configs/noisy.yaml", "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
        "--trainer.enable_progress_bar", "false", "--trainer.callbacks=[]", "--model.init_args.model.dim", "16",
        "--model.init_args.model.max_seq_len", "24", "--data.init_args.seq_len", "24", "--data.init_args.batch_size", "8",
        "--data.init_args.n_test", "16"]


def test_versions_are_unique_except_for_sweep_tasks_and_the_ranks_of_one_srun_step():
    assert run_version({RUN_VERSION: "77_3", "SLURM_JOB_ID": "80"}) == "77_3"  # set by pipeline.sweep --task
    a, b = run_version({"SLURM_JOB_ID": "80"}), run_version({"SLURM_JOB_ID": "80"})
    assert a.startswith("80-") and b.startswith("80-") and a != b  # two runs in one salloc or sbatch script
    assert run_version({}) != run_version({})  # timestamps plus a random suffix
    srun = {"SLURM_JOB_ID": "80", "SLURM_NTASKS": "2", "SLURM_STEP_ID": "4"}
    assert run_version({**srun, "SLURM_PROCID": "0"}) == run_version({**srun, "SLURM_PROCID": "1"}) == "80.4"


def test_ddp_workers_use_the_directory_their_parent_chose():
    parent = {PARENT_RUN_DIR: "/runs/noisy/20261123-1"}
    assert run_dir("/runs", "noisy", {**parent, "LOCAL_RANK": "1"}) == Path("/runs/noisy/20261123-1")
    # the parent itself (rank 0), and a later run in the same process, choose a fresh directory
    assert run_dir("/runs", "noisy", {**parent, "LOCAL_RANK": "0"}) != Path("/runs/noisy/20261123-1")
    assert run_dir("/runs", "noisy", parent).parent == Path("/runs/noisy")


def test_a_requeued_plain_slurm_job_continues_its_requeued_run(tmp_path):
    done, stopped = tmp_path / "noisy" / "80-20261101-000000-aaaa", tmp_path / "noisy" / "80-20261101-000100-bbbb"
    for path, status in ((done, "completed"), (stopped, "requeued")):
        path.mkdir(parents=True)
        (path / "summary.json").write_text(json.dumps({"status": status}))
    env = {"SLURM_JOB_ID": "80", "SLURM_RESTART_COUNT": "1"}
    assert run_dir(tmp_path, "noisy", env) == stopped
    assert run_dir(tmp_path, "noisy", {"SLURM_JOB_ID": "80"}).name not in (done.name, stopped.name)  # not requeued


@pytest.mark.slow
def test_two_runs_with_the_same_slurm_job_id_keep_their_own_results(repo, tmp_path):
    """Two runs in one sbatch script (or salloc session) share SLURM_JOB_ID; neither overwrites the other."""
    env = {**os.environ, "WANDB_MODE": "offline", "SLURM_JOB_ID": "4242", "PYTHONPATH": repo}
    env.pop("SLURM_ARRAY_JOB_ID", None), env.pop(RUN_VERSION, None)
    for alpha in ("0.0", "0.9"):
        out = subprocess.run([sys.executable, "main.py", "fit", *TINY, "--data.init_args.alpha", alpha,
                              "--trainer.default_root_dir", str(tmp_path)], cwd=repo, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
    runs = sorted((tmp_path / "noisy").iterdir())
    assert len(runs) == 2 and all(r.name.startswith("4242-") for r in runs)
    summaries = [json.loads((r / "summary.json").read_text()) for r in runs]
    assert [s["status"] for s in summaries] == ["completed", "completed"]
    assert sorted(yaml.safe_load((r / "config.yaml").read_text())["data"]["init_args"]["alpha"] for r in runs) == [0.0, 0.9]
    assert len({s["wandb"]["id"] for s in summaries}) == 2  # two W&B runs, not one written twice
    assert all(len(list((r / "checkpoints").glob("*.ckpt"))) == 1 for r in runs)
