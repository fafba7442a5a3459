"""Round trips through the real ffmpeg binary: what we write is what probe/read/extract see."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reelflow.media.frames import (
    FFmpegError,
    VideoWriter,
    extract_frame,
    probe,
    read_frames,
)

W, H, FPS, N = 160, 90, 24, 36


def _frame(i: int) -> np.ndarray:
    """A frame whose colours encode its index, so frames can be told apart after H.264.

    Large flat blocks survive yuv420p chroma subsampling and crf 18 with small error.
    """
    f = np.zeros((H, W, 3), np.uint8)
    f[:, : W // 2, 0] = (i * 7) % 256  # left half red ramps with the index
    f[:, W // 2 :, 1] = 255 - (i * 7) % 256  # right half green ramps down
    f[: H // 3, :, 2] = 200  # top band blue, constant
    return f


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vio") / "clip.mp4"
    with VideoWriter(out, width=W, height=H, fps=FPS, crf=12, preset="ultrafast") as w:
        for i in range(N):
            w.write(_frame(i))
    assert w.info is not None and w.info.frame_count == N
    return out


def _close(a: np.ndarray, b: np.ndarray, tol: float = 6.0) -> bool:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) < tol


def test_probe_reports_exact_geometry_rate_and_count(clip: Path) -> None:
    info = probe(clip)
    assert (info.width, info.height) == (W, H)
    assert info.fps == pytest.approx(FPS)
    assert info.frame_count == N
    assert info.duration == pytest.approx(N / FPS)
    assert info.codec == "h264"
    assert info.pix_fmt == "yuv420p"
    assert info.has_audio is False
    assert info.container_duration == pytest.approx(N / FPS, abs=0.05)


def test_faststart_puts_moov_before_mdat(clip: Path) -> None:
    head = clip.read_bytes()
    assert 0 <= head.find(b"moov") < head.find(b"mdat")


def test_ntsc_rate_is_recovered_exactly(tmp_path: Path) -> None:
    out = tmp_path / "ntsc.mp4"
    with VideoWriter(out, width=64, height=64, fps=30000 / 1001, preset="ultrafast") as w:
        for i in range(5):
            w.write(np.full((64, 64, 3), i * 40, np.uint8))
    assert probe(out).fps == pytest.approx(30000 / 1001, rel=1e-9)


def test_read_frames_round_trip(clip: Path) -> None:
    count = 0
    for i, frame in enumerate(read_frames(clip)):
        assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
        assert _close(frame, _frame(i)), f"frame {i} differs from what was written"
        count += 1
    assert count == N


def test_read_frames_rescales_and_resamples(clip: Path) -> None:
    frames = list(read_frames(clip, size=(80, 46), fps=12))
    assert len(frames) == N // 2
    assert frames[0].shape == (46, 80, 3)


def test_read_frames_can_stop_early(clip: Path) -> None:
    it = read_frames(clip)
    first = next(it)
    it.close()  # kills ffmpeg; must not hang or raise
    assert _close(first, _frame(0))


def test_extract_first_last_and_index(clip: Path) -> None:
    assert _close(extract_frame(clip, "first"), _frame(0))
    last = extract_frame(clip, "last")
    assert _close(last, _frame(N - 1))
    assert not _close(last, _frame(N - 5), tol=3.0)  # really the last, not a near neighbour
    assert _close(extract_frame(clip, 10), _frame(10))
    assert _close(extract_frame(clip, -1), last, tol=1.0)
    assert last.flags.writeable
    with pytest.raises(IndexError):
        extract_frame(clip, N + 5)


def test_extract_last_of_long_gop_clip(tmp_path: Path) -> None:
    """A clip longer than the -sseof window with one keyframe still yields its true last frame."""
    out = tmp_path / "long.mp4"
    n = 100
    with VideoWriter(
        out, width=64, height=64, fps=25, preset="ultrafast", extra_output_args=["-g", "1000"]
    ) as w:
        for i in range(n):
            w.write(np.full((64, 64, 3), (i * 2) % 256, np.uint8))
    assert probe(out).frame_count == n
    last = extract_frame(out, "last")
    assert abs(int(last.mean()) - ((n - 1) * 2) % 256) <= 3


def test_writer_validates_frames_and_cleans_up_on_error(tmp_path: Path) -> None:
    out = tmp_path / "bad.mp4"
    with pytest.raises(ValueError, match="frame shape"):
        with VideoWriter(out, width=64, height=64, fps=24) as w:
            w.write(np.zeros((64, 64, 3), np.uint8))
            w.write(np.zeros((32, 64, 3), np.uint8))
    assert not out.exists()
    assert not list(tmp_path.glob("*.partial.mp4"))
    with pytest.raises(ValueError, match="even"):
        VideoWriter(out, width=63, height=64, fps=24)


def test_empty_writer_fails_loudly(tmp_path: Path) -> None:
    out = tmp_path / "empty.mp4"
    with pytest.raises(FFmpegError, match="no frames"):
        with VideoWriter(out, width=64, height=64, fps=24):
            pass
    assert not out.exists()


def test_probe_rejects_non_video(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    with pytest.raises(FFmpegError):
        probe(junk)
    with pytest.raises(FileNotFoundError):
        probe(tmp_path / "missing.mp4")
