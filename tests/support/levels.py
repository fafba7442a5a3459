"""Test levels, given by what a test starts and enforced while it runs.

- `unit`: no network and no server process. Most tests; `make test-fast` runs them alone.
- `integration`: real servers (the session's S3, a `weed` of its own, a loopback stub server).
- `flows`: a Prefect server (and S3).

A test's level is its closest level marker (function, then class, then module `pytestmark`);
without one it is `flows` or `integration` when it uses one of the shared server fixtures, else
`unit`. A `unit` test that connects or binds an internet socket (loopback included) or starts a
server program fails with a line saying so: a unit test that needs a server is mislabelled.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

LEVELS = ("unit", "integration", "flows")
PREFECT_FIXTURES = {"prefect_server", "film_env", "minio_block"}
S3_FIXTURES = {"s3_stack", "s3_settings", "store"}
# Programs that are servers, by file name; and the argument pairs that start one (a Prefect
# worker is not a server, but it needs one).
SERVER_PROGRAMS = {"weed", "postgres", "pg_ctl", "redis-server", "uvicorn"}
SERVER_ARGS = {("server", "start"), ("worker", "start")} | {
    (cli, command) for cli in ("reelflow", "cli") for command in ("up", "worker")
}


def level_of(item: pytest.Item) -> str:
    """The closest level marker, or the level the shared fixtures a test uses imply."""
    for mark in item.iter_markers():
        if mark.name in LEVELS:
            return mark.name
    used = set(getattr(item, "fixturenames", ()))
    if used & PREFECT_FIXTURES:
        return "flows"
    if used & S3_FIXTURES:
        return "integration"
    return "unit"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        level = level_of(item)
        if not item.get_closest_marker(level):
            item.add_marker(getattr(pytest.mark, level))


class NotAUnitTest(RuntimeError):
    """Raised when a test marked `unit` reaches for the network or a server process."""


def _refuse(test: str, what: str) -> NotAUnitTest:
    return NotAUnitTest(
        f"{test} is marked unit but {what}: mark it integration (or flows) where it starts servers"
    )


def _is_inet(sock: socket.socket) -> bool:
    return sock.family in (socket.AF_INET, socket.AF_INET6)


def _server_command(args: Any) -> str | None:
    """The command line when `args` starts a server program, else None."""
    argv = [args] if isinstance(args, str | bytes | os.PathLike) else list(args)
    argv = [os.fsdecode(a) for a in argv]
    names = [os.path.basename(a) for a in argv]
    if len(argv) == 1 and " " in argv[0]:  # a shell string
        names = argv[0].split()
    if any(name in SERVER_PROGRAMS for name in names[:1]) or any(
        pair in SERVER_ARGS for pair in zip(names, names[1:], strict=False)
    ):
        return " ".join(argv)
    return None


@pytest.fixture(autouse=True)
def _unit_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In a `unit` test, internet sockets and server programs raise NotAUnitTest."""
    if level_of(request.node) != "unit":
        yield
        return
    test = request.node.nodeid
    connect, connect_ex, bind = socket.socket.connect, socket.socket.connect_ex, socket.socket.bind
    popen_init = subprocess.Popen.__init__

    def guarded(method: Any, verb: str) -> Any:
        def call(sock: socket.socket, address: Any, *args: Any) -> Any:
            if _is_inet(sock):
                raise _refuse(test, f"{verb} {address!r}")
            return method(sock, address, *args)

        return call

    def guarded_popen(self: subprocess.Popen, args: Any, *rest: Any, **kwargs: Any) -> None:
        command = _server_command(args)
        if command:
            raise _refuse(test, f"starts a server: {command}")
        popen_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded(connect, "connects to"))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(connect_ex, "connects to"))
    monkeypatch.setattr(socket.socket, "bind", guarded(bind, "binds"))
    monkeypatch.setattr(subprocess.Popen, "__init__", guarded_popen)
    yield
