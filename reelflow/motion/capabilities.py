"""What each video backend can do, declared up front so a storyboard is checked before a render.

A backend's :class:`BackendCapabilities` say which conditions it takes (first frame, last frame,
keyframes, reference images), whether it makes sound, how long one window is and what it does
with a longer shot, and the sizes and frame counts its model accepts. ``reelflow validate`` and
the flow's input check compare every shot with its backend's declaration and refuse, in one
line, a shot that asks for what the backend cannot do, instead of failing deep in a pipeline
after the stills were paid for.

This module is plain pydantic (no torch, no OpenCV), so the storyboard and the checks can read
it cheaply; :mod:`reelflow.motion.backends` adds the render functions.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BackendCapabilities",
    "LongVideo",
    "capabilities",
    "declare",
    "backends_with",
    "declared_backends",
]

#: what a backend does with a shot longer than one window: nothing (refused), chained windows
#: (each starts on the previous window's last frame), or the model's own diffusion forcing
LongVideo = Literal["none", "chained-windows", "diffusion-forcing"]


class BackendCapabilities(BaseModel):
    """One backend's declared abilities and constraints.

    Frame counts per window are ``frame_step * k + frame_offset`` (LTX 8k+1, Wan 4k+1) up to
    ``max_frames``, counted at ``native_fps`` (the rate the model moves at; the clip is retimed
    to the film's fps). ``snaps_size``: the backend generates at the nearest multiple of
    ``size_multiple`` and resizes to the film's size; without it a size that is not a multiple
    is refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    pipeline: str | None = Field(None, description="the diffusers pipeline class; None: no model")
    available: bool = True
    unavailable_reason: str = Field("", description="why a declared backend cannot render yet")
    first_frame: bool = True
    last_frame: bool = Field(False, description="ends on a given frame (first+last transitions)")
    keyframes: bool = Field(False, description="conditions on frames at any index")
    audio: bool = Field(False, description="generates the clip's sound with the picture")
    reference_images: bool = Field(False, description="conditions on reference images (identity)")
    max_frames: int | None = Field(None, ge=1, description="frames per window; None: unlimited")
    long_video: LongVideo = "none"
    size_multiple: int = Field(2, ge=1)
    frame_step: int = Field(1, ge=1)
    frame_offset: int = Field(0, ge=0)
    native_fps: float | None = Field(None, gt=0, description="None: renders the film's fps")
    fps_range: tuple[float, float] = Field(
        (1.0, 120.0), description="frame rates the model generates at (the clip is retimed)"
    )
    snaps_size: bool = True

    @property
    def needs_model(self) -> bool:
        """A diffusers backend renders only with a model the run names."""
        return self.pipeline is not None

    def window_seconds(self, fps: float) -> float | None:
        """Length of one window in seconds (None: unlimited) at the film's ``fps``."""
        if self.max_frames is None:
            return None
        return self.max_frames / (self.native_fps or fps)

    def windows(self, duration: float, fps: float) -> int:
        """Windows a shot of ``duration`` seconds takes (chained windows overlap by a frame)."""
        if self.max_frames is None:
            return 1
        frames = max(1, round(duration * (self.native_fps or fps)))
        if frames <= self.max_frames:
            return 1
        return 1 + math.ceil((frames - self.max_frames) / max(1, self.max_frames - 1))

    def generation_size(self, width: int, height: int) -> tuple[int, int]:
        """The size a snapping backend generates at for a film of ``width x height``."""
        m = self.size_multiple
        return max(m, round(width / m) * m), max(m, round(height / m) * m)

    def summary(self, duration: float, width: int, height: int, fps: float) -> str:
        """One line for `reelflow plan`: how a shot of this length and size is rendered."""
        parts = [f"backend {self.name}" + (f" ({self.pipeline})" if self.pipeline else "")]
        windows = self.windows(duration, fps)
        if windows > 1 and self.long_video == "diffusion-forcing":  # its windows overlap more
            parts.append(f"one call, diffusion forcing over windows of {self.max_frames} frames")
        elif windows > 1:
            parts.append(f"{windows} windows of <= {self.max_frames} frames ({self.long_video})")
        gw, gh = self.generation_size(width, height)
        if (gw, gh) != (width, height):
            parts.append(f"generated at {gw}x{gh} (multiples of {self.size_multiple}), "
                         f"resized to {width}x{height}")  # fmt: skip
        if self.native_fps and self.native_fps != fps:
            parts.append(f"moves at {self.native_fps:g} fps, retimed to {fps:g}")
        if not self.available:
            parts.append(f"not wired in this version: {self.unavailable_reason}")
        return ", ".join(parts)


_DECLARED: dict[str, BackendCapabilities] = {}


def declare(capabilities: BackendCapabilities) -> BackendCapabilities:
    """Add (or replace) a backend's declaration; :func:`register_backend` calls this."""
    _DECLARED[capabilities.name] = capabilities
    return capabilities


def declared_backends() -> list[str]:
    """Every declared backend, wired or not."""
    return sorted(_DECLARED)


def capabilities(name: str) -> BackendCapabilities:
    """The declaration of backend ``name`` (KeyError naming the known ones)."""
    try:
        return _DECLARED[name]
    except KeyError:
        raise KeyError(
            f"unknown video backend {name!r}; have {', '.join(declared_backends())}"
        ) from None


def backends_with(flag: str) -> str:
    """The backends that declare ``flag``, for the hint in a refusal ("wan-vace (not wired)")."""
    names = [
        name + ("" if caps.available else " (not wired)")
        for name, caps in sorted(_DECLARED.items())
        if getattr(caps, flag)
    ]
    return ", ".join(names) or "none"


_NOT_WIRED = "declared but not wired in this version"

# -- the declarations ----------------------------------------------------------------------------
# Constraints read from diffusers 0.42.1: the pipelines' `check_inputs` (size multiples), their
# `num_frames` rounding (the VAE's temporal compression) and their `__call__` defaults.

ANIMATIC = declare(BackendCapabilities(
    name="animatic",
    description="OpenCV camera moves over a still; an optical-flow morph between first and last "
    "frames. No model, CPU, any length in one pass.",
    last_frame=True,
    size_multiple=2,  # yuv420p
))

LTX = declare(BackendCapabilities(
    name="ltx",
    description="LTX-Video 0.9: image conditions at any frame index (first, last).",
    pipeline="LTXConditionPipeline",
    last_frame=True,
    keyframes=True,
    max_frames=121,  # ~5 s at 24 fps, the trained range (profile option max_frames)
    long_video="chained-windows",
    size_multiple=32,  # check_inputs: height and width divisible by 32
    frame_step=8,  # VAE temporal compression: 8k+1 frames
    frame_offset=1,
    native_fps=24.0,
))

WAN = declare(BackendCapabilities(
    name="wan",
    description="Wan 2.1/2.2 image-to-video; last_image with an FLF2V or Wan 2.2 checkpoint "
    "(a Wan 2.1 I2V checkpoint refuses a last frame when it loads).",
    pipeline="WanImageToVideoPipeline",
    last_frame=True,
    max_frames=81,  # ~5 s at 16 fps
    long_video="chained-windows",
    size_multiple=16,  # vae_scale_factor_spatial 8 x patch 2
    frame_step=4,  # 4k+1 frames
    frame_offset=1,
    native_fps=16.0,
))

LTX2 = declare(BackendCapabilities(
    name="ltx2",
    description="LTX-2: LTX2VideoCondition(frames, index, strength) at any latent index (first, "
    "last, keyframes) and the clip's audio generated with the picture (vocoder waveform).",
    pipeline="LTX2ConditionPipeline",
    last_frame=True,
    keyframes=True,
    audio=True,
    max_frames=121,  # one call (reelflow/motion/ltx2.py: ~5 s at 24 fps); longer: windows
    long_video="chained-windows",  # a video condition at index 0 continues the previous window
    size_multiple=32,  # check_inputs: divisible by 32
    frame_step=8,  # num_frames default 121 = 8*15+1
    frame_offset=1,
    native_fps=24.0,  # frame_rate default
    fps_range=(1.0, 60.0),
))

WAN22 = declare(BackendCapabilities(
    name="wan22",
    description="Wan 2.2 A14B image-to-video (reelflow/motion/wan22.py): two experts by noise "
    "level (transformer_2, boundary_ratio); last_image conditioned in latent space.",
    pipeline="WanImageToVideoPipeline",
    last_frame=True,
    max_frames=81,  # num_frames default
    long_video="chained-windows",
    size_multiple=16,
    frame_step=4,
    frame_offset=1,
    native_fps=16.0,
))

WAN22_TI2V = declare(BackendCapabilities(
    name="wan22-ti2v",
    description="Wan 2.2 TI2V-5B (reelflow/motion/wan22.py, expand_timesteps, the 48-channel "
    "Wan 2.2 VAE): first frame only; with expand_timesteps the pipeline conditions on the "
    "image alone and ignores last_image.",
    pipeline="WanImageToVideoPipeline",
    last_frame=False,
    max_frames=121,  # TI2V-5B's 5 s at 24 fps (the pipeline's default 81 is the A14B's)
    long_video="chained-windows",
    size_multiple=32,  # the Wan 2.2 VAE compresses 16x, patch 2
    frame_step=4,
    frame_offset=1,
    native_fps=24.0,
))

WAN_VACE = declare(BackendCapabilities(
    name="wan-vace",
    description="Wan VACE (reelflow/motion/vace.py): reference_images (the shot's characters' "
    "library references) plus frames placed by a video and mask (first, last, any index).",
    pipeline="WanVACEPipeline",
    last_frame=True,
    keyframes=True,
    reference_images=True,
    max_frames=81,
    long_video="chained-windows",
    size_multiple=16,  # check_inputs: vae_scale_factor_spatial x patch_size
    frame_step=4,
    frame_offset=1,
    native_fps=16.0,
))

SKYREELS_DF = declare(BackendCapabilities(
    name="skyreels-v2-df",
    description="SkyReels-V2 diffusion forcing (reelflow/motion/skyreels.py, image-to-video): "
    "the whole shot in one call, extended past one window (base_num_frames, overlap_history, "
    "ar_step, addnoise_condition) without restarting from a last frame. First frame only: "
    "the pipeline's last_image fails past one window in diffusers 0.42.1.",
    pipeline="SkyReelsV2DiffusionForcingImageToVideoPipeline",
    last_frame=False,
    max_frames=97,  # base_num_frames default
    long_video="diffusion-forcing",
    size_multiple=16,
    frame_step=4,
    frame_offset=1,
    native_fps=24.0,  # fps default
))
