"""Streaming frame I/O over the ffmpeg binary that ``imageio-ffmpeg`` ships.

Every function here talks to ffmpeg through pipes, one frame at a time, so memory stays
proportional to a single frame no matter how long the clip is (a 20 s 1080p clip is ~3 GB of
raw RGB; holding it would exhaust a render worker).

- :class:`VideoWriter` -- context manager: ``write(frame)`` RGB uint8 frames, get an H.264 MP4.
- :func:`read_frames` -- iterator of RGB uint8 frames, optionally rescaled by ffmpeg.
- :func:`iter_frames` -- the same with an arbitrary filter chain first (``select`` to sample).
- :func:`extract_frame` -- one frame (first, last, or by index) without decoding the whole clip.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

import numpy as np

from reelflow.media.encode import VideoEncode
from reelflow.media.ffmpeg import FFmpegError, ffmpeg_exe, fps_arg, tail
from reelflow.media.probe import VideoInfo, probe

PathLike = str | os.PathLike[str]

__all__ = [
    "FFmpegError",
    "VideoInfo",
    "VideoWriter",
    "extract_frame",
    "frames_at",
    "iter_frames",
    "probe",
    "read_frames",
]


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
            "-r", fps_arg(self.fps), "-i", "pipe:0",
            "-an", *VideoEncode(crf=self.crf, preset=self.preset).args(), "-movflags", "+faststart",
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
        return tail(self._stderr.read())

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
            raise FFmpegError(f"decoding {path} failed (rc={rc}): {tail(err.read())}")


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
    filters = [f"fps={fps_arg(fps)}"] if fps else []
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


def frames_at(
    path: PathLike, indices: Sequence[int], *, size: tuple[int, int] | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, frame)`` for each 0-based frame index, each found by seeking (decoding from the
    keyframe before it) rather than by decoding the whole video: a cover's dozen samples of a
    long film cost a dozen short decodes."""
    info = probe(path)
    rate = info.fps or 1.0
    for index in indices:
        # half a frame early: the first frame at or after the seek point is frame `index`
        at = max(0.0, (index - 0.5) / rate)
        for frame in _decode(Path(path), size=size, input_args=["-ss", f"{at:.6f}"],
                             max_frames=1):  # fmt: skip
            yield index, frame


def iter_frames(
    path: PathLike,
    *,
    size: tuple[int, int] | None = None,
    vf: str | None = None,
) -> Iterator[np.ndarray]:
    """Stream RGB uint8 frames (H x W x 3) of ``path`` one at a time through a pipe.

    ``size=(w, h)`` scales inside ffmpeg; ``vf`` is an extra filter chain applied first (e.g.
    ``fps=2`` to sample). Only one frame is ever in Python memory; leaving the loop early kills
    ffmpeg.
    """
    if size is None:
        info = probe(path)
        size = (info.width, info.height)
    w, h = size
    chain = [vf] if vf else []
    chain.append(f"scale={w}:{h}:flags=area")
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
        "-i", str(path), "-map", "0:v:0", "-vf", ",".join(chain),
        "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
    ]  # fmt: skip
    frame_bytes = w * h * 3
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    finished = False
    try:
        while True:
            buf = proc.stdout.read(frame_bytes)
            if len(buf) < frame_bytes:
                break
            yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
        finished = True
    finally:
        if not finished:
            proc.kill()
        proc.stdout.close()
        err = proc.stderr.read()
        proc.stderr.close()
        code = proc.wait()
        if finished and code != 0:
            raise FFmpegError.of(f"decode {Path(path).name}", code, tail(err))
