"""The one poll-until helper: tests wait on a condition, never for a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(what: str, check: Callable[[], T], timeout: float = 60, *, interval: float = 0.5,
               detail: Callable[[], str] | None = None) -> T:
    """Call `check` every `interval` s until it returns something truthy, and return that.

    After `timeout` s: AssertionError "timed out after N s waiting for WHAT", with `detail()`
    (a log's tail, the last state seen) below it.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            more = f"\n{detail()}" if detail else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{more}")
        time.sleep(interval)


def form_published(run_id: str) -> bool:
    """Whether the paused run's form (Prefect's run-input schema) is on the server yet.

    Prefect writes it just after the run enters Paused; the UI shows the form only once it is
    there, so a test that answers as the UI does waits for it too.
    """
    from uuid import UUID

    import httpx
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(run_id)).state
        if state is None or not state.is_paused():
            return False
        keyset = state.state_details.run_input_keyset
        if not keyset:
            return True
        try:
            client.read_flow_run_input(UUID(run_id), keyset["schema"])
        except httpx.HTTPStatusError:
            return False
    return True


def wait_for_pending(gate: str, timeout: float = 240, **fields: str) -> dict[str, str]:
    """The first run that `reelflow pending` lists at `gate` (a pause key like `images-1`) whose
    `fields` (id, project) are as given, once its form is published."""
    from flows.reviewer import pending_runs

    def at_gate() -> dict[str, str] | None:
        return next((run for run in pending_runs() if run["gate"] == gate
                     and all(run.get(k) == v for k, v in fields.items())
                     and form_published(run["id"])), None)

    return wait_until(f"a run at the {gate} gate", at_gate, timeout, interval=1)
