"""SkyReels-V2 diffusion forcing: a long shot in one call, without the seam of a restart.

diffusers' ``SkyReelsV2DiffusionForcingImageToVideoPipeline`` denoises a shot longer than its
window (``base_num_frames``) window after window inside one call: each later window keeps the
last ``overlap_history`` frames' latents as its history (noised by ``addnoise_condition`` so
errors do not pile up) and denoises only what follows, every latent frame at its own noise
level (``ar_step`` > 0: asynchronous, each frame a few steps behind the one before). Chained
windows (:mod:`reelflow.motion.diffusion`) restart each window from one decoded frame instead;
here the motion carries on through the latents.

The backend animates the shot's still (image-to-video): the whole shot is one window of the
plan's method ``diffusion-forcing`` (:func:`reelflow.motion.windows.plan_diffusion_forcing`,
its parameters in the clip's lineage and the clips review). It samples with
``output_type="latent"``, so the shot's latents are kept (a failed decode resumes from them)
and decoded a few latent frames at a time by the Wan VAE, as :class:`WanBackend` does.

A transition's last frame is refused: in diffusers 0.42.1 ``last_image`` is appended after the
generated frames and its long-video path fails with a shape error past one window.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from reelflow.motion.backends import ClipRequest
from reelflow.motion.capabilities import SKYREELS_DF, BackendCapabilities
from reelflow.motion.common import cover_fit
from reelflow.motion.diffusion import WanBackend
from reelflow.motion.latents import LatentCache
from reelflow.motion.windows import WindowPlan, plan_diffusion_forcing

__all__ = ["SkyReelsDFBackend"]


class SkyReelsDFBackend(WanBackend):
    """SkyReels-V2 diffusion forcing, image-to-video. ``max_frames`` is the window
    (``base_num_frames``); ``overlap_history`` frames of history join windows;
    ``addnoise_condition`` noises that history (20 recommended); ``ar_step`` 0 denoises a
    window's frames together, 5 asynchronously (with ``causal_block_size`` 5).

    A Wan model underneath (Wan 2.1 VAE, Wan-shaped transformer): sizes, latent scale and the
    chunked decode are :class:`WanBackend`'s; the call and the one-call plan are its own."""

    name = "skyreels-v2-df"
    capabilities: ClassVar[BackendCapabilities] = SKYREELS_DF
    pipeline_class = "SkyReelsV2DiffusionForcingImageToVideoPipeline"
    default_max_frames = 97  # base_num_frames default: ~4 s at 24 fps
    default_fps = 24.0
    default_steps = 30
    default_guidance = 5.0
    version = "1"

    def __init__(
        self,
        model: str | Path,
        *,
        overlap_history: int = 17,
        addnoise_condition: float = 20.0,
        ar_step: int = 0,
        causal_block_size: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, **options)
        if overlap_history < 1 or overlap_history >= self.max_frames:
            raise ValueError(
                f"overlap_history must be 1..{self.max_frames - 1} (below the window of "
                f"{self.max_frames} frames), not {overlap_history}"
            )
        self.overlap_history = overlap_history
        self.addnoise_condition = addnoise_condition
        self.ar_step = ar_step
        self.causal_block_size = causal_block_size

    @property
    def identity(self) -> dict[str, str]:
        return {**super().identity, "method": "diffusion-forcing"}

    def forcing_parameters(self) -> dict[str, int | float]:
        """The long-video settings the call is given, for the plan (lineage and review)."""
        params: dict[str, int | float] = {
            "base_num_frames": self.constraints.fit_frames(self.max_frames),
            "overlap_history": self.overlap_history,
            "ar_step": self.ar_step,
            "addnoise_condition": self.addnoise_condition,
        }
        if self.causal_block_size is not None:
            params["causal_block_size"] = self.causal_block_size
        return params

    def shot_frames(self, request: ClipRequest) -> int:
        """Frames the one call makes: the shot at the model's rate, snapped to 4k+1."""
        c = self.constraints
        k = math.ceil((self.native_frames(request) - c.frame_offset) / c.frame_step)
        return c.frame_step * max(1, k) + c.frame_offset

    def window_plan(self, request: ClipRequest) -> WindowPlan:
        params = self.forcing_parameters()
        return plan_diffusion_forcing(
            self.shot_frames(request),
            base_num_frames=int(params["base_num_frames"]),
            overlap_history=self.overlap_history,
            temporal=self.constraints.frame_step,
            native_fps=self.native_fps or request.fps,
            output_frames=request.n_frames,
            parameters=params,
        )

    def _invoke(
        self,
        first: Image.Image,
        last: Image.Image | None,
        *,
        num_frames: int,
        width: int,
        height: int,
        request: ClipRequest,
        seed: int,
        output_type: str,
    ) -> Any:
        """The whole shot in one call: the pipeline runs its windows itself."""
        pipe = self.pipe
        args = self._pipeline_args(request, num_frames=num_frames, width=width, height=height,
                                   seed=seed, output_type=output_type)  # fmt: skip
        assert self._lock is not None
        with self._lock:
            return pipe(
                image=first,
                base_num_frames=self.constraints.fit_frames(self.max_frames),
                overlap_history=self.overlap_history,
                addnoise_condition=self.addnoise_condition,
                ar_step=self.ar_step,
                causal_block_size=self.causal_block_size,
                fps=round(self.native_fps or request.fps),
                **args,
            )[0]

    def _generated(
        self,
        first: np.ndarray,
        last: np.ndarray | None,
        request: ClipRequest,
        size: tuple[int, int],
        latents: LatentCache | None = None,
    ) -> tuple[Iterator[np.ndarray], int]:
        """One call for the whole shot (window 0 of the latent cache), however many windows
        the pipeline denoises inside it."""
        if last is not None:
            raise ValueError(
                f"backend {self.name} ({self.model}) animates a first frame only (diffusers' "
                "last_image fails past one window); use wan22 or wan-vace for transitions"
            )
        plan = self.window_plan(request)
        self.last_chunks = [self.shot_frames(request)]
        self.last_generation_size = size
        cond = Image.fromarray(cover_fit(first, *size))

        def frames() -> Iterator[np.ndarray]:
            made = 0
            for frame in self._window(0, cond, None, num_frames=self.shot_frames(request),
                                      size=size, request=request, latents=latents):  # fmt: skip
                made += 1
                yield frame
            if made != plan.generated_frames:
                raise RuntimeError(f"{self.name} returned {made} frames, not "
                                   f"{plan.generated_frames}")  # fmt: skip

        return frames(), plan.generated_frames
