"""W&B's mode is chosen the way wandb itself reads its server and credentials, quickly and without hanging."""
import socket
import time

import pytest

from run_record import wandb_mode


def closed_port() -> int:
    with socket.socket() as s:  # bind then release: nothing listens there afterwards
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """No credentials, no settings: a fresh HOME, netrc and wandb config dir."""
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_netrc(path, host: str) -> None:
    path.write_text(f"machine {host}\n  login user\n  password {'k' * 40}\n")
    path.chmod(0o600)


def test_offline_and_disabled_are_kept(clean_env, monkeypatch):
    for mode in ("disabled", "offline"):
        monkeypatch.setenv("WANDB_MODE", mode)
        assert wandb_mode.choose_mode()[0] == mode


def test_no_credentials_means_offline_without_touching_the_network(clean_env):
    start = time.monotonic()
    mode, reason = wandb_mode.choose_mode()
    assert mode == "offline" and "no W&B credentials" in reason
    assert time.monotonic() - start < 2


def test_the_default_server_is_wandbs_own_not_a_hard_coded_host(clean_env):
    import wandb.sdk.lib.urls as urls

    assert wandb_mode.base_url() == urls.DEFAULT_BASE_URL  # whatever this wandb version logs in to


def test_a_wandb_login_for_the_configured_server_counts_as_credentials(clean_env, monkeypatch):
    port = closed_port()
    # `wandb login --host` saves the key in netrc under the server's host:port and the host in wandb's settings file
    write_netrc(clean_env / ".netrc", f"127.0.0.1:{port}")
    (clean_env / "wandb-config").mkdir()
    (clean_env / "wandb-config" / "settings").write_text(f"[default]\nbase_url = http://127.0.0.1:{port}\n")
    assert wandb_mode.base_url() == f"http://127.0.0.1:{port}"
    assert wandb_mode.credentials_source() == "netrc (wandb login)"
    # a key saved for another server is not a login to this one
    write_netrc(clean_env / ".netrc", "api.wandb.ai")
    assert wandb_mode.credentials_source() is None


def test_credentials_but_no_server_means_offline_within_seconds(clean_env, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    start = time.monotonic()
    mode, reason = wandb_mode.choose_mode()
    assert mode == "offline" and "did not answer" in reason
    assert time.monotonic() - start < 5


def test_wandb_mode_online_without_a_server_falls_back_to_offline_with_a_warning(clean_env, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    mode, reason = wandb_mode.choose_mode()
    assert mode == "offline" and reason.startswith("WANDB_MODE=online was set, but")


def test_credentials_and_a_listening_server_means_online(clean_env, monkeypatch):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
        write_netrc(clean_env / ".netrc", f"127.0.0.1:{server.getsockname()[1]}")
        assert wandb_mode.choose_mode()[0] == "online"
