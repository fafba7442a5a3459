"""A recorded voice-over line (a human voice): the file is the line's audio, and its sentences'
timings, for the captions, come from its pauses.

The take is decoded to mono 16-bit at its own rate and trimmed to where the voice is heard
(like an engine's output). The pauses are found by energy in 10 ms windows: when there are at
least as many voiced stretches as the line has sentences, the longest pauses separate the
sentences; otherwise the whole line is one caption cue, from the first word to the last.
"""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np

from reelflow.sound.speech import SentenceTiming, Speech, SpeechError, split_sentences

WINDOW = 0.01
"""Seconds per energy window."""

QUIET_DB = 35.0
"""A window this far below the loudest one is a pause."""

TAKE_RATE = 48000
"""Takes are decoded at this rate, whatever they were recorded at."""

MIN_PAUSE = 0.15
"""Shorter quiet stretches are inside a sentence (stops, breaths)."""


def decode_take(path: Path, speed: float = 1.0) -> tuple[np.ndarray, int]:
    """Mono int16 samples (at TAKE_RATE) of any audio file ffmpeg reads (WAV, FLAC, MP3, M4A);
    ``speed`` other than 1 changes the pace, not the pitch (atempo)."""
    from reelflow.media.ffmpeg import ffmpeg_exe

    tempo = ["-af", f"atempo={speed:g}"] if speed != 1.0 else []
    done = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-ac", "1", *tempo,
                           "-ar", str(TAKE_RATE), "-f", "s16le", "pipe:1"],
                          capture_output=True, check=False)  # fmt: skip
    if done.returncode != 0 or not done.stdout:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SpeechError(f"recorded line {path.name}: not audio ffmpeg can read"
                          + (f" ({why[-1]})" if why else ""))
    return np.frombuffer(done.stdout, dtype="<i2").astype(np.int16), TAKE_RATE


def voiced_spans(samples: np.ndarray, rate: int) -> list[tuple[int, int]]:
    """Sample ranges where the voice is heard, pauses shorter than MIN_PAUSE bridged."""
    n = max(1, round(WINDOW * rate))
    frames = samples[: samples.size // n * n].astype(np.float64).reshape(-1, n)
    if not frames.size:
        return []
    level = 10 * np.log10((frames**2).mean(axis=1) + 1e-9)
    loud = level > level.max() - QUIET_DB
    if level.max() < 10 * np.log10((0.001 * 32767) ** 2):  # digital silence
        return []
    spans: list[list[int]] = []
    for i in np.flatnonzero(loud):
        if spans and (i - spans[-1][1]) * WINDOW < MIN_PAUSE:
            spans[-1][1] = i + 1
        else:
            spans.append([int(i), int(i) + 1])
    return [(a * n, min(samples.size, b * n)) for a, b in spans]


def take_speech(text: str, path: Path, out: Path, *, speed: float = 1.0) -> Speech:
    """The take at ``path`` as the line's WAV ``out`` (trimmed to the voice), with its
    sentences' timings from its pauses (or one cue for the line)."""
    samples, rate = decode_take(path, speed)
    spans = voiced_spans(samples, rate)
    if not spans:
        raise SpeechError(f"recorded line {path.name}: no voice in it (silent)")
    head, tail = spans[0][0], spans[-1][1]
    audio = samples[head:tail]
    sentences = split_sentences(text) or [text.strip()]
    if len(spans) >= len(sentences) > 1:
        gaps = sorted(range(len(spans) - 1), key=lambda i: spans[i][1] - spans[i + 1][0])
        cuts = sorted(gaps[: len(sentences) - 1])  # the widest pauses, in time order
        bounds, first = [], 0
        for cut in [*cuts, len(spans) - 1]:
            bounds.append((spans[first][0], spans[cut][1]))
            first = cut + 1
        timings = [SentenceTiming(text=s, start=(a - head) / rate, end=(b - head) / rate)
                   for s, (a, b) in zip(sentences, bounds, strict=True)]  # fmt: skip
    else:
        timings = [SentenceTiming(text=" ".join(text.split()), start=0.0,
                                  end=audio.size / rate)]
    out.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(audio.astype("<i2").tobytes())
    return Speech(sample_rate=rate, duration=audio.size / rate, sentences=timings)
