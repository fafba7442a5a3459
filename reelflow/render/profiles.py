"""Render profiles: how a storyboard is rendered on a given machine, without editing it.

A storyboard keeps the film's real settings (the seed: Flux, 1536x864, 30 steps). A profile says
what this run may change to fit the hardware: the `demo` profile swaps in a tiny model built from
configs, a small generation size and few steps, and the film is still delivered at the
storyboard's resolution. The profile is part of every spec hash, so demo and full renders never
share cache entries.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from reelflow.gpu.pins import MemoryPins


class RenderProfile(BaseModel):
    name: str
    description: str
    image_model: str | None = Field(
        None, description="override of style.model; 'tiny' builds a tiny SD model from configs"
    )
    image_family: Literal["sd15", "sdxl", "flux"] | None = None
    image_width: int | None = Field(None, description="generation width (film size is unchanged)")
    image_height: int | None = None
    steps: int | None = None
    variants: int | None = None
    hires_fix: bool = True
    hires_scale: float = 2.0
    hires_strength: float = 0.35
    tiny_loras: bool = Field(
        False,
        description="replace the storyboard's LoRA files by tiny ones that fit the tiny model",
    )
    controlnet: str | None = Field(None, description="ControlNet Canny model; 'tiny' for demo")
    ip_adapter: str | None = Field(
        None,
        description="IP-Adapter (folder or weights file) that conditions every shot with its "
        "characters' reference images; 'tiny' builds one for the tiny model",
    )
    video_backend: str = "animatic"
    video_model: str | None = Field(
        None,
        description="model of a generative video backend; 'tiny-ltx'/'tiny-wan'/'tiny-ltx2'/"
        "'tiny-wan22'/'tiny-wan22-ti2v'/'tiny-wan-vace'/'tiny-skyreels-df' for tests",
    )
    video_options: dict[str, Any] = Field(
        default_factory=dict, description="backend options, e.g. steps, max_area, max_frames, "
        "memory (the video model's pins: `fp8`, `model-offload`, {offload: group, vae_tiling: "
        "true}; fp8 and tiling in the clip's key, offloading in its sidecar)"
    )
    video_models: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="further backends a storyboard may choose per film or shot (`video.backend`)"
        ", each with its model and options: backend -> {model: ..., steps: ...}",
    )
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    device: str = "auto"
    crf: int = 18
    delivery: Literal["platform", "film"] = Field(
        "platform",
        description="versions without a size: at the platform preset's size (1080x1920 for "
        "9:16; reframed, then upscaled), or 'film': at the reframed film's own size",
    )
    upscaler: str | None = Field(
        None,
        description="the learned upscaler (`@models/NAME`, a StableDiffusionUpscalePipeline "
        "folder) of every version that names none; None: a filter",
    )
    upscale_steps: int | None = Field(None, ge=1, le=200,
                                      description="its steps per frame (default 20)")
    memory: MemoryPins | None = Field(
        None,
        description="pinned memory choices of the image model: `model-offload`, `fp8`, ... or "
        "{offload: model, fp8: true, vae_tiling: true, gguf: FILE}; fp8, tiling and GGUF change "
        "pixels (in the key), offloading does not (in the sidecar)",
    )
    image_speed: dict[str, Any] = Field(
        default_factory=dict,
        description="speed options of the image model (reelflow/gpu/speed.py): {cache: "
        "first-block|taylorseer|pab, guard_psnr, guard_identity, compile}; the cache is "
        "guarded on the run's first image",
    )


#: the tiny Wan models' options in `test-wan`: 2 steps, 9 frames (4k+1) a second, 64x32
_TINY_WAN_OPTIONS: dict[str, Any] = {
    "steps": 2,
    "max_frames": 9,
    "native_fps": 8,
    "max_area": 64 * 32,
    "preset": "ultrafast",
}

PROFILES: dict[str, RenderProfile] = {
    "full": RenderProfile(
        name="full",
        description="the storyboard's own settings: its model, size, steps and variants",
        dtype="bfloat16",
    ),
    "demo": RenderProfile(
        name="demo",
        description=(
            "2-core CPU demo: tiny SD model and LoRAs built from configs, 128x72 generation, "
            "4 steps, hi-res fix to 256x144; the film is still the storyboard's resolution"
        ),
        image_model="tiny",
        image_family="sd15",
        image_width=128,
        image_height=72,
        steps=4,
        tiny_loras=True,
        controlnet="tiny",
        ip_adapter="tiny",
    ),
    "previz": RenderProfile(
        name="previz",
        description=(
            "no model: a storyboard panel per shot drawn from the storyboard (palette, framing, "
            "camera move, description), animated and edited like the film: a legible animatic"
        ),
        image_model="previz",
        image_width=1280,
        image_height=720,
        steps=1,
        variants=2,
        hires_fix=False,
        controlnet=None,
        # a preview to check timing with: versions at the film's own size, quick to make;
        # `demo` and `full` deliver at platform sizes (or ask: --export 9:16,size=1080p)
        delivery="film",
    ),
    "test": RenderProfile(
        name="test",
        description="unit tests: like demo, smaller and fewer",
        image_model="tiny",
        image_family="sd15",
        image_width=64,
        image_height=40,
        steps=2,
        variants=2,
        tiny_loras=True,
        controlnet="tiny",
        delivery="film",  # the suite encodes small pictures; its own tests ask for 1080x1920
    ),
    "test-ltx2": RenderProfile(
        name="test-ltx2",
        description=(
            "tests of LTX-2: the `test` profile's stills, clips (with their own sound) from a "
            "tiny LTX-2 built from configs, 2 steps, one 9-frame call per second, 64x32 generation"
        ),
        image_model="tiny",
        image_family="sd15",
        image_width=64,
        image_height=40,
        steps=2,
        variants=1,
        hires_fix=False,
        tiny_loras=True,
        controlnet="tiny",
        video_backend="ltx2",
        video_model="tiny-ltx2",
        video_options={
            "steps": 2,
            "max_frames": 9,
            "native_fps": 8,
            "max_area": 64 * 32,
            "preset": "ultrafast",
        },
    ),
    "test-wan": RenderProfile(
        name="test-wan",
        description=(
            "tests of Wan 2.2 and VACE: the `test` profile's stills, clips from a tiny Wan 2.2 "
            "A14B (two experts) built from configs, a tiny Wan VACE and a tiny SkyReels-V2 "
            "diffusion forcing for shots that choose them (video.backend: wan-vace, "
            "skyreels-v2-df), 2 steps, 9-frame windows at 8 fps, 64x32"
        ),
        image_model="tiny",
        image_family="sd15",
        image_width=64,
        image_height=40,
        steps=2,
        variants=1,
        hires_fix=False,
        tiny_loras=True,
        controlnet="tiny",
        video_backend="wan22",
        video_model="tiny-wan22",
        video_options=_TINY_WAN_OPTIONS,
        video_models={
            "wan-vace": {"model": "tiny-wan-vace", **_TINY_WAN_OPTIONS},
            # long shots in one call: 9-frame windows joined by 5 frames of history
            "skyreels-v2-df": {"model": "tiny-skyreels-df", "overlap_history": 5,
                               **_TINY_WAN_OPTIONS},
        },
    ),
}


def get_profile(name: str) -> RenderProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile '{name}' (choose from {', '.join(PROFILES)})") from None
