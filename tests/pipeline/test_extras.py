"""The README's pretrained commands in an environment that lacks their optional packages (what `make demo` installs):
one line naming the missing packages and the command that installs them, before anything loads, never reported as
an invalid configuration. The packages are made missing for real, in a fresh interpreter (benchmarks/gpu_image)."""
import os
import subprocess
import sys


def run_without(repo, tmp_path, modules: str, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "FFVA_MISSING_MODULES": modules, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([os.path.join(repo, "benchmarks", "gpu_image"), repo])}
    return subprocess.run([sys.executable, "main.py", "test", *args, "--trainer.default_root_dir", str(tmp_path / "runs")],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=300)


def test_a_gguf_run_without_its_packages_names_them_and_the_install_command(repo, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "m.gguf").write_bytes(b"GGUF")
    out = run_without(repo, tmp_path, "gguf,accelerate", "--config", "configs/smollm2_laser.yaml",
                      "--model.init_args.model_name", str(folder), "--model.init_args.gguf_file", "m.gguf")
    assert out.returncode == 2, out.stderr[-2000:]
    line = next(l for l in out.stderr.splitlines() if l.startswith("error: "))
    assert line == ("error: missing package: model.init_args.gguf_file needs the packages gguf, accelerate, which are "
                    "not installed: pip install -e '.[pretrained]'")
    assert "invalid configuration" not in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists()


def test_gsm8k_without_the_harness_names_the_extra(repo, tmp_path):
    out = run_without(repo, tmp_path, "lm_eval", "--config", "configs/gsm8k.yaml", "--data.init_args.data_dir", str(tmp_path))
    line = next(l for l in out.stderr.splitlines() if l.startswith("error: "))
    assert out.returncode == 2 and line.startswith("error: missing package: ") and "pip install -e '.[pretrained]'" in line, out.stderr[-2000:]
