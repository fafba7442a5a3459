"""Probing a video with the ffmpeg binary alone (a pip-only install has no ffprobe).

The header (`ffmpeg -i`) gives codec, size, pixel format and frame rate; the frame count comes
from a stream copy to the null muxer, which reads packets without decoding: exact, and cheap even
for long clips.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from reelflow.media.ffmpeg import FFmpegError, ffmpeg_exe, tail


@dataclass(frozen=True)
class VideoInfo:
    """Facts about a video file's first video stream.

    ``duration`` is ``frame_count / fps`` when both are known (that is what an editor lays on
    a timeline); ``container_duration`` is the one the container declares, which includes
    audio and edit lists and so can differ slightly.
    """

    path: Path
    width: int
    height: int
    fps: float
    frame_count: int
    duration: float
    codec: str
    pix_fmt: str | None = None
    container_duration: float | None = None
    has_audio: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``, the order ffmpeg and OpenCV take sizes in."""
        return (self.width, self.height)


# Frame rates that ffmpeg prints rounded ("29.97 fps") but that are really NTSC rationals.
_NTSC = {round(n * 1000 / 1001, 2): n * 1000 / 1001 for n in (24, 30, 48, 60, 120)}


_DURATION_RE = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO_RE = re.compile(r"Stream #\d+:\d+[^:]*:\s*Video:\s*(?P<codec>[\w-]+)(?P<rest>.*)")
_SIZE_RE = re.compile(r"(?<![\w/])(\d{2,5})x(\d{2,5})(?![\w])")
_FPS_RE = re.compile(r"(\d+(?:\.\d+)?)k?\s+fps")
_TBR_RE = re.compile(r"(\d+(?:\.\d+)?)k?\s+tbr")


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Describe ``path``'s first video stream with the ffmpeg binary only.

    The header (``ffmpeg -i``) gives codec, size, pixel format and frame rate; the frame count
    comes from a stream copy to the null muxer, which reads packets without decoding, so it is
    exact and costs milliseconds even for long clips.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(p)
    header = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(p)],
        capture_output=True,
        check=False,
    ).stderr.decode("utf-8", "replace")
    video = None
    has_audio = False
    for line in header.splitlines():
        if video is None:
            video = _VIDEO_RE.search(line)
        if re.search(r"Stream #\d+:\d+[^:]*:\s*Audio:", line):
            has_audio = True
    if video is None:
        raise FFmpegError(f"no video stream in {p}: {tail(header)}")
    codec = video.group("codec")
    rest = video.group("rest")
    size = _SIZE_RE.search(rest)
    if size is None:
        raise FFmpegError(f"cannot read the frame size of {p}: {video.group(0)}")
    width, height = int(size.group(1)), int(size.group(2))
    rate = _FPS_RE.search(rest) or _TBR_RE.search(rest)
    fps = float(rate.group(1)) if rate else 0.0
    if rate and rate.group(0).rstrip().endswith(("k fps", "k tbr")):
        fps *= 1000
    fps = _NTSC.get(round(fps, 2), fps)
    # "h264 (High) (avc1 / ...), yuv420p(tv, bt709, progressive), 1920x1080, ...": the pixel
    # format is the second comma field once parenthesised details are dropped.
    fields = re.sub(r"\([^()]*\)", "", rest).split(",")
    pix_fmt = (fields[1].strip() or None) if len(fields) > 1 else None
    dur = _DURATION_RE.search(header)
    container_duration = (
        int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else None
    )

    count_cmd = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-v", "error",
        "-i", str(p), "-map", "0:v:0", "-c", "copy", "-f", "null", "-progress", "pipe:1", "-",
    ]  # fmt: skip
    counted = subprocess.run(
        count_cmd,
        capture_output=True,
        check=False,
    )
    if counted.returncode != 0:
        raise FFmpegError(f"ffmpeg could not read {p}: {tail(counted.stderr)}")
    frames = re.findall(rb"^frame=(\d+)", counted.stdout, flags=re.M)
    frame_count = int(frames[-1]) if frames else 0
    if fps > 0 and frame_count > 0:
        duration = frame_count / fps
    else:
        duration = container_duration or 0.0
    return VideoInfo(
        path=p,
        width=width,
        height=height,
        fps=fps,
        frame_count=frame_count,
        duration=duration,
        codec=codec,
        pix_fmt=pix_fmt,
        container_duration=container_duration,
        has_audio=has_audio,
    )
