import socket
import time

from pipeline.wandb_mode import choose_mode, has_credentials


def closed_port() -> int:
    with socket.socket() as s:  # bind then release: nothing listens there afterwards
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_explicit_mode_wins():
    assert choose_mode({"WANDB_MODE": "disabled"})[0] == "disabled"


def test_no_credentials_means_offline_without_touching_the_network(tmp_path):
    env = {"NETRC": str(tmp_path / "netrc"), "WANDB_BASE_URL": "http://127.0.0.1:1"}
    assert not has_credentials(env)
    mode, reason = choose_mode(env)
    assert mode == "offline" and "credentials" in reason


def test_credentials_but_no_server_means_offline_quickly(tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1\n  login user\n  password abc\n")
    netrc.chmod(0o600)
    env = {"NETRC": str(netrc), "WANDB_BASE_URL": f"http://127.0.0.1:{closed_port()}"}
    assert has_credentials(env)
    start = time.monotonic()
    mode, reason = choose_mode(env)
    assert mode == "offline" and "not reachable" in reason
    assert time.monotonic() - start < 5


def test_credentials_and_a_listening_server_means_online():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        env = {"WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": f"http://127.0.0.1:{server.getsockname()[1]}"}
        assert choose_mode(env)[0] == "online"
