"""The encoder arguments of every encode of the edit, pinned (no ffmpeg runs here).

Cached parts are joined by stream copy with parts encoded later, and the demo film must keep
its frames: the arguments below are the ones each step used before they came from one builder
(`VideoEncode`). A change here changes every cached part's bytes: bump PART_VERSION with it.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reelflow.editing.assemble import ENCODE_THREADS
from reelflow.media.encode import VideoEncode

X264 = ["-c:v", "libx264", "-preset", "medium", "-crf", "18", "-pix_fmt", "yuv420p"]


def _all(name: str) -> bool:
    return True


def _svt_missing(name: str) -> bool:
    return name != "libsvtav1"


def test_defaults_are_the_delivery_settings() -> None:
    # enhance.py, subtitles.py (burned captions), versions.py (whole H.264 export)
    assert VideoEncode().args() == X264
    assert VideoEncode(crf=18).args() == X264


def test_film_part_settings() -> None:
    # assemble.render_part: every part of a film, joined by stream copy
    encode = VideoEncode(crf=18, preset="medium", threads=ENCODE_THREADS, bitexact=True)
    assert encode.args() == [
        "-c:v", "libx264", "-preset", "medium", "-crf", "18", "-pix_fmt", "yuv420p",
        "-threads", str(ENCODE_THREADS), "-fflags", "+bitexact", "-flags:v", "+bitexact",
    ]  # fmt: skip


def test_clip_writer_settings() -> None:
    # media.frames.VideoWriter: clips written frame by frame
    assert VideoEncode(crf=20, preset="fast").args() == [
        "-c:v", "libx264", "-preset", "fast", "-crf", "20", "-pix_fmt", "yuv420p",
    ]  # fmt: skip


def test_version_part_settings_match_the_film_parts() -> None:
    """A version part with nothing to change is the film's own part: the version's h264
    parts must be encoded exactly like the film's, or the stream-copy join breaks."""
    film = VideoEncode(crf=23, preset="medium", threads=2, bitexact=True)
    version = VideoEncode(codec="h264", crf=23, preset="medium", threads=2, bitexact=True,
                          mp4_tag=False)  # fmt: skip
    assert version.args() == film.args()


def test_h265_and_av1() -> None:
    assert VideoEncode(codec="h265").args(available=_all) == [
        "-c:v", "libx265", "-preset", "medium", "-crf", "22", "-x265-params", "log-level=error",
        "-tag:v", "hvc1", "-pix_fmt", "yuv420p",
    ]  # fmt: skip
    # MPEG-TS parts carry no MP4 tag (the join sets it)
    assert "-tag:v" not in VideoEncode(codec="h265", mp4_tag=False).args(available=_all)
    assert VideoEncode(codec="av1").args(available=_all) == [
        "-c:v", "libsvtav1", "-preset", "8", "-crf", "32", "-pix_fmt", "yuv420p",
    ]  # fmt: skip
    assert VideoEncode(codec="av1", crf=40).args(available=_svt_missing) == [
        "-c:v", "libaom-av1", "-cpu-used", "8", "-row-mt", "1", "-crf", "40",
        "-pix_fmt", "yuv420p",
    ]  # fmt: skip


def test_missing_encoder_and_bad_values() -> None:
    with pytest.raises(RuntimeError, match="libx265"):
        VideoEncode(codec="h265").args(available=lambda name: False)
    with pytest.raises(RuntimeError, match="AV1"):
        VideoEncode(codec="av1").args(available=lambda name: False)
    with pytest.raises(ValidationError):
        VideoEncode(crf=-1)
    with pytest.raises(ValidationError):
        VideoEncode(codec="vp9")  # type: ignore[arg-type]
