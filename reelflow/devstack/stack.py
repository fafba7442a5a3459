"""`up`, `down` and `status`: the four services started in order, checked, and stopped."""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from reelflow.devstack.config import (
    POSTGRES,
    PREFECT,
    REDIS,
    S3,
    SERVICES,
    StackConfig,
    load_state,
)
from reelflow.devstack.errors import PortsTaken, StackError
from reelflow.devstack.ports import free_base_port
from reelflow.devstack.postgres import ensure_database, postgres_healthy, start_postgres
from reelflow.devstack.prefect_server import prefect_api_url, prefect_healthy, start_prefect
from reelflow.devstack.processes import (
    make_private,
    pid_file,
    running_pid,
    stop_pid,
    wait_healthy,
    write_state,
)
from reelflow.devstack.redis_server import redis_healthy, start_redis
from reelflow.devstack.s3 import s3_healthy, s3_settings, start_s3
from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import ENV_ENDPOINT, S3Settings, SettingsError

PORT_TRIES = 3
"""Blocks `up` tries with a free-port choice: a neighbour can take a port between our check and
the server's bind."""


class ServiceStatus(BaseModel):
    name: str
    managed: bool
    pid: int | None = None
    running: bool = False
    healthy: bool = False
    endpoint: str | None = None
    log: str | None = None


class StackState(BaseModel):
    """What `up` left running; `started` lists the services this call had to start; `config`
    is the config it ran with (its real ports, when `up` chose them)."""

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
    config: StackConfig | None = None


def _resolved(config: StackConfig | None) -> StackConfig:
    config = config or StackConfig.load()
    return config.model_copy(update={"home": config.home.expanduser().resolve()})


def _ensure(config: StackConfig, name: str, healthy: Callable[[], bool],
            start: Callable[[], int], started: list[str], redact: str | None = None) -> int:
    """The running, healthy process for `name`: left alone when fine, else (re)started."""
    pid = running_pid(config, name)
    if pid is not None and healthy():
        return pid
    if pid is None:
        pid = start()
        started.append(name)
    wait_healthy(config, name, pid, healthy, redact=redact)
    return pid


def up(config: StackConfig | None = None) -> StackState:
    """Start what is not running, wait until healthy, record it in stack.json. Idempotent.

    With `base_port="auto"` the ports are a free block, and another one when a neighbour takes
    a port first (the one start-on-free-ports helper: `reelflow up`, tests and the bench).
    """
    config = _resolved(config)
    if config.base_port != "auto":
        return _up(config)
    last: PortsTaken | None = None
    for _ in range(PORT_TRIES):
        chosen = config.at_base_port(free_base_port(config.host))
        try:
            return _up(chosen)
        except StackError as err:
            down(chosen)  # nothing half-started stays on ports nobody will look at again
            if not isinstance(err, PortsTaken):
                raise
            last = err
    raise StackError(f"no free block of ports held still for the stack in {PORT_TRIES} tries; "
                     f"last: {last}")


def start_on_free_ports(home: Path | str, **fields: Any) -> tuple[StackConfig, StackState]:
    """`up` under `home` on a free block of ports (retried on a port race); returns the config
    it ran with, for `down` and the endpoints. For tests and benchmarks beside a live stack."""
    state = up(StackConfig(home=Path(home), base_port="auto", **fields))
    assert state.config is not None
    return state.config, state


def _check_not_moved(config: StackConfig, state: dict[str, Any]) -> None:
    """A running stack stays on its ports: moving it means `down` first (else `up` would wait
    for servers on ports they do not listen on)."""
    recorded = state.get("ports") or {}
    moved = {name: (recorded[name], port) for name, port in config.ports().items()
             if isinstance(recorded.get(name), int) and recorded[name] != port}
    if moved and any(running_pid(config, name) for name in SERVICES):
        old, new = next(iter(moved.values()))
        raise StackError(f"the stack under {config.home} runs on other ports (e.g. {old}, now "
                         f"{new}): `reelflow down` first, then `up` on the new ports")


