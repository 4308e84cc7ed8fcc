"""Decide, before any model or tokenizer loads, whether the Hugging Face hub is used at all (like the W&B mode).

A compute node without network would spend ~30 s per file in retries. So when a config's classes load from the hub
(``USES_HUB = True``: CausalLMModule, GSM8KModule) and the hub does not answer within 3 s, the CLI switches the hub
and datasets libraries to offline mode (``HF_HUB_OFFLINE``), and loading reads the local cache only; a model that is
not there fails at once with the command to download it (lightning_modules/pretrained.py).
"""
from __future__ import annotations

import os
import sys

from run_record import network

TRUE = ("1", "true", "yes", "on")


def set_offline() -> None:
    """HF_HUB_OFFLINE / HF_DATASETS_OFFLINE for this process: in the environment (for libraries imported later) and in
    the already-imported libraries' constants (huggingface_hub reads the variable once, at import)."""
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    for module, name in (("huggingface_hub.constants", "HF_HUB_OFFLINE"), ("datasets.config", "HF_HUB_OFFLINE")):
        if module in sys.modules:
            setattr(sys.modules[module], name, True)


def choose(timeout: float = 3.0) -> tuple[str, str]:
    """(mode, reason); offline mode is set here when chosen."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in TRUE:
        set_offline()
        return "offline", "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if network.reachable(endpoint, timeout):
        return "online", f"{endpoint} answers"
    set_offline()
    return "offline", f"{endpoint} did not answer within {timeout:g} s: the local cache only"
