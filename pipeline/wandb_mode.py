"""Decide W&B's mode before any wandb call, so a run never hangs or fails for want of network or credentials."""
from __future__ import annotations

import netrc
import os
from typing import Mapping
from urllib.parse import urlparse

from pipeline import network

DEFAULT_BASE_URL = "https://api.wandb.ai"


def has_credentials(env: Mapping[str, str] = os.environ) -> bool:
    if env.get("WANDB_API_KEY"):
        return True
    host = urlparse(env.get("WANDB_BASE_URL", DEFAULT_BASE_URL)).hostname or ""
    path = env.get("NETRC", os.path.expanduser("~/.netrc"))
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def reachable(env: Mapping[str, str] = os.environ, timeout: float = 3.0) -> bool:
    return network.reachable(env.get("WANDB_BASE_URL", DEFAULT_BASE_URL), timeout)


def choose_mode(env: Mapping[str, str] = os.environ) -> tuple[str, str]:
    """(mode, reason). An explicit WANDB_MODE wins; otherwise online only with credentials and a reachable server."""
    explicit = env.get("WANDB_MODE")
    if explicit:
        return explicit, "WANDB_MODE is set"
    if not has_credentials(env):
        return "offline", "no W&B credentials (WANDB_API_KEY or `wandb login`)"
    if not reachable(env):
        return "offline", "W&B server not reachable"
    return "online", "credentials found and server reachable"
