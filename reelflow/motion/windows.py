"""The window plan of a clip: how many model calls make it, how long each is, and how they join.

A model makes at most ``max_frames`` frames per call (its window). A shot longer than that uses
the backend's declared long-video method (:data:`reelflow.motion.capabilities.LongVideo`): the
fallback every diffusers image-to-video backend here has is *chained windows*, each window
conditioned on the previous window's last frame, which it therefore makes again and which is
dropped once at the seam (no duplicated frame). The plan is recorded in the clip's lineage and
shown in the clips review, so a reviewer knows a long shot was stitched.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

__all__ = ["WindowPlan", "plan_windows"]

Method = Literal["single", "chained-windows", "diffusion-forcing"]


class WindowPlan(BaseModel):
    """Frames each model call makes, and how the calls join into ``output_frames``."""

    model_config = ConfigDict(frozen=True)

    method: Method
    windows: list[int] = Field(min_length=1, description="frames each call makes, in order")
    overlap: int = Field(1, ge=0, description="frames a window shares with the previous one")
    native_fps: float = Field(gt=0, description="rate the model moves at")
    output_frames: int = Field(ge=1, description="frames of the clip, after retiming")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def generated_frames(self) -> int:
        """Frames the calls make together, each seam counted once."""
        return self.windows[0] + sum(w - self.overlap for w in self.windows[1:])

    def describe(self) -> str:
        """One line for the review: ``3 chained windows (9+9+9 frames, seams of 1) ...``."""
        if self.method == "single":
            return f"1 window of {self.windows[0]} frames -> {self.output_frames} frames"
        label = "fallback: chained windows" if self.method == "chained-windows" else self.method
        return (
            f"{len(self.windows)} windows, {label} "
            f"({'+'.join(map(str, self.windows))} frames, seams of {self.overlap}) -> "
            f"{self.generated_frames} generated, {self.output_frames} frames"
        )


def plan_windows(
    windows: list[int], *, native_fps: float, output_frames: int, long_video: str
) -> WindowPlan:
    """The plan for per-call frame counts ``windows`` (from ``BackendConstraints.chunks``).

    More than one window needs a long-video method: ``"none"`` is refused here (``validate``
    refuses it earlier, naming the shot); ``"chained-windows"`` is the declared fallback."""
    if len(windows) == 1:
        method: Method = "single"
    elif long_video == "none":
        raise ValueError(
            f"{output_frames} frames need {len(windows)} windows and the backend has no "
            "long-video method"
        )
    else:
        method = "chained-windows"  # diffusion forcing is declared (SkyReels-V2), not wired
    return WindowPlan(method=method, windows=windows, native_fps=native_fps,
                      output_frames=output_frames)  # fmt: skip
