"""Running ffmpeg for the edit: one place that builds commands, runs them, explains failures.

Every editing module goes through :func:`run` (an argument list; encoder arguments come from
:mod:`reelflow.media.encode`), so that

- the binary is the one ``imageio-ffmpeg`` ships (pip only, no system ffmpeg, no ffprobe), or
  ``$REELFLOW_FFMPEG`` where a deployment wants one with hardware encoders;
- a failure raises :class:`FFmpegError` naming *what* was being done (``"assemble segment 3"``),
  the exit status and the last lines of ffmpeg's stderr -- the lines that say why -- with URL
  credentials and presigned-URL signatures removed, since inputs can be presigned S3 URLs;
- there is no progress output to parse (``-nostats``): the edit runs inside Prefect tasks whose
  logs should carry results, not carriage-return progress bars.

Probing is :mod:`reelflow.media.probe`; streaming frames is :mod:`reelflow.media.frames`.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from collections.abc import Sequence
from fractions import Fraction

from reelflow.errors import StageError

__all__ = [
    "FFmpegError",
    "ffmpeg_exe",
    "fps_arg",
    "has_encoder",
    "has_filter",
    "run",
    "tail",
]

PathLike = str | os.PathLike[str]


class FFmpegError(StageError):
    """ffmpeg failed; ``what`` says which step, ``stderr_tail`` the lines that explain it.

    ``FFmpegError("message")`` for a failure found without running a command (no video
    stream, a truncated frame); ``FFmpegError.of(what, returncode, stderr_tail)`` for a command.
    """

    def __init__(
        self, message: str, *, what: str = "", returncode: int | None = None, stderr_tail: str = ""
    ) -> None:
        self.what = what
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        super().__init__(message)

    @classmethod
    def of(cls, what: str, returncode: int | None, stderr_tail: str) -> FFmpegError:
        status = "could not start" if returncode is None else f"exited with {returncode}"
        return cls(
            f"ffmpeg ({what}) {status}:\n{stderr_tail}",
            what=what,
            returncode=returncode,
            stderr_tail=stderr_tail,
        )


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


_USERINFO_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_QUERY_RE = re.compile(r"(?P<url>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?'\"]+)\?[^\s'\"]*")


def redact(text: str) -> str:
    """Remove ``user:password@`` and query strings (presigned signatures) from URLs in ``text``."""
    text = _USERINFO_RE.sub(r"\g<scheme>***@", text)
    return _QUERY_RE.sub(r"\g<url>?***", text)


def tail(stderr: bytes | str, lines: int = 15) -> str:
    """The last non-empty lines of ffmpeg's stderr, with URL secrets removed."""
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
        raise FFmpegError.of(what, None, str(exc)) from exc
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise FFmpegError.of(what, proc.returncode, tail(stderr))
    return stderr


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
