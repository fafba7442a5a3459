"""Enhancement: upscale (Lanczos + unsharp), denoise (hqdn3d / nlmeans), frame interpolation.

All three are ffmpeg filters in one graph and one encode, so a clip is decoded and encoded
once whatever is asked. Order matters and is fixed: denoise first (noise would otherwise be
sharpened and interpolated), then interpolate, then upscale + sharpen last (motion estimation
finds the same motion on the smaller picture at a fraction of the cost: a 404x720 crop
delivered at 1080x1920 has 7x fewer pixels to search).

- **upscale**: ``scale`` with Lanczos to the target size (aspect kept, padded never: callers
  pass the film's size), followed by ``unsharp`` whose amount is ``sharpen`` (0 disables) to
  restore the edge contrast that resampling softens. A version that names a learned
  upscaler runs it instead of this step (:mod:`reelflow.editing.upscaler`).
- **denoise**: ``hqdn3d`` (fast, temporal+spatial; the default) or ``nlmeans`` (slower,
  better on grain); ``strength`` scales each filter's default parameters.
- **interpolate**: ``minterpolate`` motion-compensated (``mci``) to 48 or 60 fps; ``blend``
  is a cheap cross-fade alternative for previews.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from reelflow.media.encode import VideoEncode
from reelflow.media.ffmpeg import PathLike, fps_arg, run
from reelflow.media.probe import probe

__all__ = ["enhance", "enhance_filters"]


def enhance_filters(
    *,
    size: tuple[int, int] | None = None,
    sharpen: float = 0.8,
    denoise: Literal["hqdn3d", "nlmeans"] | None = None,
    strength: float = 1.0,
    fps: float | None = None,
    interpolation: Literal["mci", "blend"] = "mci",
) -> list[str]:
    """The filter chain :func:`enhance` runs (exposed so assembly or export can reuse it)."""
    chain: list[str] = []
    if denoise == "hqdn3d":
        s = strength
        chain.append(f"hqdn3d={4 * s:.2f}:{3 * s:.2f}:{6 * s:.2f}:{4.5 * s:.2f}")
    elif denoise == "nlmeans":
        chain.append(f"nlmeans=s={max(1.0, 3.0 * strength):.2f}:p=7:r=15")
    elif denoise is not None:
        raise ValueError(f"unknown denoiser {denoise!r}")
    if size is not None:
        w, h = size
        if w % 2 or h % 2:
            raise ValueError(f"yuv420p needs even dimensions, got {w}x{h}")
    if fps is not None:
        # minterpolate stops at the last input frame's timestamp (and drops a few before it);
        # cloned frames at the end let it run past the end, and the encode stops at the
        # exact frame count.
        chain.append("tpad=stop_mode=clone:stop_duration=0.25")
        if interpolation == "mci":
            chain.append(f"minterpolate=fps={fps_arg(fps)}:mi_mode=mci:mc_mode=aobmc:me_mode=bidir")
        else:
            chain.append(f"minterpolate=fps={fps_arg(fps)}:mi_mode=blend")
    if size is not None:
        chain.append(f"scale={size[0]}:{size[1]}:flags=lanczos")
        if sharpen > 0:
            chain.append(f"unsharp=5:5:{sharpen:.2f}:5:5:0")
    return chain


def enhance(
    video: PathLike,
    out: PathLike,
    *,
    size: tuple[int, int] | None = None,
    sharpen: float = 0.8,
    denoise: Literal["hqdn3d", "nlmeans"] | None = None,
    strength: float = 1.0,
    fps: float | None = None,
    interpolation: Literal["mci", "blend"] = "mci",
    crf: int = 18,
) -> Path:
    """Write an enhanced copy of ``video`` to ``out`` (H.264 yuv420p, audio copied).

    The duration is kept exactly: at ``fps`` the output has ``duration * fps`` frames.
    """
    chain = enhance_filters(
        size=size,
        sharpen=sharpen,
        denoise=denoise,
        strength=strength,
        fps=fps,
        interpolation=interpolation,
    )
    if not chain:
        raise ValueError("nothing to do: pass size, denoise or fps")
    out = Path(out)
    info = probe(video)
    frames = round(info.duration * (fps or info.fps))
    tmp = out.with_name(out.stem + ".tmp" + (out.suffix or ".mp4"))
    run(
        ["-i", str(video), "-map", "0:v:0", "-map", "0:a?", "-vf", ",".join(chain),
         *VideoEncode(crf=crf).args(), "-c:a", "copy", "-frames:v", str(frames),
         "-movflags", "+faststart", str(tmp)],
        what=f"enhance {Path(video).name}",
    )  # fmt: skip
    os.replace(tmp, out)
    return out
