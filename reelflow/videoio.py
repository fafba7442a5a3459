"""Streaming video I/O over the ffmpeg binary that ``imageio-ffmpeg`` ships.

Every function here talks to ffmpeg through pipes, one frame at a time, so memory stays
proportional to a single frame no matter how long the clip is (a 20 s 1080p clip is ~3 GB of
raw RGB; holding it would exhaust a render worker). There is no ffprobe in a pip-only install,
so :func:`probe` parses ``ffmpeg -i`` output and counts packets with a stream copy.

Public API:

- :class:`VideoInfo` -- what :func:`probe` reports about a file.
- :class:`VideoWriter` -- context manager: ``write(frame)`` RGB uint8 frames, get an H.264 MP4.
- :func:`read_frames` -- iterator of RGB uint8 frames, optionally rescaled by ffmpeg.
- :func:`extract_frame` -- one frame (first, last, or by index) without decoding the whole clip.
- :func:`ffmpeg_exe` -- path of the ffmpeg binary, for modules that build their own graphs.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

import numpy as np

__all__ = [
    "FFmpegError",
    "VideoInfo",
    "VideoWriter",
    "extract_frame",
    "ffmpeg_exe",
    "probe",
    "read_frames",
]


class FFmpegError(RuntimeError):
    """ffmpeg exited with an error; the message carries the tail of its stderr."""


@functools.cache
def ffmpeg_exe() -> str:
    """Return the ffmpeg binary: ``$REELFLOW_FFMPEG`` if set, else the imageio-ffmpeg one.

    The override exists so a deployment can use a system ffmpeg with NVENC or more codecs.
    """
    override = os.environ.get("REELFLOW_FFMPEG")
    if override:
        return override
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


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


def _fps_arg(fps: float | Fraction) -> str:
    """Format a frame rate for ffmpeg exactly: 30000/1001 rather than 29.97002997."""
    frac = Fraction(fps).limit_denominator(1001)
    return f"{frac.numerator}/{frac.denominator}"


# Frame rates that ffmpeg prints rounded ("29.97 fps") but that are really NTSC rationals.
_NTSC = {round(n * 1000 / 1001, 2): n * 1000 / 1001 for n in (24, 30, 48, 60, 120)}


def _tail(data: bytes | str, limit: int = 2000) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return text.strip()[-limit:]


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
        raise FFmpegError(f"no video stream in {p}: {_tail(header)}")
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
        raise FFmpegError(f"ffmpeg could not read {p}: {_tail(counted.stderr)}")
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


class VideoWriter:
    """Encode RGB frames to H.264 MP4 by piping them to ffmpeg's stdin, one at a time.

    Output is ``libx264`` / ``yuv420p`` (what every player and browser decodes) with
    ``+faststart`` (the index at the front, so previews stream from a presigned URL). The file
    is written under a temporary name and renamed on success, so a crashed render never leaves
    a truncated MP4 at ``path`` for a cache to mistake for a finished clip.

    >>> with VideoWriter("out.mp4", width=320, height=180, fps=24) as w:  # doctest: +SKIP
    ...     w.write(frame)
    >>> w.info.frame_count  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        width: int,
        height: int,
        fps: float | Fraction,
        crf: int = 18,
        preset: str = "medium",
        extra_output_args: Sequence[str] = (),
    ) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"yuv420p needs positive even width/height, got {width}x{height}")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if not 0 <= crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {crf}")
        self.path = Path(path)
        self.width = width
        self.height = height
        self.fps = fps
        self.crf = crf
        self.preset = preset
        self.extra_output_args = tuple(extra_output_args)
        self.frames_written = 0
        self.info: VideoInfo | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._tmp: Path | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> VideoWriter:
        """Start ffmpeg. Called by ``__enter__``; call it yourself when not using ``with``."""
        if self._proc is not None:
            raise RuntimeError("VideoWriter is already open")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tag = f"{os.getpid()}-{threading.get_ident()}"  # Prefect runs tasks in threads
        self._tmp = self.path.with_name(f".{self.path.stem}.{tag}.partial.mp4")
        # stderr goes to a temp file, not a pipe: a pipe nobody drains can fill and deadlock.
        self._stderr = tempfile.TemporaryFile()
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{self.width}x{self.height}",
            "-r", _fps_arg(self.fps), "-i", "pipe:0",
            "-an", "-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf),
            "-pix_fmt", "yuv420p", "-movflags", "+faststart",
            *self.extra_output_args,
            "-f", "mp4", str(self._tmp),
        ]  # fmt: skip
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=self._stderr)
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one HxWx3 uint8 RGB frame (HxW grayscale is widened to RGB)."""
        if self._proc is None or self._proc.stdin is None:
            raise RuntimeError("VideoWriter is not open")
        arr = np.asarray(frame)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        if arr.shape != (self.height, self.width, 3):
            raise ValueError(f"frame shape {arr.shape} != expected {(self.height, self.width, 3)}")
        if arr.dtype != np.uint8:
            raise TypeError(f"frames must be uint8, got {arr.dtype}")
        try:
            self._proc.stdin.write(np.ascontiguousarray(arr).data)
        except BrokenPipeError as exc:
            self._proc.wait()
            raise FFmpegError(f"ffmpeg stopped while encoding {self.path}: {self._err()}") from exc
        self.frames_written += 1

    def close(self) -> VideoInfo:
        """Finish encoding, move the file into place, and return its probed :class:`VideoInfo`."""
        if self._proc is None:
            if self.info is not None:
                return self.info
            raise RuntimeError("VideoWriter was never opened")
        proc, tmp = self._proc, self._tmp
        assert proc.stdin is not None and tmp is not None
        self._proc = None
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        rc = proc.wait()
        err = self._err()
        self._close_stderr()
        if rc != 0 or self.frames_written == 0:
            tmp.unlink(missing_ok=True)
            why = "no frames were written" if self.frames_written == 0 else err
            raise FFmpegError(f"encoding {self.path} failed (rc={rc}): {why}")
        os.replace(tmp, self.path)
        self.info = probe(self.path)
        return self.info

    def abort(self) -> None:
        """Kill ffmpeg and delete the partial file; ``path`` is left untouched."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            if proc.stdin is not None:
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        self._close_stderr()

    def _err(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return _tail(self._stderr.read())

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> VideoWriter:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _decode(
    path: Path,
    *,
    size: tuple[int, int] | None,
    input_args: Sequence[str] = (),
    filters: Sequence[str] = (),
    max_frames: int | None = None,
) -> Iterator[np.ndarray]:
    """Yield RGB frames decoded by one ffmpeg process; the process dies with the generator."""
    if not path.is_file():
        raise FileNotFoundError(path)
    if size is None:
        info = probe(path)
        width, height = info.width, info.height
    else:
        width, height = size
    vf = list(filters)
    if size is not None:
        vf.append(f"scale={width}:{height}:flags=area")
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
        *input_args, "-i", str(path), "-map", "0:v:0",
        *(["-vf", ",".join(vf)] if vf else []),
        *(["-frames:v", str(max_frames)] if max_frames is not None else []),
        "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
    ]  # fmt: skip
    frame_bytes = width * height * 3
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        finished = False
        try:
            while True:
                buf = proc.stdout.read(frame_bytes)
                if not buf:
                    break
                if len(buf) != frame_bytes:
                    raise FFmpegError(f"truncated frame from {path} ({len(buf)} bytes)")
                yield np.frombuffer(buf, np.uint8).reshape(height, width, 3)
            finished = True
        finally:
            if not finished:
                proc.kill()
            proc.stdout.close()
            rc = proc.wait()
        if finished and rc != 0:
            err.seek(0)
            raise FFmpegError(f"decoding {path} failed (rc={rc}): {_tail(err.read())}")


