"""Lines measured before a run: `validate` and the run's first check refuse a voice-over line
longer than its shot (when the storyboard says so) with the measured length, before anything
renders, and a version asked in a language the storyboard has no lines in. The lines are
spoken off the record here (no store, no cache); the run's own speech steps store them."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from reelflow.errors import InputError
from reelflow.render.jobs.builders import speech_jobs
from reelflow.render.jobs.exports import ExportSpec
from reelflow.render.jobs.specs import SpokenLine
from reelflow.sound.lines import Language, check_line_lengths, line_text, sound_of
from reelflow.sound.speech import engine, speak
from reelflow.storyboard import Storyboard


def measure_lines(
    storyboard: Storyboard, language: Language | None = None
) -> dict[str, SpokenLine]:
    """Every line (in ``language``, default the film's) spoken now, off the record (no store),
    to measure it: what `validate` and the run's first check use to refuse a line longer than
    its shot before anything renders."""
    lines: dict[str, SpokenLine] = {}
    with tempfile.TemporaryDirectory(prefix="reelflow-lines-") as tmp:
        for job in speech_jobs(storyboard, language):
            speech = speak(engine(job.engine), job.text, job.voice, job.speed, Path(tmp) / "a.wav")
            lines[job.shot] = SpokenLine(shot=job.shot, key="", duration=speech.duration,
                                         sentences=speech.sentences)
    return lines


def check_lines(storyboard: Storyboard, languages: Sequence[Language] = ()) -> None:
    """Refuse (InputError, one line) a line longer than its shot when the storyboard says so,
    in each language the run speaks (default: the film's)."""
    if sound_of(storyboard).line_too_long != "refuse":
        return
    durations = [s.duration for s in storyboard.shots]
    for language in languages or [storyboard.voice_language]:
        if any(line_text(storyboard, shot, language) for shot in storyboard.shots):
            check_line_lengths(storyboard, durations, measure_lines(storyboard, language),
                               language)  # fmt: skip


def check_export_languages(storyboard: Storyboard, exports: Sequence[ExportSpec]) -> None:
    """A version asked in a language (`--export ...,lang=en`) needs the storyboard's lines in
    it: one line naming the export when none has one, or naming a voiced shot without one."""
    for export in exports:
        if export.lang is None:
            continue
        where = f"--export {export.aspect},lang={export.lang} (version {export.name})"
        voiced = [shot for shot in storyboard.shots if shot.voiceover is not None]
        if not any(line_text(storyboard, shot, export.lang) for shot in voiced):
            raise InputError(f"{where}: the storyboard has no {export.lang} voice-over lines; "
                             f"give shots voiceover.{export.lang} or drop lang=")  # fmt: skip
        for shot in voiced:
            if not line_text(storyboard, shot, export.lang):
                raise InputError(f"{where}: shot {shot.id} has a voice-over but no "
                                 f"{export.lang} line (voiceover.{export.lang})")  # fmt: skip
