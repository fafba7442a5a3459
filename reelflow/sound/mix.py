"""The mix: the voice-over lines over the music bed, the music ducked while the voice speaks,
loudness-normalised (EBU R128), and laid under the picture without re-encoding it.

Each stem is first brought to a level relative to the target (`voice_level_db`,
`music_level_db`, measured with ``ebur128``); the music is then lowered by `duck_db` over every
span where a line is spoken (a volume envelope with short ramps, computed from where the lines
were placed, so the ducking is exactly as long as the speech); the sum is normalised to the
target in two ``loudnorm`` passes with one linear gain, like the music-only master.
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


def _integrated(args: list[str], what: str) -> float:
    """Integrated loudness (LUFS) of the audio that ``args`` (inputs + filter chain) produce."""
    stderr = run([*args[:-1], args[-1] + ",ebur128=framelog=quiet", "-f", "null", "-"],
                 what=what, loglevel="info")  # fmt: skip
    found = re.findall(r"I:\s*(-?[\d.]+|-inf)\s*LUFS", stderr)
    if not found or found[-1] == "-inf":
        raise RuntimeError(f"{what}: no measurable loudness")
    return float(found[-1])


def mix_sound(
    voice: Path,
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
) -> Path:
    """Mix the voice stem (``voice``, as long as the film) over ``music`` (or alone) into the
    AAC file ``out``, ``duration`` seconds long, at ``target_lufs``."""
    stereo = f"aresample={MIX_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo"
    voice_gain = target_lufs + voice_level_db - _integrated(
        ["-i", str(voice), "-af", stereo], f"measure loudness of {voice.name}"
    )
    graph = [f"[0:a]{stereo},volume={voice_gain:.3f}dB,apad,atrim=end={duration:.6f}[v]"]
    inputs = ["-i", str(voice)]
    if music is not None:
        bed = f"{bed_filter(duration, min(fade_out, duration), 0.0)},{stereo}"
        music_gain = target_lufs + music_level_db - _integrated(
            ["-i", str(music), "-vn", "-af", bed], f"measure loudness of {music.name}"
        )
        duck = duck_envelope(spans, duck_db)
        graph.append(f"[1:a]{bed},volume={music_gain:.3f}dB,volume='{duck}':eval=frame[m]")
        graph.append("[v][m]amix=inputs=2:duration=first:normalize=0[a]")
        inputs += ["-i", str(music)]
    else:
        graph.append("[v]anull[a]")
    raw = out.with_name(out.stem + ".raw.wav")
    run([*inputs, "-filter_complex", ";".join(graph), "-map", "[a]", "-c:a", "pcm_f32le",
         str(raw)], what="mix the voice over the music")  # fmt: skip
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
