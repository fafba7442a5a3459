"""What the stack is: where it lives, which ports it takes, and its state file (stack.json)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from reelflow.devstack.errors import StackError
from reelflow.devstack.ports import (
    PORTS,
    WEED_PORTS,
    BasePort,
    check_base_port,
    env_base_port,
    ports_at,
)
from reelflow.store.settings import ENV_ENDPOINT, reelflow_home

S3 = "s3"
POSTGRES = "postgres"
REDIS = "redis"
PREFECT = "prefect"
SERVICES = (S3, POSTGRES, REDIS, PREFECT)
"""Start order; `down` stops them in reverse (Prefect before its database)."""

DB_URL_ENVS = ("PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL")
ENV_REDIS_URL = "REELFLOW_REDIS_URL"
ENV_RESULTS_KEY = "REELFLOW_RESULTS_KEY"

Db = Literal["postgres", "sqlite", "external"]


class StackConfig(BaseModel):
    """Where the stack lives and which ports it takes (all on `host`).

    `base_port` moves every port at once (see `reelflow.devstack.ports`); a port given by name
    wins over it. `base_port="auto"`: `up` picks a free block, and another one if a neighbour
    takes a port before the servers bind it.
    """

    model_config = ConfigDict(extra="forbid")

    home: Path = Field(default_factory=lambda: reelflow_home())
    host: str = "127.0.0.1"
    base_port: BasePort | None = None
    s3_port: int = 8333
    master_port: int = 9333
    filer_port: int = 8888
    volume_port: int = 9340
    admin_port: int = 23646
    prefect_port: int = 4200
    redis_port: int = 6390
    bucket: str = "reelflow"
    s3_volumes: int = Field(default=2000, ge=1)
    """The most SeaweedFS volumes (128 MB each, one or more per bucket) the embedded S3 may
    create. Its own default (free disk / an estimate, 63 on a 64 GB disk) refuses writes with
    HTTP 500 once a few dozen buckets or ~8 GB exist; volumes are not preallocated, so a high cap
    costs nothing and the disk stays the real limit."""
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

    @field_validator("base_port")
    @classmethod
    def _base_in_range(cls, base: BasePort | None) -> BasePort | None:
        if isinstance(base, int):
            try:
                check_base_port(base)
            except StackError as exc:
                raise ValueError(str(exc)) from None
        return base

    @model_validator(mode="before")
    @classmethod
    def _ports_from_base(cls, data: Any) -> Any:
        """A numeric base port fills every port not given by name."""
        if isinstance(data, dict) and isinstance(data.get("base_port"), int):
            data = dict(data)
            for name, port in ports_at(data["base_port"]).items():
                data.setdefault(f"{name}_port", port)
        return data

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
        saved = (load_state(self.stack_file).get("prefect") or {}).get("db")
        return saved if saved in ("postgres", "sqlite") else "postgres"

    def wants_postgres(self) -> bool:
        return self.start_prefect and self.database() == "postgres"

    def weed_ports(self) -> dict[str, int]:
        return {name: getattr(self, f"{name}_port") for name in WEED_PORTS}

    def ports(self) -> dict[str, int]:
        """Every port of the stack by server name (what stack.json records)."""
        return {name: getattr(self, f"{name}_port") for name in PORTS}

    def at_base_port(self, base: int) -> StackConfig:
        """This config with every port moved to the block at `base`."""
        fields = {f"{name}_port": port for name, port in ports_at(base).items()}
        return self.model_copy(update={"base_port": check_base_port(base), **fields})

    @classmethod
    def with_free_ports(cls, home: Path | str, **overrides: Any) -> StackConfig:
        """A config whose every port (and gRPC twin) is free now: for tests beside a live stack."""
        from reelflow.devstack.ports import free_base_port

        base = free_base_port(host=overrides.get("host", "127.0.0.1"))
        return cls(home=Path(home), base_port=base, **overrides)

    @classmethod
    def load(cls, home: Path | str | None = None, **overrides: Any) -> StackConfig:
        """The stack's config as `up` last recorded it (its real ports), then `overrides`.

        Without a stack file: the defaults. This is how `down`, `status` and every client find a
        stack that was started on other ports (`reelflow up --prefect-port 4300`). A base port
        (`base_port=` or `$REELFLOW_BASE_PORT`) replaces the recorded ports; `auto` keeps them
        when there are some (the block chosen at the first `up` stays the stack's).
        """
        home_path = Path(home) if home is not None else reelflow_home()
        state = load_state(home_path / "stack.json")
        fields: dict[str, Any] = {"home": home_path}
        if isinstance(state.get("host"), str):
            fields["host"] = state["host"]
        given = {k: v for k, v in overrides.items() if v is not None}
        base = given.pop("base_port", None)
        if base is None:
            base = env_base_port()
        recorded = {f"{name}_port": port for name, port in (state.get("ports") or {}).items()
                    if name in PORTS and isinstance(port, int)}
        if base is None or (base == "auto" and recorded):
            fields.update(recorded)
        else:
            fields["base_port"] = base
        fields.update(given)
        try:
            return cls(**fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "stack config"
            raise StackError(f"{where}: {first['msg']}") from None


# -- the state file ----------------------------------------------------------------------------


def load_state(stack_file: Path) -> dict[str, Any]:
    """stack.json as a dict ({} when there is none or it cannot be read)."""
    try:
        return json.loads(stack_file.read_text())
    except (OSError, ValueError):
        return {}


def read_state(home: Path | str | None = None) -> dict[str, Any]:
    """stack.json under `home` (default: the reelflow home) as a dict ({} when there is none)."""
    return load_state(reelflow_home(home) / "stack.json")


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
