"""Assembly and the ffmpeg runner, on real ffmpeg with tiny lavfi clips (320x180, 1-3 s)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from reelflow.editing.assemble import AssemblyClip, assemble, plan_segments
from reelflow.media.ffmpeg import FFmpegError, redact, run
from reelflow.media.frames import iter_frames
from reelflow.media.probe import probe
from tests.support.clips import lavfi_clip

W, H = 320, 180


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {
        "red": lavfi_clip(d / "red.mp4", "color=c=red", 2),
        # a different size, aspect and rate: must be scaled, cropped and retimed
        "blue": lavfi_clip(d / "blue.mp4", "color=c=blue", 1.5, size="640x480", rate=30),
        "green": lavfi_clip(d / "green.mp4", "color=c=lime", 2),
        "pattern": lavfi_clip(d / "pattern.mp4", "testsrc2", 3),
    }


def shot(path: Path, duration: float, transition: str = "cut", td: float = 0.5) -> AssemblyClip:
    return AssemblyClip(path=path, duration=duration, transition=transition, transition_duration=td)


def frame_at(path: Path, index: int) -> np.ndarray:
    for i, frame in enumerate(iter_frames(path)):
        if i == index:
            return frame.astype(int)
    raise AssertionError(f"{path} has no frame {index}")


def test_run_error_names_step_and_ffmpeg_reason(tmp_path: Path) -> None:
    with pytest.raises(FFmpegError) as err:
        run(["-i", str(tmp_path / "missing.mp4"), str(tmp_path / "o.mp4")], what="open a clip")
    assert "open a clip" in str(err.value)
    assert "missing.mp4" in err.value.stderr_tail
    assert err.value.returncode not in (0, None)


def test_redact_hides_credentials_and_signatures() -> None:
    text = "Error opening https://key:secret@s3.local/b/o.mp4?X-Amz-Signature=abc123 here"
    out = redact(text)
    assert "secret" not in out and "abc123" not in out
    assert "s3.local/b/o.mp4" in out


def test_probe_reads_geometry_rate_and_exact_frames(clips: dict[str, Path]) -> None:
    info = probe(clips["blue"])
    assert (info.width, info.height, info.fps, info.codec) == (640, 480, 30.0, "h264")
    assert info.frame_count == 45
    assert info.duration == pytest.approx(1.5)


def test_plan_keeps_cut_points_and_total_frames() -> None:
    p = Path("x.mp4")
    plan = plan_segments(
        [
            AssemblyClip(path=p, duration=1.0),
            AssemblyClip(path=p, duration=2.0, transition="crossfade", transition_duration=0.5),
            AssemblyClip(path=p, duration=1.3, transition="cut"),
        ],
        fps=24,
    )
    assert sum(s.frames for s in plan) == round(4.3 * 24)
    assert [s.overlap_frames for s in plan] == [12, 0, 0]
    # the second shot's body starts after the 12 overlap frames it shares with the first
    assert (plan[1].start_frame, plan[1].end_frame) == (12, 48)


def test_transition_longer_than_shot_is_rejected() -> None:
    with pytest.raises(ValidationError, match="longer than the shot"):
        AssemblyClip(
            path=Path("x.mp4"), duration=0.5, transition="wipe-left", transition_duration=1
        )


@pytest.mark.parametrize("fps", [25, 30])
def test_assemble_total_duration_size_fps_codec(
    clips: dict[str, Path], tmp_path: Path, fps: int
) -> None:
    timeline = [
        AssemblyClip(path=clips["red"], duration=1.0),
        shot(clips["blue"], 2.0, "crossfade", 0.5),
        shot(clips["pattern"], 1.5, "wipe-left", 0.4),
        shot(clips["green"], 1.2, "dip-to-black", 0.3),
        shot(clips["red"], 0.8, "slide-right", 0.2),
        AssemblyClip(path=clips["blue"], duration=0.7, transition="cut"),
    ]
    out = assemble(timeline, tmp_path / "film.mp4", width=W, height=H, fps=fps)
    info = probe(out)
    expected = sum(c.duration for c in timeline)
    assert (info.width, info.height, info.codec) == (W, H, "h264")
    assert info.fps == pytest.approx(fps)
    assert abs(info.duration - expected) <= 1 / fps + 1e-9
    # what a decoder actually delivers, not just the container's claim
    assert sum(1 for _ in iter_frames(out)) == info.frame_count
    # faststart: the index (moov) precedes the media data (mdat)
    head = out.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (
        head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat")
    )


def test_crossfade_blends_and_cut_points_stay(clips: dict[str, Path], tmp_path: Path) -> None:
    fps = 25
    timeline = [
        AssemblyClip(path=clips["red"], duration=1.0),
        shot(clips["blue"], 1.0, "crossfade", 0.4),
    ]
    out = assemble(timeline, tmp_path / "xf.mp4", width=W, height=H, fps=fps)
    # the crossfade starts at the cut (frame 25) and lasts 10 frames
    before, mid, after = (frame_at(out, i)[H // 2, W // 2] for i in (20, 30, 40))
    assert before[0] > 200 and before[2] < 40  # red
    assert after[2] > 200 and after[0] < 40  # blue
    assert 40 < mid[0] < 215 and 40 < mid[2] < 215  # a blend of both
    assert probe(out).frame_count == 50


def test_dip_to_black_passes_through_black(clips: dict[str, Path], tmp_path: Path) -> None:
    timeline = [
        AssemblyClip(path=clips["red"], duration=1.0),
        shot(clips["green"], 1.0, "dip-to-black", 0.8),
    ]
    out = assemble(timeline, tmp_path / "dip.mp4", width=W, height=H, fps=25)
    centre = [f[H // 2, W // 2].astype(int) for f in iter_frames(out)]
    assert centre[24][0] > 200 and centre[45][1] > 200  # red before, green after
    # somewhere inside the 20-frame transition the picture goes (nearly) black
    assert min(int(c.max()) for c in centre[25:45]) < 20


def test_short_clip_is_padded_with_its_last_frame(clips: dict[str, Path], tmp_path: Path) -> None:
    # blue.mp4 is 1.5 s; asking for 2.5 s holds its last frame
    out = assemble(
        [AssemblyClip(path=clips["blue"], duration=2.5)],
        tmp_path / "pad.mp4",
        width=W,
        height=H,
        fps=24,
    )
    assert probe(out).frame_count == 60
    assert frame_at(out, 59)[H // 2, W // 2][2] > 200


def test_in_point_skips_the_head(clips: dict[str, Path], tmp_path: Path) -> None:
    # testsrc2 moves; starting 1 s in must show a different picture than starting at 0
    a = assemble([AssemblyClip(path=clips["pattern"], duration=0.5)], tmp_path / "a.mp4",
                 width=W, height=H, fps=24)  # fmt: skip
    b = assemble([AssemblyClip(path=clips["pattern"], duration=0.5, in_point=1.0)],
                 tmp_path / "b.mp4", width=W, height=H, fps=24)  # fmt: skip
    assert np.abs(frame_at(a, 0) - frame_at(b, 0)).mean() > 5


def test_missing_clip_fails_before_rendering(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        assemble([AssemblyClip(path=tmp_path / "nope.mp4", duration=1)], tmp_path / "o.mp4",
                 width=W, height=H, fps=24)  # fmt: skip
    assert not (tmp_path / "o.mp4").exists()


def test_out_point_ends_the_source_early(clips: dict[str, Path], tmp_path: Path) -> None:
    # pattern.mp4 is 3 s; ending it at 1.0 s and asking for 2 s holds the frame at ~1 s
    clip = AssemblyClip(path=clips["pattern"], duration=2.0, out_point=1.0)
    out = assemble([clip], tmp_path / "out.mp4", width=W, height=H, fps=24)
    assert probe(out).frame_count == 48
    held = [frame_at(out, i) for i in (30, 47)]
    assert np.abs(held[0] - held[1]).mean() < 1  # frozen after the out point
    with pytest.raises(ValidationError, match="not after in_point"):
        AssemblyClip(path=clips["pattern"], duration=1.0, in_point=2.0, out_point=1.0)


_PEAK_SCRIPT = """
import resource, sys
from pathlib import Path
from reelflow.editing.assemble import AssemblyClip, assemble
clip, n, out = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
shots = [AssemblyClip(path=clip, duration=0.5, transition="crossfade", transition_duration=0.2)
         for _ in range(n)]
assemble(shots, out, width=320, height=180, fps=24, preset="ultrafast")
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_shot_count(clips: dict[str, Path], tmp_path: Path) -> None:
    """The largest ffmpeg process is the same for a 2-shot and a 16-shot film."""
    import subprocess
    import sys

    def peak_kib(n: int) -> int:
        proc = subprocess.run(
            [sys.executable, "-c", _PEAK_SCRIPT, str(clips["pattern"]), str(n),
             str(tmp_path / f"film{n}.mp4")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return int(proc.stdout.strip().splitlines()[-1])

    small, large = peak_kib(2), peak_kib(16)
    print(f"peak ffmpeg RSS: 2 shots {small} KiB, 16 shots {large} KiB")
    assert probe(tmp_path / "film16.mp4").frame_count == 16 * 12
    assert large < 1.25 * small, (small, large)
