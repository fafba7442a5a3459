"""Waste removal: black and frozen frames at a clip's head and tail, found and trimmed (bounded).

Video generators often start from a still (the conditioning image held for a few frames) or end
on a frozen or black frame; left in, they read as stutters at every cut. ffmpeg's
``blackdetect`` and ``freezedetect`` run in one decoding pass (no frames reach Python) and
report intervals; only intervals touching the head (starting at the first frame) or the tail
(reaching the last frame) count as waste, since a freeze or a fade in the middle of a shot is
a directing choice.

- black at the head/tail is dropped entirely;
- a freeze keeps one frame (the picture itself is content; only its repetition is waste);
- each side is trimmed by at most ``max_trim`` seconds, and together by at most half the clip,
  so a bad detection can shorten a shot but never remove it.

Every decision is logged per clip (logger ``reelflow.editing.waste``) and returned as a
:class:`WasteReport`, whose ``in_point``/``out_point`` go straight into an
:class:`~reelflow.editing.assemble.AssemblyClip`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reelflow.editing.assemble import AssemblyClip
from reelflow.media.ffmpeg import PathLike, run
from reelflow.media.probe import probe

__all__ = ["Interval", "Trim", "WasteReport", "detect_waste", "trim_clip", "trim_for_shot"]

log = logging.getLogger(__name__)

_FREEZE_RE = re.compile(r"freezedetect\.freeze_(start|end):\s*(-?[\d.]+)")
_BLACK_RE = re.compile(r"black_start:\s*(-?[\d.]+)\s+black_end:\s*(-?[\d.]+)")


@dataclass(frozen=True)
class Interval:
    """A detected black or frozen span, in source seconds."""

    kind: Literal["black", "freeze"]
    start: float
    end: float


@dataclass(frozen=True)
class WasteReport:
    """What to cut from one clip, and why."""

    path: Path
    duration: float
    fps: float
    head: float
    tail: float
    intervals: tuple[Interval, ...]

    @property
    def in_point(self) -> float:
        return self.head

    @property
    def out_point(self) -> float:
        return self.duration - self.tail

    @property
    def usable_duration(self) -> float:
        return self.out_point - self.in_point


def _parse(stderr: str, duration: float) -> list[Interval]:
    intervals: list[Interval] = []
    freeze_start: float | None = None
    for kind, value in _FREEZE_RE.findall(stderr):
        if kind == "start":
            freeze_start = float(value)
        elif freeze_start is not None:
            intervals.append(Interval("freeze", freeze_start, float(value)))
            freeze_start = None
    if freeze_start is not None:  # a freeze that lasts to the end has no freeze_end line
        intervals.append(Interval("freeze", freeze_start, duration))
    for start, end in _BLACK_RE.findall(stderr):
        intervals.append(Interval("black", float(start), float(end)))
    return intervals


def detect_waste(
    video: PathLike,
    *,
    max_trim: float = 1.0,
    freeze_noise: float = 0.003,
    min_freeze: float = 0.2,
    black_pixel: float = 0.10,
    min_black: float = 0.1,
) -> WasteReport:
    """Find head/tail waste in ``video`` (see the module docstring for the rules).

    ``freeze_noise`` is freezedetect's noise tolerance (fraction of the pixel range) and
    ``black_pixel`` the luma below which a pixel counts as black; spans shorter than
    ``min_freeze``/``min_black`` seconds are ignored.
    """
    path = Path(video)
    info = probe(path)
    duration, frame = info.duration, 1.0 / info.fps
    stderr = run(
        ["-i", str(path), "-map", "0:v:0", "-vf",
         f"freezedetect=n={freeze_noise}:d={min_freeze},"
         f"blackdetect=d={min_black}:pix_th={black_pixel}",
         "-f", "null", "-"],
        what=f"detect waste in {path.name}",
        loglevel="info",
    )  # fmt: skip
    intervals = _parse(stderr, duration)
    head = tail = 0.0
    for iv in sorted(intervals, key=lambda i: i.start):
        if iv.start <= head + frame / 2:  # touches the head (or extends a head span)
            head = max(head, iv.end - (frame if iv.kind == "freeze" else 0.0))
    for iv in sorted(intervals, key=lambda i: -i.end):
        if iv.end >= duration - tail - frame / 2:
            keep = frame if iv.kind == "freeze" else 0.0
            tail = max(tail, duration - iv.start - keep)
    # whole frames only, and never more than the bound (rounded down to a frame)
    bound = int(max_trim / frame + 1e-6)
    head_n = min(max(round(head / frame), 0), bound)
    tail_n = min(max(round(tail / frame), 0), bound)
    total_n = max(1, round(duration / frame))
    if head_n + tail_n > total_n // 2:
        scale = (total_n // 2) / (head_n + tail_n)
        head_n, tail_n = int(head_n * scale), int(tail_n * scale)
    head, tail = head_n * frame, tail_n * frame
    report = WasteReport(path, duration, info.fps, head, tail, tuple(intervals))
    log.info(
        "waste %s: trim head %.3fs tail %.3fs of %.3fs (%s)",
        path.name,
        head,
        tail,
        duration,
        ", ".join(f"{i.kind} {i.start:.2f}-{i.end:.2f}" for i in intervals) or "nothing found",
    )
    return report


def trim_clip(clip: AssemblyClip, report: WasteReport) -> AssemblyClip:
    """``clip`` with its in/out points moved past the detected waste (relative to its own
    ``in_point``, which is usually 0)."""
    return clip.model_copy(
        update={
            "in_point": max(clip.in_point, report.in_point),
            "out_point": report.out_point
            if clip.out_point is None
            else min(clip.out_point, report.out_point),
        }
    )


@dataclass(frozen=True)
class Trim:
    """What the edit cut from one shot's clip, for the manifest: seconds of source trimmed at
    the head and tail, what was kept, and how long the last frame is held to fill the shot."""

    shot: str
    head: float
    tail: float
    source: float
    kept: float
    held: float
    found: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "head": round(self.head, 4),
            "tail": round(self.tail, 4),
            "source": round(self.source, 4),
            "kept": round(self.kept, 4),
            "held": round(self.held, 4),
            "found": list(self.found),
        }


STILL_SHOT = 0.9
"""A freeze covering this fraction of a clip is a still shot by design (a static animatic),
not waste: such clips are left alone."""


def trim_for_shot(
    shot: str, clip: AssemblyClip, *, max_trim: float = 1.0
) -> tuple[AssemblyClip, Trim | None]:
    """``clip`` trimmed past its head/tail waste (bounded by ``max_trim`` per side), and the
    trim made (None when nothing was cut).

    The shot keeps its storyboard ``duration`` in the film whatever is cut: when the kept
    source is shorter, the assembler holds its last frame (``tpad``), so the film's length
    never changes. A clip that is one long freeze is a still shot and is not trimmed.
    """
    report = detect_waste(clip.path, max_trim=max_trim)
    if any(
        i.kind == "freeze" and i.end - i.start >= STILL_SHOT * report.duration
        for i in report.intervals
    ):
        log.info("waste %s: a still shot (one freeze), not trimmed", clip.path.name)
        return clip, None
    if report.head <= 0 and report.tail <= 0:
        return clip, None
    trimmed = trim_clip(clip, report)
    kept = (trimmed.out_point or report.duration) - trimmed.in_point
    trim = Trim(
        shot=shot,
        head=report.head,
        tail=report.tail,
        source=report.duration,
        kept=kept,
        held=max(0.0, clip.duration - kept),
        found=tuple(f"{i.kind} {i.start:.3f}-{i.end:.3f}" for i in report.intervals),
    )
    return trimmed, trim
