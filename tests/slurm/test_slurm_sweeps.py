"""slurm/submit.py and collect on a real single-node SLURM cluster: a 2x2 grid, preemption with requeue and resume,
and DDP with 2 processes started by srun."""
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from main import main as run_main
from reports import table as collect
from tests.wandb_records import read_run

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "slurm"))
import submit  # noqa: E402

# one test cluster: its tests share one worker under pytest -n
pytestmark = [pytest.mark.xdist_group("slurm"), pytest.mark.cluster]


def tiny_base(path: Path, **trainer) -> Path:
    """configs/noisy.yaml made tiny (seconds per run), W&B offline, written as a sweep's base config."""
    cfg = yaml.safe_load((REPO / "configs/noisy.yaml").read_text())
    cfg["trainer"].update({"max_steps": 6, "val_check_interval": 3, "log_every_n_steps": 1, "enable_progress_bar": False,
                           "callbacks": []} | trainer)
    cfg["model"]["init_args"]["model"].update({"dim": 16, "max_seq_len": 24})
    cfg["data"]["init_args"].update({"seq_len": 24, "batch_size": 8, "n_test": 16})
    cfg["report"] = False  # the tasks' reports are tested in tests/reports/
    path.write_text(yaml.safe_dump(cfg))
    return path


def sweep_file(tmp_path: Path, base: Path, grid: dict, name: str = "grid") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"base": str(base), "grid": grid, "slurm": {"cpus_per_task": 1, "time": "00:10:00",
                                    "setup": ["export WANDB_MODE=offline"]}}))
    return path


def test_dry_run_prints_the_script_and_tasks_and_submits_nothing(tmp_path, capsys):
    base = tiny_base(tmp_path / "base.yaml", devices=2, num_nodes=1)
    path = sweep_file(tmp_path, base, {"data.init_args.alpha": [0.0, 0.5], "seed_everything": [0, 1, 2]})
    assert submit.main([str(path), "--dry-run", "--root", str(tmp_path / "sweeps"), "--max-parallel", "2",
                        "--partition", "gpu", "--sbatch-line=--constraint=a100"]) is None
    out = capsys.readouterr().out
    for line in ("#SBATCH --array=0-5%2", "#SBATCH --ntasks-per-node=2", "#SBATCH --nodes=1", "#SBATCH --signal=USR1@120",
                 "#SBATCH --partition=gpu", "#SBATCH --constraint=a100", "#SBATCH --requeue", "export WANDB_MODE=offline"):
        assert line in out
    assert 'task 5: {"data.init_args.alpha": 0.5, "seed_everything": 2}' in out
    assert not (tmp_path / "sweeps").exists()
    assert "--gpus-per-node" not in out  # a CPU config asks for no GPUs
    gpu_base = tiny_base(tmp_path / "gpu.yaml", devices=4, num_nodes=2, accelerator="gpu")
    submit.main([str(sweep_file(tmp_path, gpu_base, {"seed_everything": [0]})), "--dry-run"])
    out = capsys.readouterr().out
    assert "#SBATCH --nodes=2" in out and "#SBATCH --ntasks-per-node=4" in out and "#SBATCH --gpus-per-node=4" in out
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"base": str(base), "grid": {"trainer.devices": [1, 2]}}))
    with pytest.raises(SystemExit, match="grid.trainer.devices"):
        submit.main([str(tmp_path / "bad.yaml"), "--dry-run"])


def test_a_2x2_grid_runs_as_one_array_job_and_collects_4_rows(slurm, tmp_path):
    base = tiny_base(tmp_path / "base.yaml")
    path = sweep_file(tmp_path, base, {"data.init_args.alpha": [0.0, 0.5], "seed_everything": [0, 1]})
    job = submit.main([str(path), "--root", str(tmp_path / "sweeps")])
    slurm.wait(job)
    sweep_dir = tmp_path / "sweeps" / "grid"
    table = collect.main([str(sweep_dir)])
    full = [r for r in table if r.get("variant") == "full"]
    assert len(full) == 4 and all(r["status"] == "completed" for r in full), table
    assert [(r["data.init_args.alpha"], r["seed_everything"]) for r in full] == [(0.0, 0), (0.0, 1), (0.5, 0), (0.5, 1)]
    for i, r in enumerate(full):
        run_dir = Path(r["run_dir"])
        assert run_dir.name == f"{job}_{i}"  # <array job>_<task>
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["data"]["init_args"]["alpha"] == r["data.init_args.alpha"] and config["seed_everything"] == r["seed_everything"]
        assert read_run(str(run_dir))["run"].run_group == f"grid_{job}"  # one W&B group per sweep and array job
    assert len(list(csv.DictReader(open(sweep_dir / collect.RESULTS_FILE)))) == len(table)
    # slurm/sync.sh finds every task's offline W&B run (here a dry run: nothing can be uploaded)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    out = subprocess.run(["bash", str(REPO / "slurm/sync.sh"), str(sweep_dir), "--dry-run"], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "Would sync 4 run(s)" in out.stdout + out.stderr, out.stderr[-2000:]  # in one call


