"""Helpers for the operations tests: a deployed reelflow on a real Prefect server, real process
workers and the session's real S3 server. Plain functions and context managers (the shared
fixtures stay in conftest.py); each test module builds the stack it needs once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from reelflow import devstack
from reelflow.store.settings import S3Settings
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]

@dataclass
class Worker:
    pool: str
    process: subprocess.Popen[bytes]
    log: Path
    name: str = ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


@dataclass
class OpsStack:
    api_url: str
    env: dict[str, str]
    home: Path
    workers: list[Worker] = field(default_factory=list)
    report: Any = None

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/api")

    def logs(self) -> str:
        return "\n\n".join(f"--- worker {w.name or w.pool}\n{w.tail()}" for w in self.workers)


def start_worker(pool: str, env: dict[str, str], home: Path, *, name: str | None = None,
                 project_dir: Path | None = ROOT, extra: dict[str, str] | None = None,
                 limit: int | None = None) -> Worker:
    """A real `prefect worker start --pool POOL` in its own process group, run from `home` (not
    the checkout: the deployments' pull step brings the code). `project_dir=None`: no checkout
    fallback either; `extra` overrides the environment (PYTHONPATH, REELFLOW_HOME, GPU)."""
    from deployments.worker import worker_command, worker_env

    name = name or f"test-{pool}"
    base = dict(env)
    if project_dir is None:
        base.pop("REELFLOW_PROJECT_DIR", None)
    base.update(extra or {})
    wenv = worker_env(project_dir=project_dir, base=base)
    if project_dir is None:
        wenv.pop("REELFLOW_PROJECT_DIR", None)
    log = home / f"worker-{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            worker_command(pool, name=name, limit=limit), env=wenv,
            cwd=home, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    return Worker(pool=pool, process=process, log=log, name=name)


@contextmanager
def ops_stack(
    home: Path,
    s3: S3Settings,
    *,
    bucket: str,
    pools: tuple[str, ...] = ("cpu",),
    api_url: str | None = None,
    notify_url: str = "",
) -> Iterator[OpsStack]:
    """Prefect server (a fresh `prefect server start` unless `api_url` is given), `reelflow
    deploy`, and one worker per pool; the environment points this process at them too."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from deployments.deploy import deploy
    from tasks.common import get_store

    with ExitStack() as stack:
        if api_url is None:
            config = devstack.StackConfig.with_free_ports(
                home / "stack", start_s3=False, start_prefect=True, timeout=180
            )
            stack.callback(devstack.down, config)
            state = devstack.up(config)
            assert state.prefect_api_url
            api_url = state.prefect_api_url
            stack_env = devstack.client_env(config.home)  # auth string, Redis
        else:
            stack_env = {k: os.environ[k] for k in ("PREFECT_API_AUTH_STRING",)
                         if os.environ.get(k)}
        settings = s3.with_bucket(bucket)
        env = {
            **stack_env,
            "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            "PREFECT_LOGGING_LEVEL": "INFO",
            "REELFLOW_S3_ENDPOINT": settings.endpoint,
            "REELFLOW_S3_ACCESS_KEY": settings.access_key,
            "REELFLOW_S3_SECRET_KEY": settings.secret_key.get_secret_value(),
            "REELFLOW_S3_BUCKET": settings.bucket,
            "REELFLOW_MODELS": str(home / "models"),
            "REELFLOW_HOME": str(home / "reelflow"),
            "REELFLOW_POLL_INTERVAL": "1",
            "REELFLOW_NOTIFY_URL": notify_url,
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        stack.callback(_restore, saved)
        updates: dict[Any, Any] = {PREFECT_API_URL: api_url}
        if env.get("PREFECT_API_AUTH_STRING"):
            updates[PREFECT_API_AUTH_STRING] = env["PREFECT_API_AUTH_STRING"]
        stack.enter_context(temporary_settings(updates=updates))
        get_store.cache_clear()
        stack.callback(get_store.cache_clear)
        ops = OpsStack(api_url=api_url, env=dict(os.environ), home=home)
        ops.report = deploy()
        for pool in pools:
            worker = start_worker(pool, ops.env, home)
            stack.callback(worker.stop)
            ops.workers.append(worker)
        yield ops


def _restore(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def read_run(run_id: UUID | str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(str(run_id)))


def wait_for_state(run_id: UUID | str, names: set[str], ops: OpsStack,
                   timeout: float = 240) -> Any:
    """The run once its state name is one of `names`; fails early on an unexpected final state."""
    last: list[Any] = [None]

    def reached() -> Any:
        run = last[0] = read_run(run_id)
        name = run.state.name if run.state else "?"
        if name in names:
            return run
        if run.state and run.state.is_final():
            raise AssertionError(f"run ended {name}: {run.state.message}\n{ops.logs()}")
        return None

    def still() -> str:
        state = last[0].state.name if last[0] and last[0].state else "?"
        return f"run still {state}\n{ops.logs()}"

    return wait_until(f"the run to be {' or '.join(sorted(names))}", reached, timeout,
                      interval=1, detail=still)


def wait_for_gate(run_id: UUID | str, gate: str, ops: OpsStack, timeout: float = 240) -> Any:
    """The run once it is Suspended (or Paused) at `gate` (a pause key like `images-1`)."""
    deadline = time.monotonic() + timeout

    def at_gate() -> Any:
        run = wait_for_state(run_id, {"Suspended", "Paused"}, ops,
                             timeout=max(1.0, deadline - time.monotonic()))
        return run if run.state.state_details.pause_key == gate else None

    return wait_until(f"the run to wait at {gate}", at_gate, timeout, interval=1)


def task_runs(flow_run_id: UUID | str, timeout: float = 60) -> list[Any]:
    """The flow run's task runs, once settled on the server.

    Task states reach the server as events, a moment after the flow run's own state: wait until
    every task run is final and two reads a second apart agree.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    previous: list[tuple[str, str]] | None = None
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(str(flow_run_id))]))
            )
        seen = sorted((str(r.id), r.state.name if r.state else "?") for r in runs)
        settled = all(r.state and r.state.is_final() for r in runs) and seen == previous
        if settled or time.monotonic() > deadline:
            return runs
        previous = seen
        time.sleep(1)


def task_states(flow_run_id: UUID | str, timeout: float = 60) -> dict[str, list[str]]:
    """Task run name -> its state names, oldest first (a resumed run's tasks appear again)."""
    runs = task_runs(flow_run_id, timeout)
    states: dict[str, list[str]] = {}
    for run in sorted(runs, key=lambda r: r.expected_start_time or r.created):
        states.setdefault(run.name, []).append(run.state.name if run.state else "?")
    return states
