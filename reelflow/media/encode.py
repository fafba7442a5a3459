"""Video encode settings: the one place the edit's encoder arguments are written.

A film is encoded in parts (shot bodies, transitions, version parts) that are joined by stream
copy, and a cached part must be reusable in any later film. Both hold only when every part is
encoded with the same codec parameters, so every encode of the edit -- clips written frame by
frame, parts, enhanced, reframed and captioned versions -- takes its video arguments from
:class:`VideoEncode` instead of spelling them out.

Determinism: x264's output depends on its thread count, so parts that are cached and shared
between machines fix ``threads`` and set ``bitexact`` (no encoder version string in the
stream), which makes the same inputs give the same bytes on every worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from reelflow.media.ffmpeg import has_encoder

__all__ = ["DEFAULT_CRF", "Codec", "VideoEncode"]

Codec = Literal["h264", "h265", "av1"]

#: Quality per codec when none is given: about the same picture at each codec's own scale.
DEFAULT_CRF: dict[str, int] = {"h264": 18, "h265": 22, "av1": 32}


class VideoEncode(BaseModel):
    """How one video stream is encoded (always yuv420p, what every player decodes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    codec: Codec = "h264"
    crf: int | None = Field(None, ge=0, le=63, description="None: the codec's DEFAULT_CRF")
    preset: str = Field("medium", description="x264/x265 speed preset (AV1 uses its own)")
    threads: int | None = Field(None, ge=1, description="fixed for parts shared between machines")
    bitexact: bool = Field(False, description="no version strings: same input, same bytes")
    mp4_tag: bool = Field(True, description="tag H.265 `hvc1` (MP4 only: MPEG-TS has no tag)")

    def args(self, *, available: Callable[[str], bool] = has_encoder) -> list[str]:
        """The ffmpeg output arguments for the video stream, in a fixed order.

        ``available`` says whether this ffmpeg build has an encoder (H.265 and AV1 are not in
        every build); H.264 needs no lookup."""
        crf = str(self.crf if self.crf is not None else DEFAULT_CRF[self.codec])
        if self.codec == "h264":
            args = ["-c:v", "libx264", "-preset", self.preset, "-crf", crf]
        elif self.codec == "h265":
            if not available("libx265"):
                raise RuntimeError("this ffmpeg build has no libx265")
            args = ["-c:v", "libx265", "-preset", self.preset, "-crf", crf,
                    "-x265-params", "log-level=error"]  # fmt: skip
            if self.mp4_tag:  # Apple players play H.265 in MP4 only when tagged hvc1
                args += ["-tag:v", "hvc1"]
        elif available("libsvtav1"):
            args = ["-c:v", "libsvtav1", "-preset", "8", "-crf", crf]
        elif available("libaom-av1"):
            args = ["-c:v", "libaom-av1", "-cpu-used", "8", "-row-mt", "1", "-crf", crf]
        else:
            raise RuntimeError("this ffmpeg build has no AV1 encoder")
        args += ["-pix_fmt", "yuv420p"]
        if self.threads is not None:
            args += ["-threads", str(self.threads)]
        if self.bitexact:
            args += ["-fflags", "+bitexact", "-flags:v", "+bitexact"]
        return args
