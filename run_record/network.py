"""One quick question asked before talking to W&B or the Hugging Face hub: does the server answer at all?"""
from __future__ import annotations

import socket
from urllib.parse import urlparse


def reachable(url: str, timeout: float = 3.0) -> bool:
    """A TCP connection to the URL's host opens within ``timeout`` seconds (no DNS, no route: False, fast)."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False
