"""Speech for the voice-over lines.

An engine turns one line into mono 16-bit audio and says where each sentence starts and ends in
it, so captions can follow the voice. Lines are synthesised sentence by sentence with a short
pause between sentences; each sentence's audio is trimmed to its voiced span, so the timings are
where the voice is heard, not where the engine's padding starts.

`EspeakEngine` runs eSpeak NG offline from the `espeakng-loader` wheel (its library and voice
data, Mandarin and English included): robotic, but real, and needs nothing beyond pip.
"""

from __future__ import annotations

import ctypes
import re
import threading
import wave
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import BaseModel

from reelflow.errors import ReelflowError

__all__ = ["EspeakEngine", "Speech", "SpeechEngine", "SpeechError", "engine", "split_sentences"]

SENTENCE_PAUSE = 0.3
"""Seconds of silence between two sentences of one line."""

SILENCE = 0.01
"""Fraction of full scale below which a sample counts as silence when trimming a sentence."""

_SENTENCE_RE = re.compile(r"[^。！？!?；;.…]+(?:[。！？!?；;.…]+[\"'”’」』）)]*|$)")


class SpeechError(ReelflowError):
    """The engine could not speak a line (library missing, unknown voice)."""


class SentenceTiming(BaseModel):
    text: str
    start: float  # seconds into the line's audio
    end: float


class Speech(BaseModel):
    """A synthesised line: its audio file's rate and length, and its sentences' timings."""

    sample_rate: int
    duration: float
    sentences: list[SentenceTiming]


def split_sentences(text: str) -> list[str]:
    """The sentences of a line, in Chinese or English punctuation, each with its mark."""
    found = [s.strip() for s in _SENTENCE_RE.findall(text.strip())]
    return [s for s in found if s and re.search(r"\w", s)]


class SpeechEngine(Protocol):
    """What the speech step needs from an engine: a name and version (in the cache key) and
    sentences to audio samples."""

    name: str

    def version(self) -> str: ...

    def voice_for(self, language: str, voice: str | None) -> str: ...

    def synthesize_sentence(self, text: str, voice: str, speed: float) -> tuple[np.ndarray, int]:
        """Mono int16 samples of one sentence and their rate."""
        ...


def speak(engine: SpeechEngine, text: str, voice: str, speed: float, out: Path) -> Speech:
    """Speak ``text`` sentence by sentence into the WAV ``out``; return the sentences' timings."""
    chunks: list[np.ndarray] = []
    timings: list[SentenceTiming] = []
    rate = 0
    position = 0
    for sentence in split_sentences(text):
        samples, rate = engine.synthesize_sentence(sentence, voice, speed)
        samples = _trim(samples)
        if not samples.size:
            continue
        if chunks:
            gap = np.zeros(round(SENTENCE_PAUSE * rate), dtype=np.int16)
            chunks.append(gap)
            position += gap.size
        timings.append(SentenceTiming(
            text=sentence, start=position / rate, end=(position + samples.size) / rate
        ))
        chunks.append(samples)
        position += samples.size
    if not timings:
        raise SpeechError(f"nothing to speak in {text!r}")
    audio = np.concatenate(chunks)
    out.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(audio.astype("<i2").tobytes())
    return Speech(sample_rate=rate, duration=audio.size / rate, sentences=timings)


def _trim(samples: np.ndarray) -> np.ndarray:
    """The voiced span of a sentence: engines pad their output with silence."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > SILENCE * 32767)
    if not loud.size:
        return samples[:0]
    return samples[loud[0] : loud[-1] + 1]


# -- eSpeak NG -------------------------------------------------------------------------------

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE = 1
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_DEFAULT_WPM = 175
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class EspeakEngine:
    """eSpeak NG through ctypes. The library keeps global state, so one lock serialises it."""

    name = "espeak-ng"
    voices = {"zh": "cmn", "en": "en"}
    _lock = threading.Lock()
    _lib: ctypes.CDLL | None = None
    _rate = 0
    _version = ""
    _buffer: list[np.ndarray] = []
    _callback = None

    def _load(self) -> ctypes.CDLL:
        cls = type(self)
        if cls._lib is not None:
            return cls._lib
        try:
            import espeakng_loader
        except ImportError:
            raise SpeechError(
                "the offline speech engine needs the espeakng-loader package "
                "(pip install espeakng-loader)"
            ) from None
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        data = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if rate <= 0:
            raise SpeechError(f"eSpeak NG failed to start (data at {data.decode()})")

        def collect(wav, count, _events) -> int:  # noqa: ANN001 - ctypes callback
            if count > 0:
                cls._buffer.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
            return 0

        cls._callback = _CALLBACK(collect)  # kept alive on the class: C holds the pointer
        lib.espeak_SetSynthCallback(cls._callback)
        cls._rate = rate
        cls._version = (lib.espeak_Info(None) or b"").decode()
        cls._lib = lib
        return lib

    def version(self) -> str:
        with self._lock:
            self._load()
            return type(self)._version

    def voice_for(self, language: str, voice: str | None) -> str:
        return voice or self.voices[language]

    def synthesize_sentence(self, text: str, voice: str, speed: float) -> tuple[np.ndarray, int]:
        cls = type(self)
        with self._lock:
            lib = self._load()
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise SpeechError(f"eSpeak NG has no voice {voice!r}")
            lib.espeak_SetParameter(_ESPEAK_RATE, max(80, min(450, round(_DEFAULT_WPM * speed))), 0)
            cls._buffer = []
            data = text.encode() + b"\0"
            status = lib.espeak_Synth(
                data, len(data), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
            )
            if status != 0:
                raise SpeechError(f"eSpeak NG failed on {text!r} (status {status})")
            samples = np.concatenate(cls._buffer) if cls._buffer else np.zeros(0, np.int16)
            cls._buffer = []
            return samples.astype(np.int16), cls._rate


ENGINES: dict[str, type] = {"espeak": EspeakEngine}


def engine(name: str) -> SpeechEngine:
    """The engine a storyboard's `sound.engine` names."""
    try:
        return ENGINES[name]()
    except KeyError:
        raise SpeechError(f"no speech engine {name!r} (known: {', '.join(ENGINES)})") from None