def test_a_failing_task_does_not_stop_the_others_and_is_listed_with_its_log(slurm, tmp_path):
    base = tiny_base(tmp_path / "base.yaml")
    path = sweep_file(tmp_path, base, {"data.init_args.alpha": [0.5, 7.0]}, name="failing")
    job = submit.main([str(path), "--root", str(tmp_path / "sweeps")])
    slurm.wait(job)
    table = collect.rows(tmp_path / "sweeps" / "failing")
    assert {r["status"] for r in table if r["task"] == 0} == {"completed"}
    (failed,) = [r for r in table if r["task"] == 1]
    # the array task recorded why its attempt failed (error.txt), and its SLURM log says the same
    assert failed["status"] == "failed" and "data.alpha must be in [0, 1], got 7.0" in failed["error"]
    assert "data.alpha must be in [0, 1], got 7.0" in failed["log_tail"]


def signal_when_training(slurm, task: str, task_dir: Path, step: int = 60) -> None:
    """Sends the task USR1 (what SLURM sends before a time limit) once a validation past ``step`` has written
    summary.json."""
    deadline = time.time() + 300
    while time.time() < deadline:
        summaries = list(task_dir.glob("*/*/summary.json"))
        if summaries and json.loads(summaries[0].read_text())["global_step"] >= step:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the task never got going: {slurm.run('squeue').stdout}")
    assert slurm.run("scancel", "--signal=USR1", task).returncode == 0


def test_preempted_task_requeues_resumes_and_matches_an_uninterrupted_run(slurm, tmp_path):
    steps = {"max_steps": 300, "val_check_interval": 30}
    base = tiny_base(tmp_path / "base.yaml", **steps)
    path = sweep_file(tmp_path, base, {"seed_everything": [3]}, name="preempt")
    job = submit.main([str(path), "--root", str(tmp_path / "sweeps")])
    task_dir = tmp_path / "sweeps" / "preempt" / "0"
    signal_when_training(slurm, f"{job}_0", task_dir)
    slurm.start_requeued(f"{job}_0")
    slurm.wait(job, timeout=600)
    (run_dir,) = [p.parent for p in task_dir.glob("*/*/summary.json")]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["global_step"] == 300
    assert list(run_dir.glob("hpc_ckpt_*.ckpt")), "no checkpoint was saved on the signal"
    log = next((tmp_path / "sweeps" / "preempt" / "logs").glob(f"{job}_0.out")).read_text()
    assert "requeue" in log.lower()
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and len({p.name.rsplit("-", 1)[1] for p in offline}) == 1  # one W&B run id, two parts

    run_main(["fit", "--config", str(base), "--seed_everything", "3", "--trainer.logger", "false",
              "--trainer.default_root_dir", str(tmp_path / "uninterrupted")])
    (reference,) = (tmp_path / "uninterrupted").glob("*/*/summary.json")
    expected = json.loads(reference.read_text())["metrics"]
    for key, value in expected.items():
        if key.startswith("val/"):
            assert summary["metrics"][key] == pytest.approx(value, abs=1e-5), key


def test_a_task_slurm_will_not_requeue_fails_naming_its_checkpoint(slurm, tmp_path):
    base = tiny_base(tmp_path / "base.yaml", max_steps=300, val_check_interval=30)
    job = submit.main([str(sweep_file(tmp_path, base, {"seed_everything": [0]}, name="norequeue")), "--root", str(tmp_path / "sweeps")])
    assert slurm.run("scontrol", "update", f"JobId={job}_0", "Requeue=0").returncode == 0  # e.g. a cluster policy
    signal_when_training(slurm, f"{job}_0", tmp_path / "sweeps" / "norequeue" / "0")
    slurm.wait(job)
    (row,) = [r for r in collect.rows(tmp_path / "sweeps" / "norequeue") if r.get("variant", "full") == "full"]
    assert row["status"] == "failed" and "SLURM did not requeue job" in row["error"], row
    (ckpt,) = Path(row["run_dir"]).glob("hpc_ckpt_*.ckpt")
    assert str(ckpt) in row["error"] and "RuntimeError" in row["log_tail"]
    assert "JobState=FAILED" in slurm.run("scontrol", "show", "job", f"{job}_0").stdout


