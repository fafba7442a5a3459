"""Every step that retries has an overall time budget: no retry starts past it, however many
retries are left, and the step ends with one line saying how long it tried."""

from __future__ import annotations

import logging
import time

import pytest
from prefect import flow
from prefect.cache_policies import NO_CACHE

from reelflow.errors import ConfigError
from tasks.common import ENV_RETRY_BUDGET, RETRY_BUDGET, retry_budget, step_task

TRIES: list[float] = []


@step_task("always-fails", cache_policy=NO_CACHE, retries=20, retry_delay_seconds=1)
def always_fails(n: int) -> int:
    TRIES.append(time.monotonic())
    raise RuntimeError(f"endpoint {n} is down")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_step_gives_up_at_its_retry_budget(
    prefect_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_RETRY_BUDGET, "2.5")
    lines = _Lines()
    logging.getLogger("prefect.task_runs").addHandler(lines)

    @flow
    def run() -> int:
        return always_fails(7)

    try:
        started = time.monotonic()
        state = run(return_state=True)
        took = time.monotonic() - started
    finally:
        logging.getLogger("prefect.task_runs").removeHandler(lines)

    assert state.is_failed()
    # tries at about 0, 1 and 2 s; a fourth would start past 2.5 s: not 21 tries, not 20 s
    # (the slack is the engine's own time between tries on a busy machine)
    assert 2 <= len(TRIES) <= 3, TRIES
    assert TRIES[-1] - TRIES[0] <= 2.5 + 2, TRIES
    assert took < 30, took
    gave_up = [line for line in lines.lines if "gave up after" in line]
    assert len(gave_up) == 1, lines.lines
    assert f"gave up after {len(TRIES)} tries in " in gave_up[0]
    assert f"(retry budget 2.5 s, {ENV_RETRY_BUDGET})" in gave_up[0]
    assert "endpoint 7 is down" in gave_up[0] and "\n" not in gave_up[0]


def test_retry_budget_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_RETRY_BUDGET, raising=False)
    assert retry_budget() == RETRY_BUDGET
    monkeypatch.setenv(ENV_RETRY_BUDGET, "90")
    assert retry_budget() == 90
    for bad in ("soon", "0", "-5"):
        monkeypatch.setenv(ENV_RETRY_BUDGET, bad)
        with pytest.raises(ConfigError, match=ENV_RETRY_BUDGET):
            retry_budget()
