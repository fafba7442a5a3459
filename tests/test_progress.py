"""The progress a person sees while a film renders: stage, i/n, elapsed; safe from threads."""

from __future__ import annotations

import io
import threading

import pytest

from reelflow.progress import (
    Counter,
    ProgressEvent,
    ProgressPrinter,
    listening,
    report,
    step,
    waiting,
)


def test_printer_lines_stage_count_elapsed() -> None:
    ticks = iter([100.0, 103.25, 110.0, 111.0, 190.5])
    out = io.StringIO()
    printer = ProgressPrinter(out, clock=lambda: next(ticks))
    with listening(printer):
        report("images", 3, 9, "snow-ridge")
        report("clips", 5, 9)
        report("clips", 5, 9)  # the same step again: printed once
        report("edit")
        report("version 9x16-h264", 2, 6, "parts encoded")
    report("images", 4, 9)  # nobody listens any more
    assert out.getvalue().splitlines() == [
        "[    3.2s] images 3/9  snow-ridge",
        "[   10.0s] clips 5/9",
        "[   11.0s] edit",
        "[   90.5s] version 9x16-h264 2/6  parts encoded",
    ]


def test_reports_from_threads_reach_the_listener_whole() -> None:
    events: list[ProgressEvent] = []
    with listening(events.append):
        threads = [
            threading.Thread(target=lambda s=s: [report(s, i, 50) for i in range(50)])
            for s in ("images", "clips")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(events) == 100
    assert [e.done for e in events if e.stage == "clips"] == list(range(50))


def test_a_broken_listener_never_fails_the_render() -> None:
    def broken(event: ProgressEvent) -> None:
        raise RuntimeError("terminal closed")

    with listening(broken):
        report("images", 1, 2)


# -- the printer's promises, on a clock the test moves ------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_quiet_work_gets_a_line_every_interval_naming_what_runs_and_how_far() -> None:
    clock, out = Clock(), io.StringIO()
    printer = ProgressPrinter(out, clock=clock, interval=10)
    with listening(printer):
        clock.now += 2
        with step("beat detection", "9 cuts"):
            clock.now += 9
            printer.tick()  # 9 s quiet: nothing yet
            clock.now += 1
            printer.tick()
            printer.tick()  # just said: not again at once
            clock.now += 10
            printer.tick()
        clips = Counter("clips", 3)
        clock.now += 4
        clips.advance("b")
        clock.now += 11
        printer.tick()
        clips.advance("a")
        clips.advance("c")  # 3/3: nothing runs any more
        clock.now += 10
        printer.tick()
    assert out.getvalue().splitlines() == [
        "[    2.0s] beat detection  9 cuts",
        "[   12.0s] still working: beat detection (10 s so far)",
        "[   22.0s] still working: beat detection (20 s so far)",
        "[   22.0s] clips 0/3",
        "[   26.0s] clips 1/3  b",
        "[   37.0s] still working: clips 1/3 (11 s since the last)",
        "[   37.0s] clips 2/3  a",
        "[   37.0s] clips 3/3  c",
        "[   47.0s] still working (last: clips 3/3  c)",
    ]


def test_a_step_with_its_own_counter_is_told_by_the_counter() -> None:
    clock, out = Clock(), io.StringIO()
    printer = ProgressPrinter(out, clock=clock, interval=5)
    with listening(printer), step("edit", "9 clips"):
        report("edit", 0, 4, "4 of 12 parts to encode")
        clock.now += 6
        printer.tick()
        report("edit", 4, 4, "parts encoded")
        clock.now += 6
        printer.tick()  # the parts are done, the join still runs: the step is named again
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines[2:] == [
        "still working: edit 0/4 (6 s since the last)",
        "edit 4/4  parts encoded",
        "still working: edit (12 s so far)",
    ]


def test_rounds_count_what_they_redo() -> None:
    out = io.StringIO()
    printer = ProgressPrinter(out, clock=Clock())
    with listening(printer):
        images = Counter("images", 1, round_=2)
        images.advance("b")
    assert [line.split("] ", 1)[1] for line in out.getvalue().splitlines()] == [
        "images 0/1 (round 2)",
        "images 1/1 (round 2)  b",
    ]


def test_time_at_a_gate_is_waiting_not_work_and_gets_no_heartbeat() -> None:
    clock, out = Clock(), io.StringIO()
    printer = ProgressPrinter(out, clock=clock, interval=10)
    with listening(printer):
        report("images", 2, 2)
        clock.now += 5
        with waiting("images", 2):
            clock.now += 30
            printer.tick()  # a person reads the contact sheet: no "still working"
            assert printer.summary() == "rendered in 35 s (work 5 s, waiting for review 30 s)"
            clock.now += 3
        clock.now += 2
    assert out.getvalue().splitlines()[-1] == "[   38.0s] images gate (round 2) answered after 33 s"
    assert printer.waited == pytest.approx(33)
    assert printer.summary() == "rendered in 40 s (work 7 s, waiting for review 33 s)"
