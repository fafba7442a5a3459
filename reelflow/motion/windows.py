"""The window plan of a clip: how many model calls make it, how long each is, and how they join.

A model makes at most ``max_frames`` frames per call (its window). A shot longer than that uses
the backend's declared long-video method (:data:`reelflow.motion.capabilities.LongVideo`): the
fallback every diffusers image-to-video backend here has is *chained windows*, each window
conditioned on the previous window's last frame, which it therefore makes again and which is
dropped once at the seam (no duplicated frame). A backend with the model's own method
(SkyReels-V2 *diffusion forcing*) makes the whole shot in one call instead: each window after
the first is denoised with the previous window's last latent frames as its clean history, so
there is no restart from a single frame (:func:`plan_diffusion_forcing`). The plan is recorded
in the clip's lineage and shown in the clips review, so a reviewer knows how a long shot was
made.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

__all__ = ["WindowPlan", "plan_diffusion_forcing", "plan_windows"]

Method = Literal["single", "chained-windows", "diffusion-forcing"]


class WindowPlan(BaseModel):
    """Frames each model call makes, and how the calls join into ``output_frames``."""

    model_config = ConfigDict(frozen=True)

    method: Method
    windows: list[int] = Field(min_length=1, description="frames each call makes, in order")
    overlap: int = Field(1, ge=0, description="frames a window shares with the previous one")
    native_fps: float = Field(gt=0, description="rate the model moves at")
    output_frames: int = Field(ge=1, description="frames of the clip, after retiming")
    parameters: dict[str, int | float] | None = Field(
        None, description="the long-video method's own settings (diffusion forcing's "
        "base_num_frames, overlap_history, ar_step, addnoise_condition)",
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def generated_frames(self) -> int:
        """Frames the calls make together, each seam counted once."""
        return self.windows[0] + sum(w - self.overlap for w in self.windows[1:])

    def describe(self) -> str:
        """One line for the review: ``3 chained windows (9+9+9 frames, seams of 1) ...``."""
        if self.method == "single":
            return f"1 window of {self.windows[0]} frames -> {self.output_frames} frames"
        label = {"chained-windows": "fallback: chained windows",
                 "diffusion-forcing": "diffusion forcing in one call"}[self.method]  # fmt: skip
        settings = ", ".join(f"{k} {v:g}" for k, v in (self.parameters or {}).items())
        return (
            f"{len(self.windows)} windows, {label} "
            f"({_runs(self.windows)} frames, seams of {self.overlap}"
            f"{'; ' + settings if settings else ''}) -> "
            f"{self.generated_frames} generated, {self.output_frames} frames"
        )


def _runs(windows: list[int]) -> str:
    """``9+12+12+12+5`` as ``9+12x3+5``: a 20 s shot's plan stays one readable line."""
    parts: list[str] = []
    index = 0
    while index < len(windows):
        end = index
        while end < len(windows) and windows[end] == windows[index]:
            end += 1
        count = end - index
        parts += [f"{windows[index]}x{count}"] if count >= 3 else [str(windows[index])] * count
        index = end
    return "+".join(parts)


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
    else:  # a diffusion-forcing backend plans with plan_diffusion_forcing
        method = "chained-windows"
    return WindowPlan(method=method, windows=windows, native_fps=native_fps,
                      output_frames=output_frames)  # fmt: skip


def plan_diffusion_forcing(
    num_frames: int,
    *,
    base_num_frames: int,
    overlap_history: int,
    temporal: int,
    native_fps: float,
    output_frames: int,
    parameters: dict[str, int | float] | None = None,
) -> WindowPlan:
    """The windows SkyReels-V2's diffusion forcing denoises for one call of ``num_frames``.

    Counted as diffusers 0.42.1's pipeline counts them, in latent frames (``temporal`` pixel
    frames each, the first one frame): the first window is ``base_num_frames``; each later one
    re-reads the last ``overlap_history`` frames' latents as history and adds up to the rest.
    In pixel frames a later window is ``temporal`` times its latent frames and its seam the
    history's latent frames times ``temporal``, so ``generated_frames`` is the call's output.
    """
    latent = (num_frames - 1) // temporal + 1
    base = (base_num_frames - 1) // temporal + 1
    overlap = (overlap_history - 1) // temporal + 1
    if num_frames <= base_num_frames:
        windows = [1 + (latent - 1) * temporal]
    else:
        if overlap >= base:
            raise ValueError(f"overlap_history {overlap_history} leaves no new frames in a "
                             f"window of base_num_frames {base_num_frames}")  # fmt: skip
        calls = 1 + (latent - base - 1) // (base - overlap) + 1
        windows = [1 + (base - 1) * temporal]
        for index in range(1, calls):
            left = latent - (index * (base - overlap) + overlap)
            windows.append(min(left + overlap, base) * temporal)
    return WindowPlan(
        method="diffusion-forcing" if len(windows) > 1 else "single",
        windows=windows,
        overlap=overlap * temporal if len(windows) > 1 else 1,
        native_fps=native_fps,
        output_frames=output_frames,
        parameters=parameters,
    )
