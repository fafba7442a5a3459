"""`reelflow up / status / down` on free ports in a tmp home, beside any running stack."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest

from reelflow import devstack
from reelflow.devstack import StackConfig, StackError
from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings

pytestmark = pytest.mark.integration


def _gone(pid: int) -> bool:
    return not devstack._alive(pid)


@pytest.mark.slow
def test_up_status_idempotent_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REELFLOW_S3_ENDPOINT", raising=False)
    config = StackConfig.with_free_ports(tmp_path / "home", timeout=120)
    try:
        state = devstack.up(config)
        assert sorted(state.started) == ["prefect", "s3"]
        assert state.s3_managed and state.s3_pid and state.prefect_pid
        assert state.prefect_api_url == devstack.prefect_api_url(config)
        assert state.prefect_api_url == f"http://127.0.0.1:{config.prefect_port}/api"

        st = devstack.status(config)
        assert st["healthy"] is True
        assert st["s3"]["healthy"] and st["s3"]["pid"] == state.s3_pid
        assert st["prefect"]["healthy"] and st["prefect"]["pid"] == state.prefect_pid

        # The state file holds working credentials, readable by the owner only.
        assert stat.S_IMODE(os.stat(config.stack_file).st_mode) == 0o600
        settings = S3Settings.from_env(config.home)
        assert settings.endpoint == f"127.0.0.1:{config.s3_port}"
        store = ArtifactStore(settings)
        store.put_bytes("smoke/hello.txt", b"hi", "text/plain")
        assert store.get_bytes("smoke/hello.txt") == b"hi"

        # Everything listens on loopback only.
        listening = _listening_ports({state.s3_pid, state.prefect_pid})
        assert listening, "expected listening sockets for the stack's processes"
        assert all(addr == "127.0.0.1" for addr, _ in listening), listening
        assert ("127.0.0.1", config.s3_port) in listening
        assert ("127.0.0.1", config.prefect_port) in listening

        again = devstack.up(config)
        assert again.started == []
        assert (again.s3_pid, again.prefect_pid) == (state.s3_pid, state.prefect_pid)
        assert S3Settings.from_env(config.home) == settings  # same keys on the second up
    finally:
        stopped = devstack.down(config)

    assert sorted(stopped) == sorted([state.s3_pid, state.prefect_pid])
    assert _gone(state.s3_pid) and _gone(state.prefect_pid)
    assert not list((config.home / "run").glob("*.pid"))
    after = devstack.status(config)
    assert not after["s3"]["running"] and not after["prefect"]["running"]
    assert after["healthy"] is False
    assert devstack.down(config) == []  # nothing left to stop


def _listening_ports(pids: set[int]) -> set[tuple[str, int]]:
    """(address, port) of TCP listeners owned by `pids` or their children, from /proc."""
    inodes: set[str] = set()
    all_pids = set(pids)
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                pgid = os.getpgid(int(p.name))
            except (ProcessLookupError, PermissionError):
                continue
            if pgid in pids:
                all_pids.add(int(p.name))
    for pid in all_pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except (FileNotFoundError, PermissionError):
            continue
    out: set[tuple[str, int]] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state != "0A" or inode not in inodes:  # 0A = LISTEN
                continue
            hexaddr, hexport = local.split(":")
            if len(hexaddr) == 8:
                addr = socket.inet_ntoa(bytes.fromhex(hexaddr)[::-1])
            else:
                addr = "ipv6:" + hexaddr
            out.add((addr, int(hexport, 16)))
    return out


def test_external_s3_is_not_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    s3_settings: S3Settings) -> None:
    monkeypatch.setenv("REELFLOW_S3_ENDPOINT", s3_settings.endpoint)
    monkeypatch.setenv("REELFLOW_S3_ACCESS_KEY", s3_settings.access_key)
    monkeypatch.setenv("REELFLOW_S3_SECRET_KEY", s3_settings.secret_key.get_secret_value())
    config = StackConfig.with_free_ports(tmp_path, start_prefect=False)
    state = devstack.up(config)
    assert state.started == [] and not state.s3_managed and state.s3_pid is None
    assert state.s3_endpoint == s3_settings.endpoint
    assert not (config.run_dir / "s3.pid").exists()
    st = devstack.status(config)
    assert st["s3"]["managed"] is False and st["s3"]["healthy"] is True
    saved = json.loads(config.stack_file.read_text())
    assert saved["s3"] is None  # nothing secret written for an external S3
    assert s3_settings.secret_key.get_secret_value() not in config.stack_file.read_text()


def test_port_in_use_is_reported(tmp_path: Path) -> None:
    config = StackConfig.with_free_ports(tmp_path, start_s3=True, start_prefect=False)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", config.filer_port))
        blocker.listen()
        with pytest.raises(StackError, match=f"port 127.0.0.1:{config.filer_port} \\(filer"):
            devstack.up(config)
    assert not (config.run_dir / "s3.pid").exists()


def test_free_ports_leave_grpc_twins_free() -> None:
    ports = devstack.free_ports(4)
    assert len(set(ports)) == 4
    for p in ports:
        assert devstack.port_is_free(p) and devstack.port_is_free(p + devstack.GRPC_OFFSET)
