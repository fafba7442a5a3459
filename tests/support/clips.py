"""Test clips made by ffmpeg's lavfi sources: H.264 (ultrafast, yuv420p), seconds to make."""

from __future__ import annotations

from pathlib import Path

from reelflow.media.ffmpeg import run


def lavfi_clip(path: Path, source: str, duration: float, size: str = "320x180", rate: int = 24,
               *, vf: str | None = None) -> Path:
    """Encode `source` (a lavfi source with its own options, e.g. `color=c=red` or `testsrc2`;
    not size/rate/duration) to `path`, through the filter chain `vf` when given."""
    sep = ":" if "=" in source else "="
    run(
        ["-f", "lavfi", "-i", f"{source}{sep}size={size}:rate={rate}:duration={duration}",
         *(["-vf", vf] if vf else []),
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)],
        what=f"make test clip {path.name}",
    )  # fmt: skip
    return path
