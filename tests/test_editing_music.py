"""Music: beat detection on synthetic click tracks, beat-snapped cuts, music bed mux + loudnorm."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from reelflow.editing.audio import loudness, mux_music
from reelflow.editing.beats import BeatGrid, detect_beats, load_mono, snap_cuts
from reelflow.media.ffmpeg import ffmpeg_exe, run
from reelflow.media.probe import probe

SR = 44100
FIRST_CLICK = 0.25


def click_track(path: Path, bpm: float, seconds: float = 12.0) -> np.ndarray:
    """A 1 kHz decaying click on every beat; returns the true click times."""
    y = np.zeros(int(SR * seconds), np.float32)
    n = np.arange(int(0.02 * SR))
    click = np.sin(2 * np.pi * 1000 * n / SR) * np.exp(-n / (0.004 * SR))
    times = np.arange(FIRST_CLICK, seconds - 0.2, 60.0 / bpm)
    for t in times:
        i = int(round(t * SR))
        y[i : i + click.size] += 0.8 * click.astype(np.float32)
    soundfile.write(str(path), y, SR)
    return times


@pytest.fixture(scope="module")
def tracks(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[np.ndarray, BeatGrid]]:
    """Click tracks at three tempi and their detections (librosa's JIT warms up once here)."""
    d = tmp_path_factory.mktemp("music")
    out = {}
    for bpm in (100, 120, 128):
        times = click_track(d / f"click{bpm}.wav", bpm)
        out[bpm] = (times, detect_beats(d / f"click{bpm}.wav"))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("bpm", [100, 120, 128])
def test_tempo_within_two_percent(tracks: dict, bpm: int) -> None:
    _, grid = tracks[bpm]
    assert abs(grid.tempo - bpm) / bpm < 0.02


@pytest.mark.slow
def test_beats_land_on_the_clicks(tracks: dict) -> None:
    times, grid = tracks[120]
    assert len(grid.beats) >= len(times) - 2
    errors = [float(np.min(np.abs(times - b))) for b in grid.beats]
    assert np.median(errors) < 0.005
    assert sum(e < 1 / 30 for e in errors) >= len(times) - 2


@pytest.mark.slow
def test_snapped_cuts_within_one_frame_of_beats(tracks: dict) -> None:
    times, grid = tracks[120]  # beats every 0.5 s from 0.25 s
    fps = 25
    durations = [1.9, 2.1, 1.4, 2.3, 1.8]
    new = snap_cuts(durations, grid.beats, tolerance=0.3, min_shot=1.0, fps=fps)
    assert sum(new) == pytest.approx(sum(durations))  # the end does not move
    cuts = np.cumsum(new)[:-1]
    for cut in cuts:
        assert np.min(np.abs(times - cut)) <= 1 / fps
    assert min(new) >= 1.0


def test_snap_respects_tolerance_and_minimum_shot() -> None:
    beats = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    # the cut at 1.2 could snap to 1.0, but that would leave the first shot 1.0 < min 1.1
    assert snap_cuts([1.2, 1.8], beats, tolerance=0.35, min_shot=1.1) == pytest.approx([1.5, 1.5])
    # no beat within tolerance: unchanged
    assert snap_cuts([1.25, 1.75], [0.5, 2.0], tolerance=0.1) == pytest.approx([1.25, 1.75])
    # a shot already shorter than the minimum may keep its length, never shrink below it
    out = snap_cuts([0.6, 2.0, 1.0], [0.5, 0.7, 2.5], tolerance=0.2, min_shot=1.0)
    assert out == pytest.approx([0.7, 1.8, 1.1])


@pytest.fixture(scope="module")
def film(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("film") / "film.mp4"
    run(
        ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=3",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out)],
        what="make music test film",
    )  # fmt: skip
    return out


def test_music_is_fitted_faded_and_normalised(film: Path, tmp_path: Path) -> None:
    quiet = tmp_path / "quiet.wav"  # a quiet 5 s tone: longer than the film, far below target
    run(
        ["-f", "lavfi", "-i", "sine=frequency=440:duration=5:sample_rate=44100",
         "-af", "volume=-20dB", str(quiet)],
        what="make tone",
    )  # fmt: skip
    assert loudness(quiet) < -30
    out = mux_music(film, quiet, tmp_path / "scored.mp4", fade_out=1.0)
    info = probe(out)
    assert info.has_audio
    header = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(out)], capture_output=True)
    assert b"Audio: aac" in header.stderr
    assert info.frame_count == 75  # video copied, untouched
    assert loudness(out) == pytest.approx(-14.0, abs=1.0)
    y = load_mono(out, sr=8000)
    assert len(y) / 8000 == pytest.approx(3.0, abs=0.05)
    rms = lambda a: float(np.sqrt(np.mean(a**2)))  # noqa: E731
    assert rms(y[-400:]) < 0.05 * rms(y[4000:12000])  # faded out at the end


def test_short_music_is_padded_to_the_film(film: Path, tmp_path: Path) -> None:
    short = tmp_path / "short.wav"
    run(["-f", "lavfi", "-i", "sine=frequency=300:duration=1.5", str(short)], what="make tone")
    out = mux_music(film, short, tmp_path / "padded.mp4", fade_out=0.5)
    y = load_mono(out, sr=8000)
    assert len(y) / 8000 == pytest.approx(3.0, abs=0.05)
    assert np.abs(y[int(2.0 * 8000) :]).max() < 1e-3  # silence after the music ends