def read_frames(
    path: str | os.PathLike[str],
    size: tuple[int, int] | None = None,
    *,
    start: float | None = None,
    fps: float | None = None,
) -> Iterator[np.ndarray]:
    """Stream ``path``'s frames as read-only HxWx3 uint8 RGB arrays.

    ``size=(width, height)`` rescales inside ffmpeg (area filter), which is cheaper than
    decoding full size and resizing in Python; ``start`` seeks (seconds) before decoding and
    ``fps`` resamples the rate. Breaking out of the loop kills the ffmpeg process.
    """
    input_args = ["-ss", f"{start:.6f}"] if start else []
    filters = [f"fps={_fps_arg(fps)}"] if fps else []
    return _decode(Path(path), size=size, input_args=input_args, filters=filters)


def extract_frame(
    path: str | os.PathLike[str],
    which: Literal["first", "last"] | int = "first",
    *,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Return one frame as a writable HxWx3 uint8 RGB array.

    ``"last"`` seeks to shortly before the end (``-sseof``) and keeps the final decoded
    frame, so it decodes at most about a GOP instead of the whole clip; this is what a
    chunked generator needs to continue a shot from its previous chunk. An integer picks a
    0-based frame; negative integers count from the end.
    """
    p = Path(path)
    last: np.ndarray | None = None
    if which == "first" or which == 0:
        for frame in _decode(p, size=size, max_frames=1):
            last = frame
    elif which == "last":
        # Widen the window until a frame comes back; 3 s covers x264's default GOP at any rate.
        for window in (3.0, 30.0):
            for frame in _decode(p, size=size, input_args=["-sseof", f"-{window}"]):
                last = frame
            if last is not None:
                break
        if last is None:  # seeking failed entirely (odd container): stream the whole file
            for frame in _decode(p, size=size):
                last = frame
    elif isinstance(which, int):
        index = which
        if index < 0:
            index += probe(p).frame_count
        if index < 0:
            raise IndexError(f"frame {which} is before the start of {p}")
        for frame in _decode(
            p,
            size=size,
            filters=[f"select=eq(n\\,{index})"],
            max_frames=1,
        ):
            last = frame
    else:
        raise ValueError(f"which must be 'first', 'last' or an int, got {which!r}")
    if last is None:
        raise IndexError(f"no frame {which!r} in {p}")
    return last.copy()
