"""Progress a person can read while a film renders: "images 3/9", "clips 5/9", "edit 4/12".

Prefect's logs are for after the fact; a newcomer running ``reelflow render`` wants to see what
is happening now. The flow (and the steps below it) call :func:`report`, :func:`step`,
:class:`Counter` and :func:`waiting`; whoever listens in the same process (the CLI's
:class:`ProgressPrinter`) hears it. With no listener it costs nothing, so a worker process
running tasks for a deployment is unaffected. Listeners are called under a lock: shots render in
parallel threads and the lines must not interleave.

Three promises the printer keeps, because a silent terminal reads as a hung one:

- a step says what it does when it starts (``beat detection``, ``loading model …``);
- counters move as each unit finishes (callers count in completion order), and a round counts
  only what it redoes (``images 1/1 (round 2)``);
- while work runs, a line at least every ``interval`` seconds says what is still running and
  how far it is; time spent waiting for a person at a gate is not work, and is told apart.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, TextIO

__all__ = [
    "Counter",
    "ProgressEvent",
    "ProgressPrinter",
    "listening",
    "report",
    "step",
    "waiting",
]

Kind = Literal["progress", "start", "end", "wait", "resume"]


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a stage: ``done`` of ``total`` (either may be None), and what it was.

    ``kind``: ``progress`` (a count or a note), ``start``/``end`` of a step without a count,
    ``wait``/``resume`` around a person's decision at a gate (``stage`` names the gate).
    ``round``: the review round the work belongs to (2 and up: redoing what a person sent back).
    """

    stage: str
    done: int | None = None
    total: int | None = None
    detail: str = ""
    kind: Kind = "progress"
    round: int = 1

    @property
    def running(self) -> bool:
        """Whether the stage is still under way after this event (for the printer's heartbeat)."""
        if self.kind == "start":
            return True
        if self.kind == "progress" and self.done is not None and self.total is not None:
            return self.done < self.total
        return False


Listener = Callable[[ProgressEvent], None]
_LISTENERS: list[Listener] = []
_LOCK = threading.Lock()


def emit(event: ProgressEvent) -> None:
    """Hand ``event`` to every listener (a broken one is skipped, never fails the render)."""
    if not _LISTENERS:
        return
    with _LOCK:
        for listener in list(_LISTENERS):
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a broken printer must never fail a render
                pass


def report(
    stage: str,
    done: int | None = None,
    total: int | None = None,
    detail: str = "",
    *,
    round_: int = 1,
) -> None:
    """Tell whoever listens that ``stage`` reached ``done``/``total`` (e.g. a shot finished)."""
    if _LISTENERS:
        emit(ProgressEvent(stage, done, total, detail, round=round_))


@contextmanager
def step(stage: str, detail: str = "") -> Iterator[None]:
    """A step without a count (beat detection, loading a model, the music master): listeners
    hear it start and end, so a long one is named while it runs."""
    emit(ProgressEvent(stage, detail=detail, kind="start"))
    try:
        yield
    finally:
        emit(ProgressEvent(stage, detail=detail, kind="end"))


@contextmanager
def waiting(gate: str, round_: int = 1) -> Iterator[None]:
    """A person's decision at ``gate``: the time inside is waiting, not work."""
    emit(ProgressEvent(gate, kind="wait", round=round_))
    try:
        yield
    finally:
        emit(ProgressEvent(gate, kind="resume", round=round_))


class Counter:
    """``stage done/total`` for work that finishes unit by unit: call :meth:`advance` as each
    unit finishes (in completion order, not submission order). Created with the number of
    units this round actually does, it reports ``stage 0/total`` at once: the stage has begun."""

    def __init__(self, stage: str, total: int, *, round_: int = 1, detail: str = "") -> None:
        self.stage, self.total, self.round, self.done = stage, total, round_, 0
        report(stage, 0, total, detail, round_=round_)

    def advance(self, detail: str = "") -> None:
        self.done += 1
        report(self.stage, self.done, self.total, detail, round_=self.round)


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


