"""slurm/submit.py checks a sweep before queueing anything (no cluster needed): every task's config through the CLI's
parser, run by the interpreter the tasks will use, which is the project's environment, never silently the caller's."""
import subprocess
import sys

import pytest

from tests.slurm.test_slurm_sweeps import REPO, sweep_file, tiny_base

sys.path.insert(0, str(REPO / "slurm"))
import submit  # noqa: E402

VENV_PYTHON = REPO / ".venv" / "bin" / "python"


def test_dry_run_refuses_a_misspelled_grid_key_naming_the_task(tmp_path, capsys):
    path = sweep_file(tmp_path, tiny_base(tmp_path / "base.yaml"), {"data.init_args.alpah": [0.1, 0.2]})
    with pytest.raises(SystemExit) as exit_info:
        submit.main([str(path), "--dry-run", "--root", str(tmp_path / "sweeps")])
    message = str(exit_info.value.code)
    assert "2 of 2 tasks" in message and "task 0 {\"data.init_args.alpah\": 0.1}" in message
    assert "unknown key 'alpah' (did you mean 'alpha'?)" in message
    assert "#SBATCH" not in capsys.readouterr().out and not (tmp_path / "sweeps").exists()


@pytest.mark.skipif(not VENV_PYTHON.exists(), reason="the project's .venv (made by make test) is not at the repository root")
def test_a_system_python_writes_the_projects_interpreter_into_the_srun_line(tmp_path):
    path = sweep_file(tmp_path, tiny_base(tmp_path / "base.yaml"), {"seed_everything": [0]})
    outside = sys._base_executable  # the interpreter the venv was made from: no torch there
    assert subprocess.run([outside, "-c", "import torch"], capture_output=True).returncode != 0
    out = subprocess.run([outside, "slurm/submit.py", str(path), "--dry-run"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (srun,) = [line for line in out.stdout.splitlines() if line.startswith("srun ")]
    assert srun.startswith(f"srun {VENV_PYTHON} -m pipeline.sweep")


def test_an_explicit_python_must_exist_and_run_the_pipeline(tmp_path):
    path = sweep_file(tmp_path, tiny_base(tmp_path / "base.yaml"), {"seed_everything": [0]})
    with pytest.raises(SystemExit, match="--python /no/such/python: no such executable"):
        submit.main([str(path), "--dry-run", "--python", "/no/such/python"])
    with pytest.raises(SystemExit, match=r"cannot run the pipeline \(ModuleNotFoundError: No module named '(torch|yaml|jsonargparse)'"):
        submit.main([str(path), "--dry-run", "--python", sys._base_executable])


@pytest.mark.parametrize("value", [0, 1.5, "two", True])
def test_runs_per_gpu_that_is_not_a_whole_number_is_refused_in_one_line(tmp_path, value):
    import yaml

    path = sweep_file(tmp_path, tiny_base(tmp_path / "base.yaml"), {"seed_everything": [0, 1]})
    spec = yaml.safe_load(path.read_text()) | {"slurm": {"runs_per_gpu": value}}
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SystemExit) as exit_info:
        submit.main([str(path), "--dry-run", "--root", str(tmp_path / "sweeps")])
    assert str(exit_info.value.code) == f"error: slurm.runs_per_gpu must be a whole number >= 1, got {value!r}"
    assert not (tmp_path / "sweeps").exists()


def test_pack_zero_is_refused_in_one_line(tmp_path):
    from pipeline import sweep

    path = sweep_file(tmp_path, tiny_base(tmp_path / "base.yaml"), {"seed_everything": [0, 1]})
    with pytest.raises(SystemExit) as exit_info:
        sweep.main([str(path), "--pack", "0", "--task", "0", "--root", str(tmp_path / "sweep")])
    assert str(exit_info.value.code) == "error: --pack 0: runs per array task must be >= 1"
    assert not (tmp_path / "sweep").exists()
