"""The Prefect server (on PostgreSQL, SQLite or an external database), behind basic auth.

Started as `python -m prefect server start` in its own process: this module never imports
Prefect, so the core stays Prefect-free.
"""

from __future__ import annotations

import os
import sys

import httpx

from reelflow.devstack.config import DB_URL_ENVS, PREFECT, Db, StackConfig
from reelflow.devstack.postgres import postgres_url
from reelflow.devstack.processes import check_ports_free, private_dir, spawn

CLIENT_RETRY_ENV = {
    "PREFECT_CLIENT_MAX_RETRIES": "5",
    "PREFECT_CLIENT_RETRY_JITTER_FACTOR": "0.2",
    "PREFECT_CLIENT_RETRY_EXTRA_CODES": "500",
}
"""Prefect's own client retries, set for the CLI and every worker (a user's values win). Prefect
retries a refused connection once its client has connected (a server restart), and timeouts,
502/503/429 always, backing off 2, 4, 8, 16, 32 s: a restart of up to about a minute is ridden
out; a server away longer fails the call, and the CLI says so in one line. 500 too: the server
answers it to every call while its PostgreSQL restarts (found by the soak, `bench/soak.py`: a
render failed at the first call after a database crash); the failed call's transaction did not
commit, so it is retried like a restart of the server itself."""


def prefect_api_url(config: StackConfig) -> str:
    """The API URL clients and workers should use (`PREFECT_API_URL`)."""
    return f"http://{config.host}:{config.prefect_port}/api"


def start_prefect(config: StackConfig, auth_string: str, db: Db) -> int:
    check_ports_free(config, {"prefect": config.prefect_port})
    private_dir(config.prefect_home)
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
    return spawn(config, PREFECT, cmd, env, cwd=config.home)


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
