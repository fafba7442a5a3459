"""Progress a person can read while a film renders: "images 3/9", "clips 5/9", "edit 4/12".

Prefect's logs are for after the fact; a newcomer running ``reelflow render`` wants to see what
is happening now. The flow (and the steps below it) call :func:`report`; whoever listens in the
same process (the CLI's :class:`ProgressPrinter`) hears it. With no listener it costs nothing,
so a worker process running tasks for a deployment is unaffected. Listeners are called under a
lock: shots render in parallel threads and the lines must not interleave.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

__all__ = ["ProgressEvent", "ProgressPrinter", "listening", "report"]


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a stage: ``done`` of ``total`` (either may be None), and what it was."""

    stage: str
    done: int | None = None
    total: int | None = None
    detail: str = ""


Listener = Callable[[ProgressEvent], None]
_LISTENERS: list[Listener] = []
_LOCK = threading.Lock()


def report(stage: str, done: int | None = None, total: int | None = None, detail: str = "") -> None:
    """Tell whoever listens that ``stage`` reached ``done``/``total`` (e.g. a shot finished)."""
    if not _LISTENERS:
        return
    event = ProgressEvent(stage, done, total, detail)
    with _LOCK:
        for listener in list(_LISTENERS):
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a broken printer must never fail a render
                pass


@contextmanager
def listening(listener: Listener) -> Iterator[Listener]:
    """Call ``listener`` for every report made in this process while the block runs."""
    with _LOCK:
        _LISTENERS.append(listener)
    try:
        yield listener
    finally:
        with _LOCK:
            _LISTENERS.remove(listener)


class ProgressPrinter:
    """Prints one line per step: elapsed seconds since start, stage, i/n, detail.

    ``[  12.4s] images  3/9  snow-ridge``. A repeated identical step is printed once.
    """

    def __init__(self, out: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.out = out or sys.stderr
        self.clock = clock
        self.start = clock()
        self.lines: list[str] = []
        self._last: tuple[str, int | None, int | None] | None = None

    def __call__(self, event: ProgressEvent) -> None:
        step = (event.stage, event.done, event.total)
        if step == self._last:
            return
        self._last = step
        count = ""
        if event.done is not None:
            count = f" {event.done}/{event.total}" if event.total else f" {event.done}"
        detail = f"  {event.detail}" if event.detail else ""
        line = f"[{self.clock() - self.start:7.1f}s] {event.stage}{count}{detail}"
        self.lines.append(line)
        print(line, file=self.out, flush=True)
