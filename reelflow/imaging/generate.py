"""Image generation: variants, hi-res fix, ControlNet Canny restyle, inpaint, outpaint.

Every function takes an `ImageSpec` (what to make) plus images, and returns PIL images; the
pipelines come from the process-wide `PipelineCache`, so a worker loads each model once. Seeds are
explicit everywhere: the same spec gives the same image, which is what makes artifact keys
(the spec hash) and resumed runs trustworthy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

import cv2
import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps
from pydantic import BaseModel, ConfigDict, Field, field_validator

from reelflow.errors import StageError
from reelflow.gpu.speed import SpeedOptions, cache_state, compile_blocks
from reelflow.imaging import long_prompts
from reelflow.imaging.checks import is_blank
from reelflow.imaging.ip_adapter import IPAdapterSpec, ip_adapter_loaded
from reelflow.imaging.models import LoraSpec, ModelSource
from reelflow.imaging.pipelines import PipelineCache, apply_loras, get_pipeline_cache

log = logging.getLogger(__name__)

Direction = Literal["left", "right", "up", "down"]


class BlankImageError(StageError, RuntimeError):
    """The model kept returning black or NaN images (an fp16 overflow, a safety checker...)."""


def snap8(value: int, what: str = "size") -> int:
    """Round a pixel size to the nearest multiple of 8 (the VAE's stride), warning if it moved."""
    snapped = max(8, int(round(value / 8)) * 8)
    if snapped != value:
        log.warning("%s %d is not a multiple of 8; using %d", what, value, snapped)
    return snapped


class ImageSpec(BaseModel):
    """Everything that determines a generated image.

    `shot` only labels errors and logs; it is not part of the spec hash, because two shots asking
    for the same image may share it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str
    negative_prompt: str = ""
    seed: int = Field(0, ge=0, lt=2**63)
    width: int = Field(512, ge=8, le=8192)
    height: int = Field(512, ge=8, le=8192)
    steps: int = Field(30, ge=1, le=500)
    guidance: float = Field(7.0, ge=0.0, le=50.0)
    model: ModelSource
    loras: list[LoraSpec] = []
    ip_adapter: IPAdapterSpec | None = None  # needs the conditioning image at call time
    shot: str | None = None

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, value: int, info: Any) -> int:
        return snap8(value, info.field_name)

    def label(self) -> str:
        return f"shot {self.shot}" if self.shot else f"prompt {self.prompt[:40]!r}"


# --- helpers shared by every operation ------------------------------------------------------


def _generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """CPU generators: the initial noise is then identical on every device (diffusers moves it)."""
    return [torch.Generator("cpu").manual_seed(seed) for seed in seeds]


def _text_kwargs(pipe: Any, spec: ImageSpec, count: int = 1) -> dict[str, Any]:
    """The prompt as the pipeline takes it: plain text when it fits CLIP's window, else
    embeddings of every window joined (long prompts reach the UNet whole, `(word:1.2)` weighted).
    """
    steps = {"num_inference_steps": spec.steps, "guidance_scale": spec.guidance}
    texts = (spec.prompt, spec.negative_prompt)
    if long_prompts.is_clip_pipeline(pipe) and any(
        long_prompts.needs_windows(pipe, text) for text in texts
    ):
        text = long_prompts.prompt_embedding_kwargs(pipe, spec.prompt, spec.negative_prompt, count)
        return text | steps
    prompt = long_prompts.plain_text(spec.prompt)  # weights mean nothing to a T5 or a panel
    # None (not "") when there is no negative prompt: SDXL then uses zero embeddings as trained.
    negative = long_prompts.plain_text(spec.negative_prompt) or None
    return {"prompt": [prompt] * count, "negative_prompt": negative and [negative] * count} | steps


def _steps_for_strength(steps: int, strength: float) -> int:
    """img2img runs int(steps * strength) steps; raise `steps` until that is at least one."""
    while int(steps * strength) < 1:
        steps += 1
    return steps


def _to_pil(array: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8))


def _ip_kwargs(spec: ImageSpec, image: Image.Image | None) -> dict[str, Any]:
    """`ip_adapter_image` when the spec asks for IP-Adapter conditioning (then it is required)."""
    if spec.ip_adapter is None:
        return {}
    if image is None:
        raise ValueError(f"{spec.label()}: IP-Adapter {spec.ip_adapter.path} needs an image")
    return {"ip_adapter_image": image.convert("RGB")}


def _single(
    pipe: Any,
    spec: ImageSpec,
    cache: PipelineCache,
    ip_adapter_image: Image.Image | None = None,
    speed: SpeedOptions | None = None,
    cached: bool | None = None,
    **kwargs: Any,
) -> Image.Image:
    """Run one image with the spec's LoRAs (and IP-Adapter) and seed; a blank result is an
    error, not retried. `speed`: the speed cache runs when its guard kept it (`cached` forces
    it on or off: the guard's two renders).

    Retrying with another seed would silently change what the spec hash promises.
    """
    with cache.lock(spec.model), ip_adapter_loaded(pipe, spec.ip_adapter), \
            cache_state(pipe, speed, force=cached):
        apply_loras(pipe, spec.loras)
        call = _text_kwargs(pipe, spec) | _ip_kwargs(spec, ip_adapter_image) | kwargs
        array = pipe(**call, generator=_generators([spec.seed]), output_type="np").images[0]
    if is_blank(array):
        raise BlankImageError(f"{spec.label()}: {type(pipe).__name__} returned a blank image")
    return _to_pil(array)


def _sized(image: Image.Image, width: int, height: int) -> Image.Image:
    image = image.convert("RGB")
    return image if image.size == (width, height) else image.resize((width, height), Image.LANCZOS)


# --- text to image --------------------------------------------------------------------------


def render_with_retries(
    render: Callable[[list[int]], Sequence[np.ndarray]],
    seeds: Sequence[int],
    max_retries: int = 3,
    label: str = "image",
) -> list[tuple[int, np.ndarray]]:
    """Render `seeds`, replacing blank/NaN results with fresh seeds after the highest one used.

    Kept separate from diffusers so the retry rule is testable on its own. Order is preserved:
    result i is variant i, with the seed that actually produced it.
    """
    done: dict[int, tuple[int, np.ndarray]] = {}
    pending = list(enumerate(seeds))
    next_seed = max(seeds) + 1
    for attempt in range(max_retries + 1):
        arrays = render([seed for _, seed in pending])
        blank = []
        for (index, seed), array in zip(pending, arrays, strict=True):
            if is_blank(array):
                blank.append((index, seed))
            else:
                done[index] = (seed, array)
        if not blank:
            return [done[index] for index in range(len(seeds))]
        if attempt < max_retries:
            log.warning(
                "%s: seeds %s gave blank images; retrying with new seeds",
                label,
                [seed for _, seed in blank],
            )
        pending = [(index, next_seed + k) for k, (index, _) in enumerate(blank)]
        next_seed += len(blank)
    raise BlankImageError(
        f"{label}: {len(pending)} of {len(seeds)} images still blank (black or NaN) "
        f"after {max_retries} retries"
    )


def generate_variants(
    spec: ImageSpec,
    count: int = 4,
    *,
    batch_size: int = 4,
    max_retries: int = 3,
    cache: PipelineCache | None = None,
    ip_adapter_image: Image.Image | None = None,
    speed: SpeedOptions | None = None,
    cached: bool | None = None,
) -> list[tuple[int, Image.Image]]:
    """`count` variants of `spec` with seeds spec.seed + i, as (seed, image) pairs. `speed`:
    the speed cache runs when its guard kept it (`cached` forces it on or off: the guard's two
    renders); its blocks are compiled first when it asks.

    Variants are batched (up to `batch_size` per pipeline call) with one generator per image, so
    variant i is the same image whether it was made alone or in a batch. A blank or NaN variant
    is re-rendered with the next unused seed; the returned seed is the one that made the image.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    cache = cache or get_pipeline_cache()
    pipe = cache.text2image(spec.model)
    conditioning = _ip_kwargs(spec, ip_adapter_image)

    def render(seeds: list[int]) -> list[np.ndarray]:
        arrays: list[np.ndarray] = []
        for start in range(0, len(seeds), batch_size):
            chunk = seeds[start : start + batch_size]
            result = pipe(
                **_text_kwargs(pipe, spec, len(chunk)),
                **conditioning,
                width=spec.width,
                height=spec.height,
                generator=_generators(chunk),
                output_type="np",
            )
            arrays.extend(result.images)
        return arrays

    compile_blocks(pipe, speed, spec.model.resolved_device())
    with cache.lock(spec.model), ip_adapter_loaded(pipe, spec.ip_adapter), \
            cache_state(pipe, speed, force=cached):
        apply_loras(pipe, spec.loras)
        seeds = [spec.seed + i for i in range(count)]
        results = render_with_retries(render, seeds, max_retries, spec.label())
    return [(seed, _to_pil(array)) for seed, array in results]


def generate(spec: ImageSpec, *, cache: PipelineCache | None = None) -> Image.Image:
    """The single image for `spec.seed` (a blank result is an error, as the seed is the promise)."""
    cache = cache or get_pipeline_cache()
    pipe = cache.text2image(spec.model)
    return _single(pipe, spec, cache, width=spec.width, height=spec.height)


# --- image to image -------------------------------------------------------------------------


def _output_size(pipe: Any, width: int, height: int) -> dict[str, int]:
    """`width`/`height` for an img2img pipeline that takes them (Flux's: without them it makes
    1024x1024 whatever the input image); SD's follows its input image and takes none."""
    import inspect

    parameters = inspect.signature(type(pipe).__call__).parameters
    return {"width": width, "height": height} if "height" in parameters else {}


def hires_fix(
    image: Image.Image,
    spec: ImageSpec,
    scale: float = 2.0,
    strength: float = 0.35,
    *,
    cache: PipelineCache | None = None,
) -> Image.Image:
    """Upscale with Lanczos, then re-denoise lightly (img2img, same seed) to add real detail.

    Low strength keeps the composition the director approved; the img2img pass shares the base
    model's weights (`from_pipe`), so it costs no load.
    """
    cache = cache or get_pipeline_cache()
    width = snap8(round(image.width * scale), "hi-res width")
    height = snap8(round(image.height * scale), "hi-res height")
    upscaled = image.convert("RGB").resize((width, height), Image.LANCZOS)
    pipe = cache.img2img(spec.model)
    return _single(
        pipe,
        spec,
        cache,
        image=upscaled,
        strength=strength,
        num_inference_steps=_steps_for_strength(spec.steps, strength),
        **_output_size(pipe, width, height),
    )


def img2img_from_reference(
    ref_image: Image.Image,
    spec: ImageSpec,
    strength: float = 0.6,
    *,
    cache: PipelineCache | None = None,
    ip_adapter_image: Image.Image | None = None,
    speed: SpeedOptions | None = None,
    cached: bool | None = None,
) -> Image.Image:
    """A new image that keeps a reference's layout and colours (e.g. a sketch or a previous shot).
    `speed`, `cached`: the speed cache, as for `generate_variants`.

    The reference is cover-cropped to the spec's size, so a different aspect is cropped, not
    squashed.
    """
    cache = cache or get_pipeline_cache()
    init = ImageOps.fit(ref_image.convert("RGB"), (spec.width, spec.height), Image.LANCZOS)
    pipe = cache.img2img(spec.model)
    compile_blocks(pipe, speed, spec.model.resolved_device())
    return _single(
        pipe,
        spec,
        cache,
        ip_adapter_image,
        speed,
        cached,
        image=init,
        strength=strength,
        num_inference_steps=_steps_for_strength(spec.steps, strength),
        **_output_size(pipe, spec.width, spec.height),
    )


def canny_edges(
    image: Image.Image, low_threshold: int = 100, high_threshold: int = 200
) -> Image.Image:
    """The Canny edge map ControlNet Canny models are trained on: white edges on black, RGB."""
    gray = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, low_threshold, high_threshold)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


def restyle_canny(
    image: Image.Image,
    spec: ImageSpec,
    controlnet_path: str,
    conditioning_scale: float = 0.8,
    guidance_start: float = 0.0,
    guidance_end: float = 1.0,
    low_threshold: int = 100,
    high_threshold: int = 200,
    *,
    cache: PipelineCache | None = None,
) -> Image.Image:
    """Re-render `image` in the spec's style while keeping its outlines (ControlNet Canny).

    The output has the input's size (snapped to 8). `guidance_end` < 1 lets the last steps
    ignore the edges, which softens outlines that would otherwise look traced.
    """
    cache = cache or get_pipeline_cache()
    width, height = snap8(image.width, "width"), snap8(image.height, "height")
    control = canny_edges(_sized(image, width, height), low_threshold, high_threshold)
    pipe = cache.controlnet(spec.model, controlnet_path)
    control_arg = "control_image" if spec.model.family == "flux" else "image"
    return _single(
        pipe,
        spec,
        cache,
        width=width,
        height=height,
        controlnet_conditioning_scale=conditioning_scale,
        control_guidance_start=guidance_start,
        control_guidance_end=guidance_end,
        **{control_arg: control},
    )


def _feathered(mask: Image.Image, feather_px: int) -> Image.Image:
    return mask.filter(ImageFilter.GaussianBlur(feather_px)) if feather_px > 0 else mask


def inpaint(
    image: Image.Image,
    mask: Image.Image,
    spec: ImageSpec,
    strength: float = 1.0,
    feather_px: int = 4,
    *,
    cache: PipelineCache | None = None,
) -> Image.Image:
    """Repaint the white part of `mask`; the rest of `image` is kept pixel for pixel.

    The pipeline's output passes through the VAE everywhere, which softens untouched areas; the
    result is therefore composited over the original through the feathered mask, the standard
    fix that keeps the unmasked region exact and the seam invisible.
    """
    cache = cache or get_pipeline_cache()
    width, height = snap8(image.width, "width"), snap8(image.height, "height")
    image = _sized(image, width, height)
    mask = mask.convert("L").resize((width, height), Image.NEAREST)
    pipe = cache.inpaint(spec.model)
    painted = _single(
        pipe,
        spec,
        cache,
        image=image,
        mask_image=mask,
        width=width,
        height=height,
        strength=strength,
        num_inference_steps=_steps_for_strength(spec.steps, strength),
    )
    return Image.composite(painted, image, _feathered(mask, feather_px))


def outpaint_canvas(
    image: Image.Image,
    direction: Direction | None = None,
    target_aspect: float | None = None,
    expand_px: int | None = None,
    feather_px: int = 8,
) -> tuple[Image.Image, Image.Image]:
    """The expanded canvas (new area filled by mirroring the edge) and its mask (white = new).

    `target_aspect` (width / height) grows whichever axis it needs; `direction` says which side
    grows (both sides equally when None). Without a target, `direction` grows by `expand_px`
    (half the image along that axis by default). The mask reaches `feather_px` into the original,
    so the seam itself is repainted.
    """
    w, h = image.size
    if target_aspect is not None:
        if target_aspect <= 0:
            raise ValueError("target_aspect must be positive")
        if target_aspect >= w / h:
            new_w, new_h = snap8(round(h * target_aspect), "outpaint width"), snap8(h, "height")
        else:
            new_w, new_h = snap8(w, "width"), snap8(round(w / target_aspect), "outpaint height")
    elif direction is not None:
        horizontal = direction in ("left", "right")
        grow = expand_px if expand_px is not None else (w if horizontal else h) // 2
        new_w = snap8(w + grow if horizontal else w, "outpaint width")
        new_h = snap8(h if horizontal else h + grow, "outpaint height")
    else:
        raise ValueError("outpaint needs a direction or a target_aspect")
    if new_w < w or new_h < h:
        raise ValueError(f"outpaint target {new_w}x{new_h} is smaller than the image {w}x{h}")

    dx, dy = new_w - w, new_h - h
    left = {"left": dx, "right": 0}.get(direction or "", dx // 2)
    top = {"up": dy, "down": 0}.get(direction or "", dy // 2)
    source = np.asarray(image.convert("RGB"))
    border = cv2.BORDER_REFLECT_101 if min(w, h) > 1 else cv2.BORDER_REPLICATE
    canvas = cv2.copyMakeBorder(source, top, dy - top, left, dx - left, border)
    mask = np.full((new_h, new_w), 255, np.uint8)
    inner = (
        slice(top + (feather_px if top else 0), top + h - (feather_px if dy - top else 0)),
        slice(left + (feather_px if left else 0), left + w - (feather_px if dx - left else 0)),
    )
    mask[inner] = 0
    return Image.fromarray(canvas), Image.fromarray(mask)


def outpaint(
    image: Image.Image,
    spec: ImageSpec,
    direction: Direction | None = None,
    target_aspect: float | None = None,
    expand_px: int | None = None,
    feather_px: int = 8,
    *,
    cache: PipelineCache | None = None,
) -> Image.Image:
    """Extend `image` beyond its frame (e.g. 1:1 to 16:9) by inpainting the new area.

    Sizes go to the pipeline explicitly (inpaint pipelines otherwise fall back to the UNet's
    default size), and the feathered mask blends the seam.
    """
    canvas, mask = outpaint_canvas(image, direction, target_aspect, expand_px, feather_px)
    return inpaint(canvas, mask, spec, strength=1.0, feather_px=feather_px, cache=cache)
