"""Where each voice-over line's speech comes from, and speaking one line from it.

A line is spoken by the storyboard's engine (`sound.engine`, or the line's own `engine`):
eSpeak NG, an OpenAI-compatible endpoint (a `sound.endpoint` block) or a local VITS folder
(`sound.model`); or, when the line has a recording in the film's language, it is that take.
Each becomes a `SpeechJob` whose key holds the text, the voice, the engine and the engine's
version (the endpoint's model and URL, the VITS folder's hash, the take's sha256).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from reelflow.sound.speech import Speech, SpeechEngine, SpeechError, engine, speak
from reelflow.storyboard import Shot, Storyboard

__all__ = ["Take", "line_engine", "line_take", "speak_line", "speaker"]


class Take(BaseModel):
    """A recorded line stored in the bucket: its object key and the sha256 of its bytes."""

    key: str
    sha256: str


def line_take(storyboard: Storyboard, shot: Shot, language: str | None = None) -> str | None:
    """The recording (file reference) of the shot's line in ``language`` (default: the
    film's), if any."""
    voiceover = shot.voiceover
    if voiceover is None or voiceover.recording is None:
        return None
    return getattr(voiceover.recording, language or storyboard.voice_language)


def line_engine(storyboard: Storyboard, shot: Shot, language: str | None = None) -> str:
    """`recorded` for a line with a take in ``language`` (default: the film's), else the
    line's engine."""
    if line_take(storyboard, shot, language):
        return "recorded"
    sound = storyboard.sound
    own = shot.voiceover.engine if shot.voiceover is not None else None
    return own or (sound.engine if sound is not None else "espeak")


def speaker(
    name: str, storyboard: Storyboard | None = None, *, model: str | None = None,
    endpoint: object = None, language: str | None = None,
) -> SpeechEngine:
    """The engine called ``name``: ``model`` is the VITS folder (else the storyboard's
    `sound.model` for ``language``, default the film's), ``endpoint`` a `SpeechEndpointConfig`
    (which holds the key; only the speech step has one)."""
    if name == "vits":
        from reelflow.sound.neural import VitsEngine

        if model:
            return VitsEngine(model)
        sound = storyboard.sound if storyboard else None
        if sound is None or not sound.model:
            raise SpeechError("the vits speech engine needs sound.model")
        language = language or (storyboard.voice_language if storyboard else "zh")
        if not isinstance(sound.model, dict):
            return VitsEngine(sound.model)
        source = sound.model.get(language)  # type: ignore[call-overload]
        if not source:
            raise SpeechError(f"sound.model: no {language} folder for the vits engine's "
                              f"{language} lines (it gives {', '.join(sound.model)})")
        return VitsEngine(source, field=f"sound.model.{language}")
    if name == "endpoint":
        from reelflow.sound.endpoint import EndpointEngine, SpeechEndpointConfig

        if not isinstance(endpoint, SpeechEndpointConfig):
            raise SpeechError("the endpoint speech engine needs its block (sound.endpoint)")
        return EndpointEngine(endpoint)
    return engine(name)


def speak_line(
    engine_name: str, text: str, voice: str, speed: float, out: Path, *,
    source: str | None = None, take: Path | None = None, endpoint: object = None,
) -> Speech:
    """One line's WAV at ``out`` and its sentences' timings: from the take at ``take`` for a
    recorded line, else synthesised sentence by sentence by the named engine."""
    if engine_name == "recorded":
        from reelflow.sound.recorded import take_speech

        if take is None:
            raise SpeechError("a recorded line needs its file")
        return take_speech(text, take, out, speed=speed)
    return speak(speaker(engine_name, model=source, endpoint=endpoint), text, voice, speed, out)
