"""Wan 2.2 through diffusers' ``WanImageToVideoPipeline``, in both of its shapes.

- **A14B** (:class:`Wan22Backend`, backend ``wan22``): two experts of the same shape, the
  pipeline's ``transformer`` denoising the high-noise steps and ``transformer_2`` the low-noise
  ones, switched at ``boundary_ratio * num_train_timesteps``. There is no CLIP image encoder:
  the first frame (and a transition's last frame, ``last_image``) is conditioned in latent
  space, so first+last-frame transitions work with any A14B checkpoint.
  ``guidance_scale_2`` sets the low-noise expert's guidance (default: the same).
- **TI2V-5B** (:class:`Wan22TI2VBackend`, backend ``wan22-ti2v``): one transformer with
  ``expand_timesteps`` (the first frame's latents stay clean, the timestep is given per patch)
  and the Wan 2.2 VAE (48 latent channels, 16x spatial compression, so sizes snap to 32). With
  ``expand_timesteps`` the pipeline conditions on the first frame only and ignores
  ``last_image``, so a transition is refused (as ``validate`` refuses it from the declaration).

Sizing, chunking of long shots (each window starts on the previous one's last frame) and
retiming from the model's 16 or 24 fps to the film's are :class:`DiffusionVideoBackend`'s. A
checkpoint of the wrong shape is refused when it loads, naming the config key it lacks, before
any sampling is paid for.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from reelflow.motion.backends import ClipRequest
from reelflow.motion.capabilities import WAN22, WAN22_TI2V, BackendCapabilities
from reelflow.motion.diffusion import WanBackend
from reelflow.motion.latents import LatentCache

__all__ = ["Wan22Backend", "Wan22TI2VBackend"]


class Wan22Backend(WanBackend):
    """Wan 2.2 A14B image-to-video: two experts by noise level, last frame in latent space."""

    name = "wan22"
    capabilities: ClassVar[BackendCapabilities] = WAN22
    default_max_frames = 81  # ~5 s at 16 fps
    default_fps = 16.0
    default_steps = 40
    default_guidance = 4.0
    version = "1"

    def __init__(
        self, model: str | Path, *, guidance_scale_2: float | None = None, **options: Any
    ) -> None:
        super().__init__(model, **options)
        self.guidance_scale_2 = guidance_scale_2

    @property
    def pipe(self) -> Any:
        pipe = super().pipe
        self.check_shape(pipe)
        return pipe

    def check_shape(self, pipe: Any) -> None:
        """Refuse a checkpoint that is not the two-expert A14B shape (ValueError, one line)."""
        if pipe.transformer_2 is None or pipe.config.boundary_ratio is None:
            raise ValueError(
                f"{self.model} is not a Wan 2.2 A14B checkpoint (it needs transformer_2 and "
                "boundary_ratio); use backend wan for Wan 2.1 or wan22-ti2v for TI2V-5B"
            )

    @property
    def identity(self) -> dict[str, str]:
        return {**super().identity, **self.shape()}

    def shape(self) -> dict[str, str]:
        """What makes the loaded checkpoint this shape, for the clip's lineage."""
        return {"experts": "2", "boundary_ratio": f"{self.pipe.config.boundary_ratio:g}"}

    def _extra_call_args(self) -> dict[str, Any]:
        if self.guidance_scale_2 is None:
            return {}
        return {"guidance_scale_2": self.guidance_scale_2}


class Wan22TI2VBackend(Wan22Backend):
    """Wan 2.2 TI2V-5B image-to-video (``expand_timesteps``, the 48-channel Wan 2.2 VAE)."""

    name = "wan22-ti2v"
    capabilities: ClassVar[BackendCapabilities] = WAN22_TI2V
    default_max_frames = 121  # 5 s at 24 fps
    default_fps = 24.0
    default_steps = 50
    default_guidance = 5.0

    def check_shape(self, pipe: Any) -> None:
        if not pipe.config.expand_timesteps:
            raise ValueError(
                f"{self.model} is not a Wan 2.2 TI2V checkpoint (its pipeline config has no "
                "expand_timesteps); use backend wan22 for A14B or wan for Wan 2.1"
            )

    def shape(self) -> dict[str, str]:
        return {"expand_timesteps": "true", "vae_z_dim": str(self.pipe.vae.config.z_dim)}

    def _extra_call_args(self) -> dict[str, Any]:
        return {}

    def _generated(
        self,
        first: np.ndarray,
        last: np.ndarray | None,
        request: ClipRequest,
        size: tuple[int, int],
        latents: LatentCache | None = None,
    ) -> tuple[Iterator[np.ndarray], int]:
        if last is not None:  # the pipeline would silently ignore last_image
            raise ValueError(
                f"backend {self.name} ({self.model}) conditions on the first frame only "
                "(expand_timesteps ignores last_image); use wan22 or wan-vace for transitions"
            )
        return super()._generated(first, last, request, size, latents)
