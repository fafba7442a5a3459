"""Voice-over lines on the film's timeline: where each line starts, the captions that follow
it sentence by sentence, and what happens when a line outlasts its shot.

One formula places the lines (`place_lines`), and both the mix and the captions use it, so a
caption starts exactly where its sentence is heard.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from reelflow.errors import InputError
from reelflow.render.jobs.specs import CaptionCue, SpokenLine, VoiceClip
from reelflow.sound.speech import split_sentences
from reelflow.storyboard import Shot, Sound, Storyboard

LINE_GAP = 0.2
"""Seconds kept between the end of one line and the start of the next."""

HOLD_TAIL = 0.25
"""A shot extended for its line lasts this long after the line ends."""


def sound_of(storyboard: Storyboard) -> Sound:
    return storyboard.sound or Sound()


Language = Literal["zh", "en"]


def line_text(storyboard: Storyboard, shot: Shot, language: Language | None = None) -> str:
    """The shot's line in ``language`` (default: the film's), '' when it has none there."""
    if shot.voiceover is None:
        return ""
    return getattr(shot.voiceover, language or storyboard.voice_language).strip()


def voiced_languages(storyboard: Storyboard, asked: Sequence[Language | None]) -> list[Language]:
    """The languages a run speaks: each version's (`--export ...,lang=`; None: the film's own),
    the film's first, none for a film without voice-over."""
    if not any(shot.voiceover is not None for shot in storyboard.shots):
        return []
    found = [lang or storyboard.voice_language for lang in asked] or [storyboard.voice_language]
    return list(dict.fromkeys(found))


def check_line_lengths(
    storyboard: Storyboard,
    durations: Sequence[float],
    lines: dict[str, SpokenLine],
    language: Language | None = None,
) -> list[float]:
    """The shots' durations once every line fits its shot: with `line_too_long: refuse` a line
    longer than its shot is an InputError naming the shot and the measured length; with
    `extend` that shot is held until the line has ended. A line is never cut off. Called once
    per language a run speaks, each on the last one's durations: every version shares one
    picture, held for the longest of its lines."""
    language = language or storyboard.voice_language
    policy = sound_of(storyboard).line_too_long
    fitted = []
    for shot, duration in zip(storyboard.shots, durations, strict=True):
        line = lines.get(shot.id)
        if line is None or line.duration <= duration:
            fitted.append(duration)
            continue
        if policy == "refuse":
            raise InputError(
                f"shot {shot.id}: its {language} voice-over lasts "
                f"{line.duration:.2f} s, longer than the shot ({duration:g} s); shorten the "
                "line, lengthen the shot, or set sound.line_too_long: extend"
            )
        fitted.append(round(line.duration + HOLD_TAIL, 3))
    return fitted


def shot_starts(durations: Sequence[float]) -> list[float]:
    starts, t = [], 0.0
    for duration in durations:
        starts.append(t)
        t += duration
    return starts


def place_lines(
    storyboard: Storyboard, durations: Sequence[float], lines: dict[str, SpokenLine]
) -> list[VoiceClip]:
    """Each line at its shot's start in this cut, or just after the previous line when a
    shorter cut would make them overlap: a line never runs over the next one."""
    placed: list[VoiceClip] = []
    free = 0.0
    for shot, start in zip(storyboard.shots, shot_starts(durations), strict=True):
        line = lines.get(shot.id)
        if line is None:
            continue
        at = max(start, free)
        placed.append(VoiceClip(shot=shot.id, key=line.key, start=at, duration=line.duration))
        free = at + line.duration + LINE_GAP
    return placed


def voiced_cues(
    storyboard: Storyboard,
    durations: Sequence[float],
    lines: dict[str, SpokenLine],
    language: Language | None = None,
    *,
    only: bool = False,
) -> list[CaptionCue]:
    """Captions for the film: a voiced shot gets one cue per sentence, from where the sentence
    starts to where it ends (the other language's sentence beside it when the line has as
    many); a shot without a line keeps its one caption for the shot. Gaps are empty cues.
    ``language``: the voice's (default: the film's); ``only``: captions in it alone (a
    version delivered in one language, `--export ...,lang=`)."""
    language = language or storyboard.voice_language
    other = "en" if language == "zh" else "zh"
    placed = {clip.shot: clip.start for clip in place_lines(storyboard, durations, lines)}
    spans: list[tuple[float, float, dict[str, str]]] = []
    for shot, start, duration in zip(
        storyboard.shots, shot_starts(durations), durations, strict=True
    ):
        line = lines.get(shot.id)
        if line is None:
            if shot.caption is not None:
                text = {"zh": shot.caption.zh, "en": shot.caption.en}
                if only:
                    text[other] = ""
                spans.append((start, start + duration, text))
            continue
        translated = [] if only else split_sentences(getattr(shot.voiceover, other))
        paired = len(translated) == len(line.sentences)
        for i, sentence in enumerate(line.sentences):
            text = {language: sentence.text, other: translated[i] if paired else ""}
            spans.append((placed[shot.id] + sentence.start, placed[shot.id] + sentence.end, text))
    cues: list[CaptionCue] = []
    t, total = 0.0, sum(durations)
    for begin, end, text in spans:
        begin, end = max(begin, t), min(end, total)
        if begin > t + 1e-6:
            cues.append(CaptionCue(duration=begin - t))
        if end > begin:
            cues.append(CaptionCue(duration=end - begin, **text))
            t = end
    if total > t + 1e-6:
        cues.append(CaptionCue(duration=total - t))
    return cues
