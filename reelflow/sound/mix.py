"""The mix: the voice-over lines, the clips' own sound (LTX-2 makes picture and sound together)
and the music bed, the music ducked while the voice speaks, loudness-normalised (EBU R128), and
laid under the picture without re-encoding it.

Each stem is first brought to a level relative to the target (`voice_level_db`,
`clips_level_db`, `music_level_db`, measured with ``ebur128``); the music is then lowered by
`duck_db` over every span where a line is spoken (a volume envelope with short ramps, computed
from where the lines were placed, so the ducking is exactly as long as the speech); the sum is
normalised to the target in two ``loudnorm`` passes with one linear gain, like the music-only
master. The clips' sound is not ducked: it belongs to the picture.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile

from reelflow.editing.audio import bed_filter, loudnorm_measure
from reelflow.media.ffmpeg import run

__all__ = ["duck_envelope", "mix_sound", "mux_audio", "voice_track"]

DUCK_RAMP = 0.15
"""Seconds the music takes to go down before a line and to come back after it."""

MIX_RATE = 48000


def voice_track(lines: Sequence[tuple[Path, float]], duration: float, out: Path) -> Path:
    """The voice stem: each line (a WAV and its start in seconds) placed on a silent track as
    long as the film, at the lines' own rate (mono, 16-bit). Lines never overlap (the placement
    keeps them apart); a line running past the film's end is cut there."""
    rate = 0
    pieces = []
    for path, start in lines:
        samples, line_rate = soundfile.read(str(path), dtype="int16", always_2d=False)
        if rate and line_rate != rate:  # another engine's rate: linear resampling to the first
            positions = np.arange(round(samples.size * rate / line_rate)) * line_rate / rate
            samples = np.interp(positions, np.arange(samples.size), samples).astype(np.int16)
        rate = rate or line_rate
        pieces.append((round(start * rate), samples))
    track = np.zeros(max(1, round(duration * rate)), dtype=np.int16)
    for at, samples in pieces:
        end = min(track.size, at + samples.size)
        if end > at:
            track[at:end] = samples[: end - at]
    soundfile.write(str(out), track, rate, subtype="PCM_16")
    return out


def duck_envelope(spans: Sequence[tuple[float, float]], duck_db: float) -> str:
    """An ffmpeg ``volume`` expression: 1 outside the spans, ``-duck_db`` inside, with ramps of
    DUCK_RAMP before and after. Spans closer than two ramps merge, so the terms never overlap
    and their sum stays within 0..1."""
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if merged and start - merged[-1][1] < 2 * DUCK_RAMP:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    if not merged or duck_db <= 0:
        return "1"
    r = DUCK_RAMP
    terms = "+".join(
        f"clip(min((t-{a - r:.4f})/{r},({b + r:.4f}-t)/{r}),0,1)" for a, b in merged
    )
    depth = 1 - 10 ** (-duck_db / 20)
    return f"1-{depth:.6f}*({terms})"


def _integrated(args: list[str], what: str) -> float | None:
    """Integrated loudness (LUFS) of the audio that ``args`` (inputs + filter chain) produce;
    None when it is silent (nothing above the gate)."""
    stderr = run([*args[:-1], args[-1] + ",ebur128=framelog=quiet", "-f", "null", "-"],
                 what=what, loglevel="info")  # fmt: skip
    found = re.findall(r"I:\s*(-?[\d.]+|-inf)\s*LUFS", stderr)
    if not found:
        raise RuntimeError(f"{what}: no measurable loudness")
    if found[-1] == "-inf" or float(found[-1]) <= -69.0:  # the absolute gate: silence
        return None
    return float(found[-1])


def mix_sound(
    voice: Path | None,
    music: Path | None,
    out: Path,
    *,
    duration: float,
    spans: Sequence[tuple[float, float]],
    target_lufs: float = -14.0,
    voice_level_db: float = 0.0,
    music_level_db: float = -8.0,
    duck_db: float = 12.0,
    fade_out: float = 2.0,
    true_peak: float = -1.0,
    lra: float = 11.0,
    bitrate: str = "192k",
    clips: Path | None = None,
    clips_level_db: float = -10.0,
) -> Path:
    """Mix the stems into the AAC file ``out``, ``duration`` seconds long, at ``target_lufs``:
    the voice (``voice``, as long as the film), the clips' own sound (``clips``, a stem as long
    as the picture) and ``music`` (ducked by ``duck_db`` over ``spans``, where the voice speaks).
    Each stem is first set to its level against the target (``*_level_db``); a silent stem is
    laid as it is."""
    stereo = f"aresample={MIX_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo"
    inputs: list[str] = []
    graph: list[str] = []
    labels: list[str] = []

    def add(path: Path, level_db: float, chain: str, after: str = "") -> None:
        measured = _integrated(["-i", str(path), "-vn", "-af", chain],
                               f"measure loudness of {path.name}")  # fmt: skip
        gain = 0.0 if measured is None else target_lufs + level_db - measured
        n = len(labels)
        graph.append(f"[{n}:a]{chain},volume={gain:.3f}dB{after}[s{n}]")
        inputs.extend(["-i", str(path)])
        labels.append(f"[s{n}]")

    fit = f"apad,atrim=end={duration:.6f}"
    if voice is not None:
        add(voice, voice_level_db, f"{stereo},{fit}")
    if clips is not None:
        add(clips, clips_level_db, f"{stereo},{fit}")
    if music is not None:
        bed = f"{bed_filter(duration, min(fade_out, duration), 0.0)},{stereo}"
        add(music, music_level_db, bed, f",volume='{duck_envelope(spans, duck_db)}':eval=frame")
    if not labels:
        raise ValueError("a mix needs a voice, the clips' sound or music")
    if len(labels) == 1:
        graph.append(f"{labels[0]}anull[a]")
    else:
        graph.append(f"{''.join(labels)}amix=inputs={len(labels)}:duration=first:normalize=0[a]")
    raw = out.with_name(out.stem + ".raw.wav")
    run([*inputs, "-filter_complex", ";".join(graph), "-map", "[a]", "-c:a", "pcm_f32le",
         str(raw)], what="mix the sound's stems")  # fmt: skip
    m = loudnorm_measure(["-i", str(raw), "-af", "anull"], "measure loudness of the mix",
                          target_lufs, true_peak, lra)  # fmt: skip
    norm = (
        f"loudnorm=I={target_lufs}:TP={true_peak}:LRA={lra}:linear=true:"
        f"measured_I={m['input_i']}:measured_TP={m['input_tp']}:measured_LRA={m['input_lra']}:"
        f"measured_thresh={m['input_thresh']}:offset={m['target_offset']},aresample={MIX_RATE}"
    )
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)
    run(["-i", str(raw), "-af", norm, "-t", f"{duration:.6f}", "-c:a", "aac", "-b:a", bitrate,
         "-f", "mp4", str(tmp)], what="normalise the mix")  # fmt: skip
    os.replace(tmp, out)
    raw.unlink(missing_ok=True)
    return out


def mux_audio(video: Path, audio: Path, out: Path, duration: float) -> Path:
    """The picture of ``video`` (stream-copied, never re-encoded) with the audio of ``audio``."""
    tmp = out.with_name(out.stem + ".tmp" + (out.suffix or ".mp4"))
    run(["-i", str(video), "-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", "-c", "copy",
         "-t", f"{duration:.6f}", "-movflags", "+faststart", str(tmp)],
        what=f"lay the mix under {video.name}")  # fmt: skip
    os.replace(tmp, out)
    return out
