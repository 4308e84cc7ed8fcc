import os

import pytest
import torch

# Tests never talk to W&B servers; the CLI's own fallback logic is tested separately with explicit envs.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
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
