"""Lines measured before a run: `validate` and the run's first check refuse a voice-over line
longer than its shot (when the storyboard says so) with the measured length, before anything
renders. The lines are spoken off the record here (no store, no cache); the run's own speech
steps store them."""

from __future__ import annotations

import tempfile
from pathlib import Path

from reelflow.render.jobs.builders import speech_jobs
from reelflow.render.jobs.specs import SpokenLine
from reelflow.sound.lines import check_line_lengths, line_text, sound_of
from reelflow.sound.speech import engine, speak
from reelflow.storyboard import Storyboard


def measure_lines(storyboard: Storyboard) -> dict[str, SpokenLine]:
    """Every line spoken now, off the record (no store), to measure it: what `validate` and the
    run's first check use to refuse a line longer than its shot before anything renders."""
    lines: dict[str, SpokenLine] = {}
    with tempfile.TemporaryDirectory(prefix="reelflow-lines-") as tmp:
        for job in speech_jobs(storyboard):
            speech = speak(engine(job.engine), job.text, job.voice, job.speed, Path(tmp) / "a.wav")
            lines[job.shot] = SpokenLine(shot=job.shot, key="", duration=speech.duration,
                                         sentences=speech.sentences)
    return lines


def check_lines(storyboard: Storyboard) -> None:
    """Refuse (InputError, one line) a line longer than its shot when the storyboard says so."""
    if sound_of(storyboard).line_too_long == "refuse" and any(
        line_text(storyboard, shot) for shot in storyboard.shots
    ):
        check_line_lengths(storyboard, [s.duration for s in storyboard.shots],
                           measure_lines(storyboard))  # fmt: skip
