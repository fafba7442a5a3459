"""Lines measured before a run: `validate` and the run's first check refuse a voice-over line
longer than its shot (when the storyboard says so) with the measured length, before anything
renders, and a version asked in a language the storyboard has no lines in. The lines are
spoken off the record here (no store, no cache); the run's own speech steps store them.

Offline sources are measured here: eSpeak NG, a VITS folder, a recorded take next to the
storyboard. An endpoint's lines (each a paid request) and a bucket storyboard's takes are
measured by the run's speech steps, which stop the run before any clip is made.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from reelflow.errors import InputError
from reelflow.render.jobs.builders import speech_jobs
from reelflow.render.jobs.exports import ExportSpec
from reelflow.render.jobs.specs import SpeechJob, SpokenLine
from reelflow.sound.lines import Language, check_line_lengths, line_text, sound_of
from reelflow.sound.sources import Take, line_take, speak_line
from reelflow.sound.speech import SpeechError
from reelflow.storyboard import Storyboard


def local_takes(
    storyboard: Storyboard, base_dir: Path | None, language: Language | None = None
) -> dict[str, Take]:
    """The recorded lines (in ``language``, default the film's) of a local storyboard, as
    paths (not stored)."""
    from reelflow.storyboard.files import resolve_local

    if base_dir is None:
        return {}
    takes = {}
    for shot in storyboard.shots:
        ref = line_take(storyboard, shot, language)
        if ref:
            try:
                path = resolve_local(ref, base_dir, must_exist=True)
            except ValueError as exc:
                raise InputError(f"shot {shot.id}: voiceover.recording: {exc}") from None
            takes[shot.id] = Take(key=str(path), sha256="")
    return takes


def offline_jobs(
    storyboard: Storyboard, base_dir: Path | None = None, language: Language | None = None
) -> list[SpeechJob]:
    """The lines (in ``language``, default the film's) that can be spoken here and now;
    InputError for a source that is unusable (a missing model folder names `sound.model`)."""
    takes = local_takes(storyboard, base_dir, language)
    try:
        return speech_jobs(storyboard, language, takes=takes, partial=True)
    except SpeechError as exc:
        raise InputError(str(exc)) from None


def measure_lines(
    storyboard: Storyboard, base_dir: Path | None = None, language: Language | None = None
) -> dict[str, SpokenLine]:
    """Every offline line (in ``language``, default the film's) spoken now, off the record (no
    store), to measure it: what `validate` and the run's first check use to refuse a line
    longer than its shot before anything renders."""
    lines: dict[str, SpokenLine] = {}
    with tempfile.TemporaryDirectory(prefix="reelflow-lines-") as tmp:
        for job in offline_jobs(storyboard, base_dir, language):
            take = Path(job.source) if job.engine == "recorded" and job.source else None
            try:
                speech = speak_line(job.engine, job.text, job.voice, job.speed,
                                    Path(tmp) / "a.wav", source=job.source, take=take)
            except SpeechError as exc:
                raise InputError(f"shot {job.shot}: voiceover: {exc}") from None
            lines[job.shot] = SpokenLine(shot=job.shot, key="", duration=speech.duration,
                                         sentences=speech.sentences)
    return lines


def check_lines(
    storyboard: Storyboard, base_dir: Path | None = None, languages: Sequence[Language] = ()
) -> None:
    """Refuse (InputError, one line) an unusable speech source, and a line longer than its
    shot when the storyboard says so, in each language the run speaks (default: the film's).
    ``base_dir``: the storyboard's folder (its takes)."""
    durations = [s.duration for s in storyboard.shots]
    for language in languages or [storyboard.voice_language]:
        if not any(line_text(storyboard, shot, language) for shot in storyboard.shots):
            continue
        if sound_of(storyboard).line_too_long != "refuse":
            offline_jobs(storyboard, base_dir, language)  # the sources are usable
            continue
        check_line_lengths(storyboard, durations, measure_lines(storyboard, base_dir, language),
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