def _count(event: ProgressEvent) -> str:
    count = ""
    if event.done is not None:
        count = f" {event.done}/{event.total}" if event.total is not None else f" {event.done}"
    if event.round > 1:
        count += f" (round {event.round})"
    return count


class ProgressPrinter:
    """Prints one line per step: elapsed seconds since start, stage, i/n, detail.

    ``[  12.4s] images 3/9  snow-ridge``. A repeated identical step is printed once. Used as a
    context manager it also keeps a heartbeat: when nothing was printed for ``interval`` seconds
    while work runs, one line names what is still running and how far it is (6 s by default,
    so that with a late tick on a busy machine no gap between two lines reaches 10 s). Time
    between a gate's ``wait`` and ``resume`` is counted apart (:attr:`waited`, :meth:`summary`).
    """

    def __init__(
        self,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 6.0,
    ):
        self.out = out or sys.stderr
        self.clock = clock
        self.interval = interval
        self.start = clock()
        self.lines: list[str] = []
        self.times: list[float] = []  # when each line was printed (seconds since start)
        self.waited = 0.0  # seconds spent waiting for a person at the gates
        self._said = ""  # the last line an event printed (heartbeats refer to it)
        self._last: tuple[str, int | None, int | None, int] | None = None
        # (stage, whether a step) -> its latest event and when it came
        self._running: dict[tuple[str, bool], tuple[ProgressEvent, float]] = {}
        self._waiting: dict[str, float] = {}  # gate -> when the wait began
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- events --------------------------------------------------------------------------------

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            key = (event.stage, event.kind in ("start", "end"))  # a step and its counter apart
            if event.kind == "end":
                self._running.pop(key, None)
                return
            step = (event.stage, event.done, event.total, event.round)
            if event.kind == "progress" and step == self._last:  # the same step again
                return
            now = self.clock()
            if event.kind == "wait":
                self._waiting[event.stage] = now
                return
            if event.kind == "resume":
                began = self._waiting.pop(event.stage, now)
                self.waited += now - began
                self._said = f"{event.stage} gate{_count(event)} answered after {now - began:.0f} s"
                self._print(now, self._said)
                return
            if event.running:
                self._running[key] = (event, now)
            else:
                self._running.pop(key, None)
            self._last = step
            detail = f"  {event.detail}" if event.detail else ""
            self._said = f"{event.stage}{_count(event)}{detail}"
            self._print(now, self._said)

    def _print(self, now: float, text: str) -> None:
        line = f"[{now - self.start:7.1f}s] {text}"
        self.lines.append(line)
        self.times.append(now - self.start)
        print(line, file=self.out, flush=True)

    # -- heartbeat -----------------------------------------------------------------------------

    def tick(self) -> None:
        """One heartbeat check: after ``interval`` quiet seconds while work runs (no gate
        waiting), one line with every running stage, how far it is and for how long."""
        with self._lock:
            now = self.clock()
            quiet_since = self.start + (self.times[-1] if self.times else 0.0)
            if self._waiting or now - quiet_since < self.interval:
                return
            if self._running:
                parts = [  # a step whose counter runs is told by its counter
                    f"{stage} ({now - since:.0f} s so far)" if is_step
                    else f"{stage}{_count(event)} ({now - since:.0f} s since the last)"
                    for (stage, is_step), (event, since) in self._running.items()
                    if not (is_step and (stage, False) in self._running)
                ]
                self._print(now, "still working: " + "; ".join(parts))
            elif self._said:
                self._print(now, f"still working (last: {self._said})")
            else:
                self._print(now, "starting the run")

    def __enter__(self) -> ProgressPrinter:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="progress-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.interval / 4)):
            self.tick()

    # -- the final line ------------------------------------------------------------------------

    def summary(self) -> str:
        """``rendered in 95 s (work 62 s, waiting for review 33 s)``: a person's time at the
        gates is not the pipeline's."""
        with self._lock:
            now = self.clock()
            waited = self.waited + sum(now - began for began in self._waiting.values())
        total, waited = round(now - self.start), round(waited)
        return f"rendered in {total} s (work {total - waited} s, waiting for review {waited} s)"
