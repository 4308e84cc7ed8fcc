"""Decide W&B's mode before any wandb call, so a run never hangs or fails for want of network or credentials.

The server and the credentials are read the way ``wandb.init`` reads them (its settings files, ``WANDB_BASE_URL``,
``WANDB_API_KEY`` / ``WANDB_IDENTITY_TOKEN_FILE``, the API key saved by ``wandb login`` in netrc for that server,
or ``api_key`` in the settings). This uses wandb's own (internal) settings and netrc readers: the tested range is
pinned in pyproject.toml (``wandb>=0.31,<0.32``), and ``tests/pipeline/test_wandb_mode.py`` covers them.
"""
from __future__ import annotations

import os

from run_record import network


def wandb_settings():
    """A fresh copy of the settings ``wandb.init`` would start from (settings files, then the environment)."""
    from wandb.sdk import wandb_setup

    return wandb_setup._WandbSetup(pid=os.getpid()).settings


def base_url() -> str:
    return wandb_settings().base_url


def credentials_source() -> str | None:
    """Where wandb would find credentials for its configured server, or None."""
    if os.environ.get("WANDB_API_KEY"):
        return "WANDB_API_KEY"
    if os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return "WANDB_IDENTITY_TOKEN_FILE"
    from wandb.sdk.lib import wbauth

    settings = wandb_settings()
    try:
        if wbauth.read_netrc_auth(host=settings.base_url):
            return "netrc (wandb login)"
    except Exception:  # noqa: BLE001  a malformed key in netrc: wandb would refuse it too
        return None
    return "wandb settings (api_key)" if settings.api_key else None


def reachable(timeout: float = 3.0) -> bool:
    return network.reachable(base_url(), timeout)


MODES = ("online", "offline", "disabled", "dryrun", "run", "shared")  # what wandb.init accepts in WANDB_MODE


def check_env() -> None:
    """An unknown WANDB_MODE is a config error (wandb would raise deep inside the logger)."""
    mode = os.environ.get("WANDB_MODE")
    if mode is not None and mode not in MODES:
        raise ValueError(f"WANDB_MODE={mode!r} is not a W&B mode: use online | offline | disabled, or unset it (online "
                         "with credentials and a server that answers, else offline)")


def choose_mode() -> tuple[str, str]:
    """(mode, reason). ``disabled`` / ``offline`` set in WANDB_MODE are kept; otherwise (``online`` included) online
    only with credentials and a server that answers within 3 s, else offline with the reason."""
    explicit = os.environ.get("WANDB_MODE")
    if explicit in ("disabled", "offline", "dryrun"):
        return explicit, "WANDB_MODE is set"
    asked = "WANDB_MODE=online was set, but " if explicit == "online" else ""
    source = credentials_source()
    if source is None:
        return "offline", f"{asked}no W&B credentials for {base_url()} (WANDB_API_KEY or `wandb login`)"
    if not reachable():
        return "offline", f"{asked}the W&B server {base_url()} did not answer within 3 s"
    return "online", f"credentials from {source}, server {base_url()} reachable"
