"""Finishing: waste removal, enhancement (upscale, denoise, interpolation), delivery versions."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from reelflow.editing.assemble import AssemblyClip, assemble
from reelflow.editing.enhance import enhance
from reelflow.editing.versions import available_codecs, export_version, subject_path
from reelflow.editing.waste import detect_waste, trim_clip
from reelflow.media.ffmpeg import run
from reelflow.media.frames import iter_frames
from reelflow.media.probe import probe

W, H, FPS = 320, 180, 24


def encode(out: Path, inputs: list[str], graph: str | None = None) -> Path:
    args = [*inputs]
    if graph:
        args += ["-filter_complex", graph]
    run([*args, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out)],
        what=f"make {out.name}")  # fmt: skip
    return out


def lavfi(source: str, seconds: float, size: str = f"{W}x{H}") -> list[str]:
    sep = ":" if "=" in source else "="
    return ["-f", "lavfi", "-i", f"{source}{sep}s={size}:r={FPS}:d={seconds}"]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("finishing")
    return {
        # 0.5 s black, 2 s moving pattern, 0.5 s frozen white
        "wasteful": encode(
            d / "wasteful.mp4",
            [*lavfi("color=c=black", 0.5), *lavfi("testsrc2", 2), *lavfi("color=c=white", 0.5)],
            "[0][1][2]concat=n=3",
        ),
        "clean": encode(d / "clean.mp4", lavfi("testsrc2", 2)),
        # a white square crossing a grey frame left to right
        "moving": encode(
            d / "moving.mp4",
            [*lavfi("color=c=gray", 3), *lavfi("color=c=white", 3, size="30x30")],
            "[0][1]overlay=x='10+t*90':y=75",
        ),
    }


def test_waste_head_black_and_tail_freeze_are_trimmed(
    media: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="reelflow.editing.waste"):
        report = detect_waste(media["wasteful"])
    assert report.duration == pytest.approx(3.0)
    assert report.head == pytest.approx(0.5, abs=1 / FPS)  # black dropped entirely
    assert report.tail == pytest.approx(0.5 - 1 / FPS, abs=1 / FPS)  # one frozen frame kept
    assert {i.kind for i in report.intervals} >= {"black", "freeze"}
    assert "wasteful.mp4" in caplog.text and "trim head" in caplog.text
    # the trimmed clip assembles without black at the head
    clip = trim_clip(AssemblyClip(path=media["wasteful"], duration=2.0), report)
    out = assemble([clip], tmp_path / "trimmed.mp4", width=W, height=H, fps=FPS)
    first = next(iter(iter_frames(out)))
    assert first.mean() > 40


def test_waste_trim_is_bounded(media: dict[str, Path]) -> None:
    report = detect_waste(media["wasteful"], max_trim=0.2)
    assert report.head <= 0.2 + 1e-9 and report.tail <= 0.2 + 1e-9


def test_clean_clip_has_no_waste(media: dict[str, Path]) -> None:
    report = detect_waste(media["clean"])
    assert report.head == 0 and report.tail == 0
    assert report.usable_duration == pytest.approx(2.0)


def _laplacian_var(frame: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def test_upscale_with_sharpening(media: dict[str, Path], tmp_path: Path) -> None:
    soft = enhance(media["clean"], tmp_path / "soft.mp4", size=(640, 360), sharpen=0)
    sharp = enhance(media["clean"], tmp_path / "sharp.mp4", size=(640, 360), sharpen=1.2)
    info = probe(sharp)
    assert (info.width, info.height, info.frame_count) == (640, 360, 48)
    f_soft, f_sharp = next(iter(iter_frames(soft))), next(iter(iter_frames(sharp)))
    assert _laplacian_var(f_sharp) > 1.2 * _laplacian_var(f_soft)


@pytest.mark.parametrize("method", ["hqdn3d", "nlmeans"])
def test_denoise_reduces_noise(tmp_path: Path, method: str) -> None:
    noisy = encode(
        tmp_path / "noisy.mp4",
        ["-f", "lavfi", "-i", f"color=c=gray:s=160x90:r={FPS}:d=1"],
        "[0]noise=alls=10:allf=t",
    )
    clean = enhance(noisy, tmp_path / "dn.mp4", denoise=method, strength=2.0)

    def noise(path: Path) -> float:
        return float(np.mean([f[10:-10, 10:-10].std() for f in iter_frames(path)]))

    assert noise(clean) < 0.7 * noise(noisy)


def test_interpolation_to_60fps_makes_new_frames(media: dict[str, Path], tmp_path: Path) -> None:
    short = encode(tmp_path / "short.mp4", ["-t", "1", "-i", str(media["moving"])])
    out = enhance(short, tmp_path / "60.mp4", fps=60)
    info = probe(out)
    assert info.fps == pytest.approx(60) and info.frame_count == 60
    xs = []
    for f in iter_frames(out):
        cols = np.flatnonzero((f > 200).all(axis=2).any(axis=0))
        xs.append(cols.mean())
    steps = np.diff(xs)
    # new positions between the 24 fps ones: plain frame repetition (fps filter) would move
    # the square on only 24 of 59 steps (0.41); motion-compensated frames move it on most
    assert (steps > 0.3).mean() > 0.6


def test_subject_path_follows_motion(media: dict[str, Path]) -> None:
    times, xs, ys = subject_path(media["moving"])
    assert xs[-1] - xs[0] > 0.4  # left to right
    assert np.all(np.diff(xs) >= -0.01)
    assert np.allclose(ys, 0.5, atol=0.05)


@pytest.mark.parametrize("codec", ["h264", "h265", "av1"])
def test_vertical_version_keeps_the_subject(
    media: dict[str, Path], tmp_path: Path, codec: str
) -> None:
    if codec not in available_codecs():
        pytest.skip(f"this ffmpeg build cannot encode {codec}")
    out = export_version(media["moving"], tmp_path / f"v-{codec}.mp4", aspect="9:16", codec=codec)
    info = probe(out)
    assert info.codec == {"h264": "h264", "h265": "hevc", "av1": "av1"}[codec]
    assert info.height == H and abs(info.width / info.height - 9 / 16) < 0.03
    assert info.frame_count == 72
    visible = [int((f > 230).all(axis=2).sum()) for f in iter_frames(out)]
    assert min(visible) > 0.8 * 30 * 30  # the square stays in the window all the time


def test_centre_crop_loses_the_subject_that_follow_keeps(
    media: dict[str, Path], tmp_path: Path
) -> None:
    """The control for the test above: a fixed centre crop does lose the square."""
    out = export_version(media["moving"], tmp_path / "c.mp4", aspect="9:16", follow="center")
    visible = [int((f > 230).all(axis=2).sum()) for f in iter_frames(out)]
    assert min(visible) == 0


def test_square_version_size(media: dict[str, Path], tmp_path: Path) -> None:
    out = export_version(media["clean"], tmp_path / "sq.mp4", aspect="1:1", height=120)
    info = probe(out)
    assert (info.width, info.height) == (120, 120)
