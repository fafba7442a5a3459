"""Music beats and cut points that land on them.

Beats come from ``librosa.beat.beat_track`` on a mono 22.05 kHz decode of the track (ffmpeg does
the decoding, so any container works and librosa never needs a system ffmpeg). ``hop_length``
256 (~12 ms) keeps beat times well inside one video frame. librosa's own tempo is quantised
to its autocorrelation lags (steps of ~2-5% near 120 BPM), so the reported tempo is instead
the mean of the inter-beat intervals that agree with their median, as precise as the beats,
which are refined to the attack of each hit (see ``_refine_to_attacks``).

Snapping (:func:`snap_cuts`) moves each interior cut point to the nearest beat within
``tolerance`` seconds, in order, but only where neither neighbouring shot drops below
``min_shot`` (or below its own original length, for shots already shorter): pacing rules
win over the music. The film's end is never moved, so the total length is unchanged.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reelflow.media.ffmpeg import PathLike, run

__all__ = ["BeatGrid", "detect_beats", "load_mono", "snap_cuts"]

SAMPLE_RATE = 22050
HOP = 256


@dataclass(frozen=True)
class BeatGrid:
    """Detected tempo (BPM) and beat times (seconds)."""

    tempo: float
    beats: tuple[float, ...]


def load_mono(path: PathLike, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Decode any audio (or a video's audio) to mono float32 at ``sr`` with ffmpeg."""
    import soundfile

    with tempfile.TemporaryDirectory(prefix="reelflow-beats-") as tmp:
        wav = Path(tmp) / "mono.wav"
        run(
            ["-i", str(path), "-vn", "-ac", "1", "-ar", str(sr), "-c:a", "pcm_f32le", str(wav)],
            what=f"decode audio of {Path(path).name}",
        )
        data, _ = soundfile.read(str(wav), dtype="float32")
    return np.asarray(data, dtype=np.float32)


def detect_beats(path: PathLike, *, start_bpm: float = 120.0) -> BeatGrid:
    """Tempo and beat times of the music at ``path`` (see the module docstring)."""
    import librosa

    y = load_mono(path)
    onset = librosa.onset.onset_strength(y=y, sr=SAMPLE_RATE, hop_length=HOP)
    tempo, frames = librosa.beat.beat_track(
        onset_envelope=onset, sr=SAMPLE_RATE, hop_length=HOP, start_bpm=start_bpm
    )
    beats = _refine_to_attacks(y, librosa.frames_to_time(frames, sr=SAMPLE_RATE, hop_length=HOP))
    if len(beats) >= 4:
        # mean inter-beat interval over the intervals that agree with the median: robust to
        # the odd beat the tracker adds or drops at the ends of a track
        gaps = np.diff(beats)
        med = float(np.median(gaps))
        bpm = 60.0 / float(gaps[np.abs(gaps - med) < 0.1 * med].mean())
    else:
        bpm = float(np.atleast_1d(tempo)[0])
    return BeatGrid(tempo=bpm, beats=tuple(float(b) for b in beats))


def _refine_to_attacks(y: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """Move each beat to the attack of its hit: the first sample, in a window from 80 ms before
    to 30 ms after the beat, where the 1 ms amplitude envelope reaches half the window's peak.

    Spectral-flux onsets peak one or two STFT hops *after* a hit starts (~20 ms here); a cut
    should land on the hit itself, within a frame at 30 fps.
    """
    if not len(y):
        return beats
    smooth = max(1, SAMPLE_RATE // 1000)
    env = np.convolve(np.abs(y), np.ones(smooth, np.float32) / smooth, mode="same")
    out = []
    for b in beats:
        lo = max(0, int((b - 0.08) * SAMPLE_RATE))
        hi = min(len(env), int((b + 0.03) * SAMPLE_RATE))
        window = env[lo:hi]
        if window.size == 0 or window.max() <= 1e-6:
            out.append(b)
            continue
        out.append((lo + int(np.argmax(window >= 0.5 * window.max()))) / SAMPLE_RATE)
    return np.asarray(out)


def snap_cuts(
    durations: Sequence[float],
    beats: Sequence[float],
    *,
    tolerance: float = 0.25,
    min_shot: float = 1.0,
    fps: float | None = None,
) -> list[float]:
    """New shot durations whose interior cut points sit on beats where the rules allow.

    ``fps`` rounds every snapped cut to a frame boundary, so the assembly's own rounding cannot
    move it off the beat by more than half a frame.
    """
    cuts = list(np.cumsum(durations))
    end = cuts[-1]
    beat_arr = np.asarray(sorted(beats), dtype=float)
    new_cuts: list[float] = []
    prev = 0.0
    for i, cut in enumerate(cuts[:-1]):
        floor_before = min(min_shot, durations[i])
        nxt = cuts[i + 1]
        floor_after = min(min_shot, nxt - cut)
        chosen = cut
        if beat_arr.size:
            near = beat_arr[np.abs(beat_arr - cut) <= tolerance]
            for beat in sorted(near, key=lambda b: abs(b - cut)):
                t = round(beat * fps) / fps if fps else float(beat)
                if t - prev >= floor_before - 1e-9 and nxt - t >= floor_after - 1e-9:
                    chosen = t
                    break
        new_cuts.append(chosen)
        prev = chosen
    bounds = [0.0, *new_cuts, end]
    return [b - a for a, b in zip(bounds, bounds[1:], strict=False)]
