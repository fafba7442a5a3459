"""The progress a person sees while a film renders: stage, i/n, elapsed; safe from threads."""

from __future__ import annotations

import io
import threading

from reelflow.progress import ProgressEvent, ProgressPrinter, listening, report


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