def test_ddp_two_processes_under_srun(slurm, tmp_path):
    base = tiny_base(tmp_path / "base.yaml", devices=2, strategy="ddp", accelerator="cpu")
    cfg = yaml.safe_load(base.read_text())
    cfg["trainer"]["callbacks"] = [{"class_path": "tests.callbacks.fixtures.SaveWeights", "init_args": {"at_steps": [6]}},
                                   {"class_path": "tests.slurm.test_slurm_sweeps.RecordFirstBatch"}]
    base.write_text(yaml.safe_dump(cfg))
    path = sweep_file(tmp_path, base, {"seed_everything": [0]}, name="ddp")
    job = submit.main([str(path), "--root", str(tmp_path / "sweeps")])
    slurm.wait(job)
    runs = list((tmp_path / "sweeps" / "ddp" / "0").glob("*/*/summary.json"))
    assert len(runs) == 1, runs  # one run directory, one summary
    run_dir = runs[0].parent
    assert json.loads(runs[0].read_text())["status"] == "completed"
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1  # one W&B run
    first = [json.loads((run_dir / f"first_batch_rank{r}.json").read_text()) for r in (0, 1)]
    assert first[0]["world_size"] == first[1]["world_size"] == 2 and first[0]["tokens"] != first[1]["tokens"]
    import torch

    w0, w1 = (torch.load(run_dir / "weights" / f"rank{r}_step6.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    # validation was split across the ranks and reduced: one process evaluating the whole set on the final
    # weights gets the same numbers (rank 0's half alone would not)
    (ckpt,) = (run_dir / "checkpoints").glob("*.ckpt")
    run_main(["validate", "--config", str(base), "--trainer.devices", "1", "--trainer.strategy", "auto",
              "--trainer.logger", "false", "--trainer.callbacks", "[]", "--trainer.default_root_dir", str(tmp_path / "val"),
              "--ckpt_path", str(ckpt)])
    (single,) = (tmp_path / "val").glob("*/*/summary.json")
    single, ddp = json.loads(single.read_text())["metrics"], json.loads(runs[0].read_text())["metrics"]
    val = [k for k in single if k.startswith("val/")]
    assert len(val) >= 8 and all(ddp[k] == pytest.approx(single[k], abs=1e-6) for k in val), {k: (ddp[k], single[k]) for k in val}


class RecordFirstBatch(__import__("lightning").Callback):
    """Writes each rank's first training batch to the run directory (the ranks must see different data)."""

    def setup(self, trainer, pl_module, stage):
        self.dir = Path(trainer.log_dir)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 0:
            record = {"world_size": trainer.world_size, "tokens": batch["tokens"][0].tolist()}
            (self.dir / f"first_batch_rank{trainer.global_rank}.json").write_text(json.dumps(record))


def test_submit_without_sbatch_says_so_and_writes_nothing(tmp_path, monkeypatch):
    base = tiny_base(tmp_path / "base.yaml")
    path = sweep_file(tmp_path, base, {"seed_everything": [0]}, name="nosbatch")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch on PATH
    with pytest.raises(SystemExit, match="sbatch not found on PATH"):
        submit.main([str(path), "--root", str(tmp_path / "sweeps")])
    assert not (tmp_path / "sweeps").exists()


def test_packed_runs_keep_their_own_runs_lose_nothing_to_a_failure_and_all_resume_after_a_requeue(slurm, tmp_path, capsys):
    """Two runs share array task 0 (one of them fails at once), a third has array task 1; array task 0 is signalled
    while its run trains, requeued, and its run resumes to the end. One sweep for both stories (it was two)."""
    base = tiny_base(tmp_path / "base.yaml", max_steps=300, val_check_interval=30)
    path = sweep_file(tmp_path, base, {"data.init_args.alpha": [0.0, 7.0, 0.5]}, name="packed")  # 7.0 fails
    spec = yaml.safe_load(path.read_text())
    spec["slurm"]["runs_per_gpu"] = 2
    path.write_text(yaml.safe_dump(spec))
    submit.main([str(path), "--dry-run"])
    out = capsys.readouterr().out
    assert "#SBATCH --array=0-1" in out and "--pack 2" in out and "3 tasks, 2 per array task sharing its GPU: 2 array tasks" in out
    job = submit.main([str(path), "--root", str(tmp_path / "sweeps")])
    signal_when_training(slurm, f"{job}_0", tmp_path / "sweeps" / "packed" / "0")
    slurm.start_requeued(f"{job}_0")
    slurm.wait(job, timeout=600)
    rows = collect.rows(tmp_path / "sweeps" / "packed")  # collect is unchanged: one row per task and variant
    by_task = {t: {r["status"] for r in rows if r["task"] == t} for t in range(3)}
    assert by_task == {0: {"completed"}, 1: {"failed"}, 2: {"completed"}}, rows
    runs = {r["task"]: Path(r["run_dir"]) for r in rows if r.get("run_dir")}
    assert {t: p.name for t, p in runs.items()} == {0: f"{job}_0", 2: f"{job}_2"}  # each run its own directory
    assert "data.alpha must be in [0, 1], got 7.0" in next(r for r in rows if r["task"] == 1)["error"]
    assert list(runs[0].glob("hpc_ckpt_*.ckpt")), "task 0 saved no checkpoint on the signal"
    for run in runs.values():
        assert json.loads((run / "summary.json").read_text())["global_step"] == 300
    log = next((tmp_path / "sweeps" / "packed" / "logs").glob(f"{job}_0.out")).read_text()
    assert "scontrol requeue" in log and "1 runs continue" in log
