"""Wan VACE through diffusers' ``WanVACEPipeline``: a clip that keeps a character's identity.

VACE conditions a clip on two things at once:

- **reference images** (``reference_images``): the character library's references of the
  shot's characters (:attr:`ClipRequest.reference_images`, filled by the clip job), encoded
  as extra latent frames in front of the clip, which the pipeline drops before decoding. This
  is the video side of the character lock that the IP-Adapter gives the stills; the
  character's version is in the clip's job key, so a changed reference re-renders exactly the
  shots it is in.
- **a control video and its mask** (``video``, ``mask``): the frames to keep are given and
  masked black, the frames to generate are grey and masked white. A shot keeps its still as
  frame 0; a first+last-frame transition keeps its last frame too, at the window's last index.

Sizes snap to 16 (the VAE's 8x times the patch's 2), frames to 4k+1; long shots chain windows,
each starting on the previous window's last frame (:class:`DiffusionVideoBackend`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from reelflow.media.probe import VideoInfo
from reelflow.motion.backends import ClipRequest
from reelflow.motion.capabilities import WAN_VACE, BackendCapabilities
from reelflow.motion.diffusion import (
    DiffusionVideoBackend,
    decode_wan_video,
    wan_vae_scale,
)
from reelflow.motion.latents import LatentCache

__all__ = ["WanVACEBackend", "control_video"]

#: the grey of a frame to generate (the pipeline normalises [0, 255] to [-1, 1]: about 0)
_GREY = (128, 128, 128)


def control_video(
    first: Image.Image, last: Image.Image | None, num_frames: int
) -> tuple[list[Image.Image], list[Image.Image]]:
    """(frames, masks) of one VACE call: ``first`` kept at index 0, ``last`` (if any) at the
    last index, grey frames to generate between. Black mask: keep; white: generate."""
    size = first.size
    keep, make = Image.new("L", size, 0), Image.new("L", size, 255)
    grey = Image.new("RGB", size, _GREY)
    frames = [first, *[grey] * (num_frames - 1)]
    masks = [keep, *[make] * (num_frames - 1)]
    if last is not None:
        frames[-1], masks[-1] = last.resize(size), keep
    return frames, masks


class WanVACEBackend(DiffusionVideoBackend):
    """Wan VACE: the shot's still (and a transition's last frame) placed by a control video,
    the characters' reference images as identity. ``conditioning_scale``: the VACE blocks'
    weight; ``max_references``: references per clip (each adds a latent frame)."""

    name = "wan-vace"
    capabilities: ClassVar[BackendCapabilities] = WAN_VACE
    pipeline_class = "WanVACEPipeline"
    default_max_frames = 81  # ~5 s at 16 fps
    default_fps = 16.0
    default_steps = 30
    default_guidance = 5.0
    default_negative = "blurry, static, distorted, low quality, jittery"
    saves_latents = True

    def __init__(
        self,
        model: str | Path,
        *,
        conditioning_scale: float = 1.0,
        max_references: int = 3,
        **options: Any,
    ) -> None:
        super().__init__(model, **options)
        self.conditioning_scale = conditioning_scale
        self.max_references = max_references
        self._local = threading.local()  # per render: the request's reference images

    def _compression(self) -> tuple[int, int]:
        p = self.pipe
        patch = (p.transformer or p.transformer_2).config.patch_size
        return p.vae_scale_factor_spatial * int(patch[1]), p.vae_scale_factor_temporal

    @property
    def identity(self) -> dict[str, str]:
        return {**super().identity, "conditioning_scale": f"{self.conditioning_scale:g}"}

    def references(self, request: ClipRequest) -> list[Image.Image]:
        """The request's reference images as RGB (at most ``max_references``)."""
        images = []
        for path in request.reference_images[: self.max_references]:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        return images

    def _render(
        self,
        first: np.ndarray,
        last: np.ndarray | None,
        request: ClipRequest,
        out: Path,
        latents: LatentCache | None = None,
    ) -> VideoInfo:
        self._local.references = self.references(request)
        return super()._render(first, last, request, out, latents)

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
        """One pipeline call: the still (and last frame) in a control video, the shot's
        references beside it; its output as asked."""
        pipe = self.pipe
        video, mask = control_video(first, last, num_frames)
        references = getattr(self._local, "references", [])
        args = self._pipeline_args(request, num_frames=num_frames, width=width, height=height,
                                   seed=seed, output_type=output_type)  # fmt: skip
        assert self._lock is not None
        with self._lock:
            return pipe(video=video, mask=mask, reference_images=references or None,
                        conditioning_scale=self.conditioning_scale, **args)[0]  # fmt: skip

    def _sample(
        self,
        first: Image.Image,
        last: Image.Image | None,
        *,
        num_frames: int,
        width: int,
        height: int,
        request: ClipRequest,
        seed: int,
    ) -> dict[str, Any]:
        out = self._invoke(first, last, num_frames=num_frames, width=width, height=height,
                           request=request, seed=seed, output_type="latent")  # fmt: skip
        # The reference images ride in front of the video's latent frames: not the clip's.
        refs = len(getattr(self._local, "references", []))
        return {"video": wan_vae_scale(self.pipe, out[:, :, refs:])}

    def _decode_window(self, tensors: dict[str, Any], request: ClipRequest) -> Iterator[np.ndarray]:
        return decode_wan_video(self, tensors["video"])
