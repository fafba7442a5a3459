"""The progress a person sees while a film renders: stage, i/n, elapsed; safe from threads."""

from __future__ import annotations

import io
import re
import threading
import time
from dataclasses import dataclass
from itertools import pairwise
from typing import Any
from uuid import UUID

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


# -- a real render: the previz profile, a real Prefect server, S3 and ffmpeg --------------------

PREVIZ_FILM = """
title: Progress film
project: progress-film
width: 192
height: 108
fps: 12
style:
  palette: ["#f5c518", "#e8f1f8", "#6fae5a"]
  visual_style: cinematic
  base_seed: 11
shots:
  - {id: pass, description: the car climbs the snowy pass, duration: 1.0}
  - {id: summit, description: the car at the summit, duration: 1.0}
  - {id: thaw, description: winter turns to spring, duration: 1.0,
     first_frame: {shot: summit, frame: last}}
  - {id: city, description: the car rolls into a flowering city, duration: 1.0}
"""
INTERVAL = 2.0  # the heartbeat's interval in this render (`reelflow render` uses 10 s)
READING = 3.0  # how long the person takes to approve the storyboard


@dataclass
class Render:
    """What a person saw of one render: the printer, every event with the moment it came
    (monotonic seconds), the final line, and the run's state."""

    printer: ProgressPrinter
    events: list[tuple[float, ProgressEvent]]
    summary: str
    state: Any

    @property
    def said(self) -> list[str]:
        return [line.split("] ", 1)[1] for line in self.printer.lines]

    def counted(self, stage: str, round_: int = 1) -> list[ProgressEvent]:
        return [e for _, e in self.events if e.stage == stage and e.done and e.round == round_]


def _pending(project: str, gate: str, timeout: float = 120) -> str:
    from flows.reviewer import pending_runs

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in pending_runs():
            if run["project"] == project and run["gate"] == gate:
                return run["id"]
        time.sleep(0.2)
    raise AssertionError(f"{project} never waited at {gate}")


@pytest.fixture(scope="module")
def render(film_env: dict[str, str]) -> Render:
    """The four-shot film at the previz profile with manual gates, as `reelflow render` runs it:
    the storyboard approved READING s after it is shown, one shot's images and one clip sent
    back, everything else approved at once."""
    from flows.produce_video import produce_video
    from flows.reviewer import approve_run

    events: list[tuple[float, ProgressEvent]] = []
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["state"] = produce_video(
                storyboard=PREVIZ_FILM, approval="manual", profile="previz", return_state=True
            )
        except Exception as exc:  # noqa: BLE001 - the test reads it
            result["error"] = exc

    out = io.StringIO()
    with (
        ProgressPrinter(out, interval=INTERVAL) as printer,
        listening(printer),
        listening(lambda event: events.append((time.monotonic(), event))),
    ):
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        run_id = _pending("progress-film", "storyboard-1")
        time.sleep(READING)
        approve_run(run_id, reviewer="test")
        approve_run(_pending("progress-film", "images-1"), rejects={"city": "dusk light"})
        approve_run(_pending("progress-film", "images-2"))
        approve_run(_pending("progress-film", "clips-1"), rejects={"summit": "slower push-in"})
        approve_run(_pending("progress-film", "clips-2"))
        thread.join(timeout=180)
        summary = printer.summary()
    assert "error" not in result and result["state"].is_completed(), (result, out.getvalue())
    return Render(printer, events, summary, result["state"])


def _clip_ends(run_id: UUID) -> dict[str, float]:
    """When each shot's last render-clip task run ended, from the Prefect server (epoch s)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    ends: dict[str, list[float]] = {}
    for r in runs:
        if r.name.startswith("clip-") and r.end_time:
            ends.setdefault(r.name.removeprefix("clip-"), []).append(r.end_time.timestamp())
    return {shot: min(times) for shot, times in ends.items()}  # round 1: the first of each


def test_render_says_what_runs_as_it_finishes_with_no_long_silence(render: Render) -> None:
    lines = "\n".join(render.printer.lines)
    # every step says what it does when it starts
    for start in ("review material", "models", "images 0/4", "clips 0/4", "edit", "record"):
        assert any(line.startswith(start) for line in render.said), (start, lines)
    # while work runs, no quiet stretch much longer than the interval (the heartbeat polls,
    # and shares two busy cores); a stretch that ends with a gate's answer was a person's
    times, said = render.printer.times, render.said
    working = [b - a for a, b, line in zip(times, times[1:], said[1:], strict=False)
               if " answered after " not in line]  # fmt: skip
    assert max(working) < INTERVAL + 3, lines
    # the clips counter moves as each clip finishes, in the order the server saw them end;
    # the transition starts once its source clip is done and holds nothing back: `city`,
    # after it in the storyboard, is counted before it (in storyboard order it never was)
    clips = render.counted("clips")
    assert [e.done for e in clips] == [1, 2, 3, 4]
    order = [e.detail for e in clips]
    ends = _clip_ends(render.state.state_details.flow_run_id)
    assert sorted(order) == sorted(ends) == ["city", "pass", "summit", "thaw"]
    assert all(ends[a] <= ends[b] + 0.2 for a, b in pairwise(order)), (order, ends)
    assert order.index("summit") < order.index("city") < order.index("thaw"), order


def test_a_redo_round_counts_only_what_it_redoes(render: Render) -> None:
    assert "images 1/1 (round 2)  city" in render.said, render.said
    assert [(e.done, e.total, e.detail) for e in render.counted("images", 2)] == [(1, 1, "city")]
    redone = render.counted("clips", 2)
    assert [(e.done, e.total) for e in redone] == [(1, 2), (2, 2)]
    assert {e.detail for e in redone} == {"summit", "thaw"}  # thaw takes summit's last frame


def test_the_final_line_tells_work_from_waiting_for_review(render: Render) -> None:
    answered = [line for line in render.said if line.startswith("storyboard gate answered")]
    assert len(answered) == 1 and int(answered[0].split()[-2]) >= READING, render.said
    total, work, waited = (int(n) for n in re.findall(r"\d+", render.summary))
    assert render.summary == (
        f"rendered in {total} s (work {work} s, waiting for review {waited} s)"
    )
    assert waited >= READING and work > 0 and work + waited == total
    assert render.printer.waited >= READING
