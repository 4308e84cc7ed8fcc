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
