"""Running ffmpeg for the edit: one place that builds commands, runs them, explains failures.

Every editing module goes through :func:`run` (an argument list) or :func:`run_graph` (an
ffmpeg-python graph), so that

- the binary is the one ``imageio-ffmpeg`` ships (pip only, no system ffmpeg, no ffprobe), or
  ``$REELFLOW_FFMPEG`` where a deployment wants one with hardware encoders;
- a failure raises :class:`FFmpegError` naming *what* was being done (``"assemble segment 3"``),
  the exit status and the last lines of ffmpeg's stderr -- the lines that say why -- with URL
  credentials and presigned-URL signatures removed, since inputs can be presigned S3 URLs;
- there is no progress output to parse (``-nostats``): the edit runs inside Prefect tasks whose
  logs should carry results, not carriage-return progress bars.

Probing is :func:`reelflow.videoio.probe` (re-exported); :func:`iter_frames` is a frame reader
that, unlike ``videoio.read_frames``, takes an arbitrary filter chain (``select`` for sampling).
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from reelflow import videoio

__all__ = [
    "FFmpegError",
    "ffmpeg_exe",
    "fps_arg",
    "has_encoder",
    "has_filter",
    "iter_frames",
    "probe",
    "run",
    "run_graph",
]

PathLike = str | os.PathLike[str]


class FFmpegError(videoio.FFmpegError):
    """ffmpeg failed; ``what`` says which step, ``stderr_tail`` the lines that explain it.

    A subclass of :class:`reelflow.videoio.FFmpegError`, so callers catch one type for both.
    """

    def __init__(self, what: str, returncode: int | None, stderr_tail: str) -> None:
        self.what = what
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        status = "could not start" if returncode is None else f"exited with {returncode}"
        super().__init__(f"ffmpeg ({what}) {status}:\n{stderr_tail}")


#: The ffmpeg binary (``$REELFLOW_FFMPEG`` or imageio-ffmpeg's): one override for the project.
ffmpeg_exe = videoio.ffmpeg_exe
#: ``probe(path) -> VideoInfo`` (width, height, fps, exact frame_count, duration, codec,
#: has_audio), from :mod:`reelflow.videoio`.
probe = videoio.probe


_USERINFO_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_QUERY_RE = re.compile(r"(?P<url>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?'\"]+)\?[^\s'\"]*")


def redact(text: str) -> str:
    """Remove ``user:password@`` and query strings (presigned signatures) from URLs in ``text``."""
    text = _USERINFO_RE.sub(r"\g<scheme>***@", text)
    return _QUERY_RE.sub(r"\g<url>?***", text)


def _tail(stderr: bytes | str, lines: int = 15) -> str:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return redact("\n".join(kept))


def run(args: Sequence[str], *, what: str, loglevel: str = "error") -> str:
    """Run ``ffmpeg <args>`` to completion and return its stderr (for analysis filters).

    ``args`` excludes the binary; ``-hide_banner -nostdin -nostats -y`` are added so the call
    never waits for a terminal, never prints progress and always overwrites its (temporary)
    output. ``loglevel="info"`` is what detection filters (blackdetect, loudnorm) need.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-y", "-loglevel", loglevel]
    cmd += [str(a) for a in args]
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False)
    except OSError as exc:  # binary missing or not executable
        raise FFmpegError(what, None, str(exc)) from exc
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise FFmpegError(what, proc.returncode, _tail(stderr))
    return stderr


def run_graph(stream: Any, *, what: str, loglevel: str = "error") -> str:
    """Run an ffmpeg-python output node (``ffmpeg.output(...)``) through :func:`run`.

    ffmpeg-python only builds the argument list here; running it ourselves keeps one error
    path and one set of default flags for every module.
    """
    import ffmpeg as ffmpeg_python

    args = ffmpeg_python.get_args(stream, overwrite_output=True)
    return run(args, what=what, loglevel=loglevel)


@functools.cache
def _listing(kind: str) -> str:
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", f"-{kind}"], capture_output=True, check=False
    )
    return proc.stdout.decode("utf-8", "replace")


def has_filter(name: str) -> bool:
    """Whether this ffmpeg build has filter ``name`` (static builds differ in what they carry)."""
    return any(
        len(parts) > 1 and parts[1] == name
        for parts in (line.split() for line in _listing("filters").splitlines())
    )


def has_encoder(name: str) -> bool:
    """Whether this ffmpeg build has encoder ``name`` (libx265, libsvtav1, ...)."""
    return any(
        len(parts) > 1 and parts[1] == name
        for parts in (line.split() for line in _listing("encoders").splitlines())
    )


def fps_arg(fps: float | Fraction) -> str:
    """A frame rate as an exact rational for ffmpeg: ``30000/1001``, not ``29.97``."""
    frac = Fraction(fps).limit_denominator(1001)
    return f"{frac.numerator}/{frac.denominator}"


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
            raise FFmpegError(f"decode {Path(path).name}", code, _tail(err))