def _up(config: StackConfig) -> StackState:
    make_private(config.home)
    state = load_state(config.stack_file)
    _check_not_moved(config, state)
    started: list[str] = []
    pids: dict[str, int | None] = dict.fromkeys(SERVICES)
    # One key signs task result records for every process of this stack (CLI, workers): a
    # record one machine wrote verifies on the others (reelflow/store/signing.py).
    state.setdefault("results_key", secrets.token_hex(32))

    managed = config.wants_s3()
    if managed:
        settings = s3_settings(config, state)
        state["s3"] = {**settings.to_stack_dict(), "managed": True}
        write_state(config, state)  # credentials persist before the server first sees them
        pids[S3] = _ensure(config, S3, lambda: s3_healthy(settings),
                           lambda: start_s3(config, settings), started,
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
        write_state(config, state)
        pids[REDIS] = _ensure(config, REDIS,
                              lambda: redis_healthy(config.host, config.redis_port, password),
                              lambda: start_redis(config, password), started, redact=password)

    api_url: str | None = None
    db = config.database()
    if config.start_prefect:
        if db == "postgres":
            pids[POSTGRES] = _ensure(config, POSTGRES, lambda: postgres_healthy(config),
                                     lambda: start_postgres(config), started)
            ensure_database(config)
        prefect = dict(state.get("prefect") or {})
        old_pid = running_pid(config, PREFECT)
        if old_pid is not None and not prefect.get("auth_string"):
            stop_pid(old_pid)  # started by an older reelflow without credentials: restart it
        auth_string = prefect.get("auth_string") or f"reelflow:{secrets.token_urlsafe(24)}"
        api_url = prefect_api_url(config)
        if prefect.get("db") not in (None, db) and running_pid(config, PREFECT):
            raise StackError(f"the running Prefect server uses {prefect['db']}, not {db}: "
                             "`reelflow down` first")
        state["prefect"] = {"api_url": api_url, "ui_url": api_url.removesuffix("/api"),
                            "port": config.prefect_port, "db": db, "auth_string": auth_string}
        write_state(config, state)
        pids[PREFECT] = _ensure(config, PREFECT, lambda: prefect_healthy(api_url, auth_string),
                                lambda: start_prefect(config, auth_string, db), started,
                                redact=auth_string)
    state.update(version=2, host=config.host, ports=config.ports())
    write_state(config, state)
    make_private(config.home)
    return StackState(home=config.home, s3_endpoint=endpoint, s3_managed=managed,
                      s3_pid=pids[S3], prefect_api_url=api_url, prefect_pid=pids[PREFECT],
                      db=db, postgres_pid=pids[POSTGRES], redis_pid=pids[REDIS],
                      started=started, config=config)


def down(config: StackConfig | None = None) -> list[int]:
    """Stop exactly the processes named in the pid files; returns the pids that were stopped.

    stack.json (and its credentials) is kept so the next `up` reuses the same keys and data.
    """
    config = _resolved(config)
    stopped: list[int] = []
    for name in reversed(SERVICES):
        pid = running_pid(config, name)
        if pid is not None:
            # PostgreSQL: SIGINT is its "fast" shutdown (SIGTERM waits for clients to leave).
            stop_pid(pid, first=signal.SIGINT if name == POSTGRES else signal.SIGTERM)
            stopped.append(pid)
        pid_file(config, name).unlink(missing_ok=True)
    if config.home.is_dir():
        make_private(config.home)
    return stopped


def status(config: StackConfig | None = None) -> dict[str, Any]:
    """Per service: managed, pid, running, healthy, endpoint, log path."""
    config = _resolved(config)
    state = load_state(config.stack_file)
    out: dict[str, Any] = {"home": str(config.home), "stack_file": str(config.stack_file)}

    def log(name: str) -> str:
        return str(config.log_dir / f"{name}.log")

    s3_state = state.get("s3")
    if s3_state and s3_state.get("managed", True) and config.wants_s3():
        pid = running_pid(config, S3)
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
        pid = running_pid(config, POSTGRES)
        out[POSTGRES] = ServiceStatus(
            name=POSTGRES, managed=True, pid=pid, running=pid is not None,
            healthy=pid is not None and postgres_healthy(config),
            endpoint=str(config.pg_data_dir), log=log(POSTGRES)).model_dump()
        required.append(POSTGRES)
    redis = state.get("redis") or {}
    if redis.get("managed") and config.wants_redis():
        pid = running_pid(config, REDIS)
        out[REDIS] = ServiceStatus(
            name=REDIS, managed=True, pid=pid, running=pid is not None,
            healthy=pid is not None and redis_healthy(config.host, config.redis_port,
                                                       redis.get("password", "")),
            endpoint=f"{config.host}:{config.redis_port}", log=log(REDIS)).model_dump()
        required.append(REDIS)

    api_url = prefect.get("api_url") or prefect_api_url(config)
    pid = running_pid(config, PREFECT)
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
