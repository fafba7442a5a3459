"""The local stack (S3, PostgreSQL, Redis, Prefect): `up`, `down`, `status`, and pointing this
process at it (`use_local_stack`) before a command talks to Prefect."""

from __future__ import annotations

import os
from pathlib import Path

import click

from cli.common import BASE_PORT, PORT, fail


def use_local_stack() -> None:
    """Point Prefect at the local stack's server (its recorded port, with its credentials) unless
    the user configured another one; pass the stack's Redis on for the lock manager. Prefect's
    client retries (devstack.CLIENT_RETRY_ENV) are set for any server."""
    from deployments.automations import HEARTBEAT_SECONDS
    from reelflow import devstack

    for name, value in devstack.CLIENT_RETRY_ENV.items():  # ride out a server restart
        os.environ.setdefault(name, value)
    # a local run killed with its process is marked Crashed by the zombie automation
    # (`reelflow deploy` applies it) once its heartbeats stop, as a worker's runs are
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_SECONDS))
    stack = devstack.client_env()
    url = stack.get("PREFECT_API_URL")
    if not os.environ.get("PREFECT_API_URL") and url:
        os.environ["PREFECT_API_URL"] = url
    if url and os.environ.get("PREFECT_API_URL") != url:
        return  # another server: the stack's credentials, Redis and results key are not its own
    if "PREFECT_API_AUTH_STRING" in stack:
        os.environ.setdefault("PREFECT_API_AUTH_STRING", stack["PREFECT_API_AUTH_STRING"])
    for name in (devstack.ENV_REDIS_URL, devstack.ENV_RESULTS_KEY):
        if name in stack:
            os.environ.setdefault(name, stack[name])


def _watch_for_crashed_runs(api_url: str, home: Path) -> int:
    """Apply the crashed-run automation to the stack's own server (as `reelflow deploy` does),
    so a local render killed with its process does not stay Running before any deploy.
    Returns its grace in seconds."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from deployments.automations import ensure_zombie_automation
    from deployments.config import load_ops_config
    from reelflow import devstack

    grace = int(os.environ.get("REELFLOW_CRASHED_AFTER_SECONDS")
                or load_ops_config().crashed_after_seconds)
    auth = devstack.client_env(home).get("PREFECT_API_AUTH_STRING")
    with temporary_settings({PREFECT_API_URL: api_url, PREFECT_API_AUTH_STRING: auth}):
        with get_client(sync_client=True) as client:
            ensure_zombie_automation(client, grace)
    return grace


@click.command(help="start the local stack: S3, PostgreSQL, Redis, Prefect")
@click.option("--db", type=click.Choice(["postgres", "sqlite"]),
              help="Prefect's database (default: postgres, or the last choice; an external "
              "PREFECT_API_DATABASE_CONNECTION_URL is used when set)")
@click.option("--prefect-port", type=PORT,
              help="Prefect UI/API port (default 4200, or the last one used)")
@click.option("--s3-port", type=PORT, help="S3 port (default 8333, or the last one used)")
@click.option("--redis-port", type=PORT, help="Redis port (default 6390, or the last one used)")
@click.option("--base-port", type=BASE_PORT,
              help="move every port of the stack (S3 and its storage servers, Prefect, Redis) "
              "to N..N+6 (+10000 for gRPC), or `auto` for a free block: two checkouts side by "
              "side (also $REELFLOW_BASE_PORT)")
def up(db: str | None, prefect_port: int | None, s3_port: int | None,
       redis_port: int | None, base_port: int | str | None) -> int:
    from reelflow import devstack

    # the recorded stack (its real ports), with the ports and database given as options
    config = devstack.StackConfig.load(s3_port=s3_port, prefect_port=prefect_port,
                                       redis_port=redis_port, db=db, base_port=base_port)
    try:
        state = devstack.up(config)
    except devstack.StackError as exc:
        return fail(str(exc))
    started = ", ".join(state.started) or "nothing (already running)"
    print(f"started: {started}")
    print(f"s3:      {state.s3_endpoint} ({'embedded' if state.s3_managed else 'external'})")
    if state.prefect_api_url:
        print(f"prefect: {state.prefect_api_url.removesuffix('/api')} (UI and API, database: "
              f"{state.db}; login: the auth_string in the state file)")
    if state.redis_pid:
        print(f"redis:   pid {state.redis_pid} (lock manager)")
    if state.prefect_api_url:
        try:
            grace = _watch_for_crashed_runs(state.prefect_api_url, state.home)
            print(f"crashed: a run whose heartbeats stop is marked Crashed after {grace} s")
        except Exception as exc:  # the stack works without it: say so, do not fail `up`
            print(f"crashed: the crashed-run automation was not applied "
                  f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})")
    print(f"state:   {state.home}/stack.json")
    return 0


@click.command(help="stop the local stack")
def down() -> int:
    from reelflow import devstack

    stopped = devstack.down(devstack.StackConfig.load())
    print(f"stopped: {', '.join(map(str, stopped)) or 'nothing was running'}")
    return 0


@click.command(help="say what runs where; exit 1 when a service is down")
def status() -> int:
    from reelflow import devstack

    report = devstack.status(devstack.StackConfig.load())
    for name in devstack.SERVICES:
        service = report.get(name)
        if service is None:
            continue
        health = "healthy" if service["healthy"] else "down"
        owner = "managed" if service["managed"] else "external"
        pid = f" pid {service['pid']}" if service.get("pid") else ""
        print(f"{name:8} {health:8} {service.get('endpoint') or '-'} ({owner}{pid})")
    return 0 if report["healthy"] else 1


def register(group: click.Group) -> None:
    for command in (up, down, status):
        group.add_command(command)
