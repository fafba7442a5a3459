"""`reelflow up / status / down` on free ports in a tmp home, beside any running stack."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from deployments.automations import ZOMBIE_AUTOMATION
from reelflow import devstack
from reelflow.devstack import StackConfig, StackError
from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def _gone(pid: int) -> bool:
    return not devstack.alive(pid)


@pytest.mark.slow
def test_up_status_idempotent_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REELFLOW_S3_ENDPOINT", raising=False)
    for name in (*devstack.DB_URL_ENVS, devstack.ENV_REDIS_URL):
        monkeypatch.delenv(name, raising=False)
    config = StackConfig.with_free_ports(tmp_path / "home", timeout=120)
    try:
        state = devstack.up(config)
        assert sorted(state.started) == ["postgres", "prefect", "redis", "s3"]
        assert state.db == "postgres"
        assert state.s3_managed and state.s3_pid and state.prefect_pid
        assert state.postgres_pid and state.redis_pid
        assert state.prefect_api_url == devstack.prefect_api_url(config)
        assert state.prefect_api_url == f"http://127.0.0.1:{config.prefect_port}/api"

        st = devstack.status(config)
        assert st["healthy"] is True and st["db"] == "postgres"
        assert st["s3"]["healthy"] and st["s3"]["pid"] == state.s3_pid
        assert st["prefect"]["healthy"] and st["prefect"]["pid"] == state.prefect_pid
        assert st["postgres"]["healthy"] and st["redis"]["healthy"]

        # The state file holds working credentials, readable by the owner only.
        assert stat.S_IMODE(os.stat(config.stack_file).st_mode) == 0o600
        settings = S3Settings.from_env(config.home)
        assert settings.endpoint == f"127.0.0.1:{config.s3_port}"
        store = ArtifactStore(settings)
        store.put_bytes("smoke/hello.txt", b"hi", "text/plain")
        assert store.get_bytes("smoke/hello.txt") == b"hi"

        _assert_prefect_on_postgres(config)
        _assert_authenticated(config)
        # weed chmods its volume files (.vif) 0644 after start, inside the 0700 s3-data/:
        # nobody else can reach them, and every `up`/`down` tightens them.
        assert stat.S_IMODE(config.s3_data_dir.stat().st_mode) == 0o700

        # Everything listens on loopback only; PostgreSQL on its unix socket alone.
        listening = _listening_ports({state.s3_pid, state.prefect_pid, state.redis_pid})
        assert listening, "expected listening sockets for the stack's processes"
        assert all(addr == "127.0.0.1" for addr, _ in listening), listening
        assert ("127.0.0.1", config.s3_port) in listening
        assert ("127.0.0.1", config.prefect_port) in listening
        assert ("127.0.0.1", config.redis_port) in listening
        assert not _listening_ports({state.postgres_pid})

        again = devstack.up(config)
        assert again.started == []
        assert (again.s3_pid, again.prefect_pid) == (state.s3_pid, state.prefect_pid)
        assert S3Settings.from_env(config.home) == settings  # same keys on the second up
        _assert_owner_only(config.home)

        # A crash (every process SIGKILLed, their connections left in TIME-WAIT): `up` restarts
        # at once on the same ports, with the same data and credentials.
        for pid in (state.prefect_pid, state.postgres_pid, state.redis_pid, state.s3_pid):
            os.killpg(pid, signal.SIGKILL)
        wait_until("the killed servers to be gone", lambda: not any(
            devstack.alive(p) for p in (state.prefect_pid, state.s3_pid)), 10, interval=0.1)
        restarted = devstack.up(config)
        assert sorted(restarted.started) == ["postgres", "prefect", "redis", "s3"]
        assert store.get_bytes("smoke/hello.txt") == b"hi"
        assert devstack.read_state(config.home)["prefect"]["auth_string"] == auth_string(config)
        state = restarted
    finally:
        stopped = devstack.down(config)

    assert sorted(stopped) == sorted([state.s3_pid, state.prefect_pid, state.postgres_pid,
                                      state.redis_pid])
    assert all(_gone(p) for p in stopped)
    assert not list((config.home / "run").glob("*.pid"))
    after = devstack.status(config)
    assert not after["s3"]["running"] and not after["prefect"]["running"]
    assert not after["postgres"]["running"]
    assert after["healthy"] is False
    assert devstack.down(config) == []  # nothing left to stop


def auth_string(config: StackConfig) -> str:
    return devstack.read_state(config.home)["prefect"]["auth_string"]


def _assert_prefect_on_postgres(config: StackConfig) -> None:
    """Prefect's tables are in the embedded PostgreSQL, and no SQLite database was made."""
    out = subprocess.run(
        [devstack.pg_bin("psql"), "-h", str(config.pg_data_dir), "-U", "postgres", "-d",
         "prefect", "-tAc", "select count(*) from flow_run"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert out.isdigit()
    assert not list(config.prefect_home.glob("*.db"))


def _assert_authenticated(config: StackConfig) -> None:
    """No credentials: 401 everywhere but /health, block secrets unreadable; with them: works."""
    api = devstack.prefect_api_url(config)
    secrets_query = {"include_secrets": True}
    for auth in (None, ("reelflow", "wrong")):
        r = httpx.post(f"{api}/block_documents/filter", json=secrets_query, auth=auth)
        assert r.status_code == 401, r.text
        assert httpx.post(f"{api}/flow_runs/filter", json={}, auth=auth).status_code == 401
    user, _, password = auth_string(config).partition(":")
    r = httpx.post(f"{api}/block_documents/filter", json=secrets_query, auth=(user, password))
    assert r.status_code == 200
    assert httpx.get(f"{api}/health").status_code == 200
    assert auth_string(config) not in (config.log_dir / "prefect.log").read_text()

    # The CLI finds the stack (its real port) and its credentials in the stack file alone.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["REELFLOW_HOME"] = str(config.home)
    done = subprocess.run([sys.executable, "-m", "cli", "pending"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Unauthorized" not in done.stdout + done.stderr

    # `reelflow up` (nothing to start here) applies the crashed-run automation, so a local
    # render killed with its process is marked Crashed even before any `reelflow deploy`
    done = subprocess.run([sys.executable, "-m", "cli", "up"], env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "marked Crashed after 90 s" in done.stdout, done.stdout
    r = httpx.post(f"{api}/automations/filter", json={}, auth=(user, password))
    assert r.status_code == 200, r.text
    assert ZOMBIE_AUTOMATION in [a["name"] for a in r.json()]


def _assert_owner_only(home: Path) -> None:
    loose = []
    for root, dirs, files in os.walk(home):
        for name in dirs + files:
            p = Path(root) / name
            if not p.is_symlink() and p.lstat().st_mode & 0o077:
                loose.append(f"{oct(p.lstat().st_mode)} {p}")
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert not loose, loose[:10]


@pytest.mark.slow
def test_sqlite_option(tmp_path: Path) -> None:
    """`--db sqlite`: no PostgreSQL started; the database file is owner-only; the choice sticks."""
    config = StackConfig.with_free_ports(tmp_path / "home", start_s3=False, start_redis=False,
                                         db="sqlite", timeout=120)
    try:
        state = devstack.up(config)
        assert state.db == "sqlite" and state.started == ["prefect"]
        assert state.postgres_pid is None and not config.pg_data_dir.exists()
        dbs = list(config.prefect_home.glob("*.db"))
        assert dbs and all(stat.S_IMODE(d.stat().st_mode) == 0o600 for d in dbs)
        _assert_owner_only(config.home)
        later = StackConfig.load(config.home, start_s3=False, start_redis=False)
        assert later.database() == "sqlite" and later.prefect_port == config.prefect_port
    finally:
        devstack.down(config)


def test_load_reads_recorded_ports(tmp_path: Path) -> None:
    """`down`, `status` and clients use the ports `up` recorded, not the defaults."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "stack.json").write_text(json.dumps({
        "host": "127.0.0.1", "ports": {"prefect": 14300, "s3": 14333, "redis": 14390},
        "prefect": {"api_url": "http://127.0.0.1:14300/api", "auth_string": "reelflow:pw"},
        "results_key": "k" * 64,
    }))
    config = StackConfig.load(home)
    assert (config.prefect_port, config.s3_port, config.redis_port) == (14300, 14333, 14390)
    assert StackConfig.load(home, prefect_port=15000).prefect_port == 15000
    env = devstack.client_env(home)
    assert env == {"PREFECT_API_URL": "http://127.0.0.1:14300/api",
                   "PREFECT_API_AUTH_STRING": "reelflow:pw", "REELFLOW_RESULTS_KEY": "k" * 64}


def test_time_wait_port_counts_as_free() -> None:
    """A port whose only socket is in TIME-WAIT is free for a server (SO_REUSEADDR)."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        conn.close()  # the server side closes first: its end goes to TIME-WAIT
        client.close()
        assert not devstack.port_is_free(port)  # still listening
    wait_until("the closed listener's port to be free", lambda: devstack.port_is_free(port), 5,
               interval=0.05)


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


def test_a_port_freed_a_moment_later_is_waited_for(tmp_path: Path) -> None:
    """A server SIGKILLed just before `up` can read as gone while its threads still hold the
    listener (the last CI failure): the check waits out that moment instead of refusing."""
    from reelflow.devstack.processes import check_ports_free

    config = StackConfig.with_free_ports(tmp_path)
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", config.s3_port))
    blocker.listen()
    releaser = threading.Timer(0.5, blocker.close)
    releaser.start()
    try:
        check_ports_free(config, {"s3 http": config.s3_port})
    finally:
        releaser.join()
    assert devstack.port_is_free(config.s3_port)
    with socket.socket() as holder:  # a port held for good is still refused, after the grace
        holder.bind(("127.0.0.1", config.s3_port))
        holder.listen()
        with pytest.raises(devstack.PortsTaken, match=f"127.0.0.1:{config.s3_port} \\(s3 http"):
            check_ports_free(config, {"s3 http": config.s3_port}, grace=0.3)


def test_free_ports_leave_grpc_twins_free() -> None:
    ports = devstack.free_ports(4)
    assert len(set(ports)) == 4
    for p in ports:
        assert devstack.port_is_free(p) and devstack.port_is_free(p + devstack.GRPC_OFFSET)


def test_external_database_and_redis_start_nothing(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A configured database / Redis is used as is: `up` would start neither of its own."""
    config = StackConfig(home=tmp_path)
    assert config.database() == "postgres" and config.wants_postgres() and config.wants_redis()
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL",
                       "postgresql+asyncpg://u:p@db.example:5432/prefect")
    monkeypatch.setenv("REELFLOW_REDIS_URL", "redis://:pw@redis.example:6379/0")
    assert config.database() == "external"
    assert not config.wants_postgres() and not config.wants_redis()
    assert StackConfig(home=tmp_path, db="sqlite").database() == "sqlite"  # an explicit choice


TWIN_BOARD = """
title: "Twin {name}"
project: twin-{name}
width: 128
height: 72
fps: 8
style:
  palette: ["#f5c518", "#e8f1f8"]
  visual_style: cinematic
  negative_prompt: blurry
  model: some-real-model
  base_seed: 5
shots:
  - {{id: a, description: a yellow car on a snowy road, duration: 1.0,
      camera: {{size: wide, angle: eye-level, movement: static}}}}
"""


@pytest.mark.flows
@pytest.mark.slow
def test_two_checkouts_run_side_by_side(tmp_path: Path) -> None:
    """Two checkouts' stacks at once on one host, one moved by `up --base-port N`, the other by
    REELFLOW_BASE_PORT=auto: every port either stack listens on lies in its own block, and
    each renders a film into its own bucket through the CLI."""
    root = Path(__file__).resolve().parents[1]
    base = devstack.free_base_port()
    checkouts = {"a": "", "b": "auto"}  # a: the option below
    envs: dict[str, dict[str, str]] = {}
    for name, base_port in checkouts.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "board.yaml").write_text(TWIN_BOARD.format(name=name), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "REELFLOW_"))}
        env.update(PYTHONPATH=str(root), REELFLOW_HOME=str(folder / ".reelflow"),
                   REELFLOW_MODELS=str(folder / "models"),
                   PREFECT_HOME=str(folder / "client-prefect"),
                   PREFECT_SERVER_ANALYTICS_ENABLED="false")
        if base_port:
            env["REELFLOW_BASE_PORT"] = base_port
        envs[name] = env

    def run_both(*args: str, timeout: float, extra: dict[str, list[str]] | None = None) -> None:
        procs = {name: subprocess.Popen([sys.executable, "-m", "cli", *args,
                                         *(extra or {}).get(name, [])],
                                        cwd=tmp_path / name, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for name, env in envs.items()}
        for name, proc in procs.items():
            out, _ = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, f"{name}: reelflow {args[0]}\n{out[-3000:]}"

    configs = {name: StackConfig(home=tmp_path / name / ".reelflow") for name in checkouts}
    try:
        run_both("up", timeout=300, extra={"a": ["--base-port", str(base)]})
        configs = {name: StackConfig.load(tmp_path / name / ".reelflow") for name in checkouts}
        assert configs["a"].ports() == devstack.ports_at(base)
        blocks = {}
        for name, config in configs.items():
            block = set(devstack.block_ports(config.s3_port))
            assert set(config.ports().values()) <= block
            pids = {int(rec["pid"]) for svc in devstack.SERVICES
                    if (rec := devstack.read_pid(config, svc))}
            listening = {port for _, port in _listening_ports(pids)}
            assert set(config.ports().values()) <= listening, (name, config.ports(), listening)
            assert listening <= block, f"{name} listens outside its block: {listening - block}"
            blocks[name] = block
        assert not blocks["a"] & blocks["b"]

        run_both("render", "board.yaml", "--profile", "previz", "--auto-approve",
                 "--out", "out", timeout=600)
        for name, config in configs.items():
            film = tmp_path / name / "out" / f"twin-{name}" / "final.mp4"
            assert film.stat().st_size > 1000 and b"ftyp" in film.read_bytes()[:16]
            store = ArtifactStore(S3Settings.from_stack_file(config.stack_file))
            other = "b" if name == "a" else "a"
            assert store.list(f"projects/twin-{name}/")
            assert not store.list(f"projects/twin-{other}/")
    finally:
        for config in configs.values():
            devstack.down(config)


def test_base_port_moves_every_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One base port (an option or REELFLOW_BASE_PORT) moves all seven ports; a port given by
    name still wins; a bad value is one line naming the variable."""
    monkeypatch.setenv(devstack.ENV_BASE_PORT, "30000")
    config = StackConfig.load(tmp_path)
    assert config.ports() == {"s3": 30000, "master": 30001, "filer": 30002, "volume": 30003,
                              "admin": 30004, "prefect": 30005, "redis": 30006}
    assert config.s3_endpoint == "127.0.0.1:30000"
    assert StackConfig.load(tmp_path, prefect_port=4444).prefect_port == 4444
    assert StackConfig.load(tmp_path, base_port=31000).master_port == 31001  # the option wins
    assert StackConfig.load(tmp_path, base_port=31000).filer_port == 31002
    for bad, says in (("abc", "REELFLOW_BASE_PORT='abc'"), ("60000", "out of range")):
        monkeypatch.setenv(devstack.ENV_BASE_PORT, bad)
        with pytest.raises(StackError, match=says):
            StackConfig.load(tmp_path)
    monkeypatch.setenv(devstack.ENV_BASE_PORT, "auto")
    assert StackConfig.load(tmp_path).base_port == "auto"  # nothing recorded: `up` picks


def test_free_port_choice_retries_a_taken_block(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`base_port=auto`: a block whose port a neighbour holds is given up for another; the
    chosen block is recorded, kept by `auto`, and a running stack refuses to move."""
    from reelflow.devstack import stack as stack_module

    for name in [n for n in os.environ if n.startswith("REELFLOW_S3_")]:
        monkeypatch.delenv(name)  # an S3 named by the environment is not this stack's own
    taken = devstack.free_base_port()
    good = next(base for base in iter(devstack.free_base_port, None)  # two random blocks may
                if not set(devstack.block_ports(taken)) & set(devstack.block_ports(base)))
    offers = iter([taken, good])
    monkeypatch.setattr(stack_module, "free_base_port", lambda host: next(offers))
    home = tmp_path / "home"
    with socket.socket() as neighbour:
        neighbour.bind(("127.0.0.1", taken + 2))  # the filer port of the first block offered
        neighbour.listen()
        try:
            config, state = devstack.start_on_free_ports(home, start_s3=True,
                                                         start_prefect=False, timeout=60)
            assert config.ports() == devstack.ports_at(good) and state.started == ["s3"]
            assert state.s3_endpoint == f"127.0.0.1:{good}"
            assert devstack.read_state(home)["ports"] == devstack.ports_at(good)
            monkeypatch.setenv(devstack.ENV_BASE_PORT, "auto")
            assert StackConfig.load(home).ports() == devstack.ports_at(good)
            with pytest.raises(StackError, match="runs on other ports.*`reelflow down` first"):
                devstack.up(StackConfig.load(home, base_port=taken + 100))
        finally:
            devstack.down(StackConfig(home=home))
    assert not devstack.status(StackConfig.load(home))["s3"]["running"]


def test_embedded_s3_takes_more_buckets_than_its_own_volume_default(
        s3_stack: StackConfig) -> None:
    """`weed mini` caps volumes at ~free disk/1 GB (63 on a 64 GB disk) and one bucket takes one:
    a studio's 64th bucket (or a test suite's) got HTTP 500 on every PUT. The stack sets the cap."""
    master = s3_stack.weed_ports()["master"]
    status = httpx.get(f"http://{s3_stack.host}:{master}/dir/status", timeout=5).json()
    assert status["Topology"]["Max"] == s3_stack.s3_volumes >= 1000
