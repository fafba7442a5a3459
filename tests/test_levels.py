"""The `unit` level is enforced: a unit test that reaches for the network or starts a server
fails with a line saying so (tests/support/levels.py)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.support.levels import NotAUnitTest, _server_command


def test_a_unit_test_cannot_connect_or_bind_loopback() -> None:
    with pytest.raises(NotAUnitTest, match="is marked unit but connects to"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    with socket.socket() as sock, pytest.raises(NotAUnitTest, match="binds"):
        sock.bind(("127.0.0.1", 0))
    with socket.socket(socket.AF_INET6) as sock, pytest.raises(NotAUnitTest):
        sock.connect(("::1", 9))


def test_a_unit_test_cannot_start_a_server_program() -> None:
    with pytest.raises(NotAUnitTest, match="starts a server: /opt/bin/weed mini"):
        subprocess.Popen(["/opt/bin/weed", "mini"])
    with pytest.raises(NotAUnitTest, match="prefect server start"):
        subprocess.run([sys.executable, "-m", "prefect", "server", "start"])


def test_local_pipes_and_plain_programs_still_work() -> None:
    """Unix sockets (asyncio's self-pipe) and ordinary subprocesses are not servers."""
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"x")
        assert right.recv(1) == b"x"
    done = subprocess.run([sys.executable, "-c", "print('ok')"], capture_output=True, text=True)
    assert done.stdout.strip() == "ok"


def test_server_commands_are_recognised() -> None:
    assert _server_command(["redis-server", "--port", "0"])
    assert _server_command([sys.executable, "-m", "cli", "up"])
    assert _server_command("weed mini -dir=x")
    assert _server_command(["reelflow", "worker", "--pool", "cpu"])
    assert _server_command([sys.executable, "-m", "cli", "validate", "up.yaml"]) is None
    assert _server_command(["ffmpeg", "-i", "in.mp4", "out.mp4"]) is None


@pytest.mark.integration
def test_an_integration_test_may_use_loopback() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        assert sock.getsockname()[1] > 0
