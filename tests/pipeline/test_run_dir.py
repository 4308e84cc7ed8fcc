"""Where a run writes: SLURM ids as the version, and DDP workers writing to their parent's directory."""
from pathlib import Path

from pipeline.run_dir import PARENT_RUN_DIR, run_dir, run_version


def test_slurm_ids_make_the_version_so_a_requeued_task_finds_its_directory():
    assert run_version({"SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": "3", "SLURM_JOB_ID": "80"}) == "77_3"
    assert run_version({"SLURM_JOB_ID": "80"}) == "80"
    a, b = run_version({}), run_version({})
    assert a != b  # timestamps plus a random suffix: two runs started in the same second differ


def test_ddp_workers_use_the_directory_their_parent_chose():
    parent = {PARENT_RUN_DIR: "/runs/noisy/20261123-1"}
    assert run_dir("/runs", "noisy", {**parent, "LOCAL_RANK": "1"}) == Path("/runs/noisy/20261123-1")
    # the parent itself (rank 0), and a later run in the same process, choose a fresh directory
    assert run_dir("/runs", "noisy", {**parent, "LOCAL_RANK": "0"}) != Path("/runs/noisy/20261123-1")
    assert run_dir("/runs", "noisy", parent).parent == Path("/runs/noisy")
