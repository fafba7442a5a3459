"""Model blocks: which image and video models a deployment renders with.

Configuration lives here, not in code: a storyboard names its look (`style.model`), and a block
saved on the Prefect server says where that model is on the workers (a local diffusers folder, a
single `.safetensors` file, or a hub id already in the local cache — never a download), its dtype
and device. `produce-video` takes the block names as parameters and applies them to the run's
profile, so the same storyboard renders on a laptop and on a GPU pool.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect.blocks.core import Block
from pydantic import Field, field_validator

from reelflow.gpu.pins import MemoryPins
from reelflow.motion.capabilities import capabilities, declared_backends
from reelflow.render.profiles import RenderProfile


class ImageModel(Block):
    """A diffusers text-to-image model and its ControlNet for restyles."""

    _block_type_name = "Image Model"
    _block_type_slug = "image-model"

    family: Literal["sd15", "sdxl", "flux"] = "sd15"
    source: str = Field(description="local diffusers folder, single .safetensors, cached hub id")
    dtype: Literal["float32", "float16", "bfloat16"] = "bfloat16"
    device: str = "auto"
    controlnet: str | None = Field(None, description="ControlNet Canny model for restyles")
    width: int | None = Field(None, description="generation width override")
    height: int | None = None
    steps: int | None = None
    variants: int | None = None
    memory: MemoryPins | None = Field(
        None, description="pinned memory choices: model-offload, fp8, {offload: group, ...}"
    )
    speed: dict[str, Any] | None = Field(
        None, description="speed options: {cache: first-block|taylorseer|pab, guard_psnr, "
        "guard_identity, compile}; the cache is guarded on the run's first image"
    )

    def apply(self, profile: RenderProfile) -> RenderProfile:
        update: dict[str, Any] = {
            "image_model": self.source,
            "image_family": self.family,
            "dtype": self.dtype,
            "device": self.device,
            "controlnet": self.controlnet,
            "tiny_loras": self.source == "tiny",
        }
        for field in ("width", "height"):
            if getattr(self, field):
                update[f"image_{field}"] = getattr(self, field)
        for field in ("steps", "variants", "memory"):
            if getattr(self, field):
                update[field] = getattr(self, field)
        if self.speed:
            update["image_speed"] = dict(self.speed)
        return profile.model_copy(update=update)


class VideoModel(Block):
    """The clip backend: `animatic` (no model) or a diffusers image-to-video model. A storyboard
    may choose another backend for the film or a shot (`video.backend`); the block's model is
    for the block's backend."""

    _block_type_name = "Video Model"
    _block_type_slug = "video-model"

    backend: str = Field(
        "animatic", description=f"a wired video backend: one of {', '.join(declared_backends())}"
    )
    model: str | None = Field(None, description="folder, single file or cached hub id")
    options: dict[str, Any] = Field(
        default_factory=dict, description="steps, guidance_scale, max_area, max_frames, dtype, "
        "vae_tiling, decode_chunk (latent frames per decode), upsample + upsampler (ltx2), "
        "memory (pinned: model-offload, group-offload, fp8, vae-tiling or a mapping; fp8 and "
        "tiling change pixels and are in the clip's key, offloading is in its sidecar)"
    )
    models: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="further backends a storyboard may choose per shot (`video.backend`), each "
        "with its model and options: {wan-vace: {model: ..., steps: 30}}",
    )

    @field_validator("backend")
    @classmethod
    def _wired(cls, value: str) -> str:
        return _wired_backend(value)

    @field_validator("models")
    @classmethod
    def _wired_models(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for backend, options in value.items():
            _wired_backend(backend)
            if not isinstance(options.get("model"), str):
                raise ValueError(f"models.{backend} names no model (model: a folder or hub id)")
            _memory_pins(options, f"models.{backend}")
        return value

    @field_validator("options")
    @classmethod
    def _memory_option(cls, value: dict[str, Any]) -> dict[str, Any]:
        _memory_pins(value, "options")
        return value

    def apply(self, profile: RenderProfile) -> RenderProfile:
        return profile.model_copy(
            update={
                "video_backend": self.backend,
                "video_model": self.model,
                "video_options": dict(self.options),
                "video_models": {name: dict(o) for name, o in self.models.items()},
            }
        )


def _wired_backend(value: str) -> str:
    """A declared backend that can render (ValueError naming the known ones otherwise)."""
    try:
        declared = capabilities(value)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    if not declared.available:
        raise ValueError(f"backend {value} is {declared.unavailable_reason}")
    return value


def _memory_pins(options: dict[str, Any], where: str) -> None:
    """A video model's `memory` option is a memory pin (ValueError in one line otherwise)."""
    from reelflow.errors import InputError
    from reelflow.gpu.pins import with_video_pins

    try:
        with_video_pins(options, where)
    except InputError as exc:
        raise ValueError(str(exc)) from None
