"""Image steps: K variants of a shot, the hi-res fix of the chosen one, retouch (inpaint /
outpaint), and frames taken from another shot's clip. Each is idempotent: the job's spec hash
names its output, so an object already in the bucket is returned, not recomputed."""

from __future__ import annotations

import logging

from PIL import Image

from reelflow.render import weights
from reelflow.render.common import lineage_of, load_image, png_bytes, require_weights, scratch
from reelflow.render.jobs import (
    PREVIZ,
    FrameJob,
    HiresJob,
    ImageJob,
    PanelSpec,
    RetouchJob,
    resolve_model_path,
)
from reelflow.render.models import image_spec, ip_adapter_spec, model_source
from reelflow.store.artifacts import ArtifactStore, Lineage

log = logging.getLogger("reelflow.render")


def is_previz(job: ImageJob | FrameJob) -> bool:
    """Whether the job's image "model" is the model-free previz backend (no weights to check:
    storyboard panels are drawn, reelflow/imaging/previz.py)."""
    return job.model.source == PREVIZ


def draw_previz(store: ArtifactStore, job: ImageJob, seed: int, scale: float = 1.0) -> Image.Image:
    """The previz panel of ``job`` at ``scale`` x its size (the hi-res fix redraws, crisp)."""
    if job.panel is None:
        raise ValueError(f"previz image job for shot {job.shot} has no panel spec")
    return draw_panel_spec(
        store,
        job.shot,
        job.panel,
        width=max(8, round(job.width * scale)),
        height=max(8, round(job.height * scale)),
        seed=seed,
        reference=job.reference,
    )


def draw_panel_spec(
    store: ArtifactStore,
    shot: str,
    panel: PanelSpec,
    *,
    width: int,
    height: int,
    seed: int,
    reference: str | None = None,
) -> Image.Image:
    """A shot's previz panel from its spec; the reference image is read from the bucket (the
    shot's own reference first, then the character's library image)."""
    from reelflow.imaging.previz import draw_panel
    from reelflow.store.artifacts import ObjectNotFound

    image = None
    for key in (reference, panel.reference):
        if key:
            try:
                image = load_image(store, key)
                break
            except ObjectNotFound:  # a library reference that is gone: draw the silhouette
                continue
    return draw_panel(
        shot=shot,
        description=panel.description,
        size=panel.size,
        angle=panel.angle,
        movement=panel.movement,
        palette=panel.palette,
        width=width,
        height=height,
        seed=seed,
        reference=image,
        notes=panel.notes,
        restyle=panel.restyle,
        take=panel.take,
        composition_of=panel.composition_of,
    )


def render_variants(store: ArtifactStore, job: ImageJob) -> list[str]:
    """K variants of a shot; variant i uses seed + i. Returns their keys, variant order."""
    wanted = job.variant_keys()
    if all(store.complete(key) for key in wanted):
        return wanted
    if not is_previz(job):
        require_weights(job, f"shot {job.shot}")
    speed = speed_lineage(job)  # compiles the denoiser's blocks first when the options ask
    results = variant_images(store, job)
    identity = _identity_scorer(store, job)
    for index, (seed, image) in enumerate(results):
        extra = {"variant": index, "seed": seed, "shot": job.shot, "prompt": job.prompt}
        if speed:
            extra["speed"] = speed
        if job.characters:
            extra["characters"] = job.characters
        if identity is not None:
            extra["identity"] = identity(image)
        if job.ip_adapter:
            extra["ip_adapter"] = job.ip_adapter.model_dump(mode="json")
        extra.update(weights.render_lineage(job))
        store.put_bytes(
            wanted[index],
            png_bytes(image),
            "image/png",
            Lineage(
                kind="image",
                spec=job.model_dump(mode="json"),
                spec_hash=job.spec_hash(),
                extra=extra,
                parents=[k for k in (job.reference, job.ip_adapter and job.ip_adapter.image) if k],
            ),
        )
    return wanted


def variant_images(
    store: ArtifactStore, job: ImageJob, *, cached: bool | None = None
) -> list[tuple[int, Image.Image]]:
    """(seed, image) of every variant, computed, not stored (also what `regenerate` runs). The
    job's speed cache runs once its guard kept it (`cached` forces it on or off: the guard's
    two renders)."""
    if is_previz(job):  # no model: storyboard panels
        return [
            (seed, draw_previz(store, job, seed))
            for seed in range(job.seed, job.seed + job.variants)
        ]
    from reelflow.imaging.generate import generate_variants

    spec = image_spec(job, prompt=job.prompt, width=job.width, height=job.height, seed=job.seed)
    condition = None
    if job.ip_adapter:  # feature lock: the character's reference conditions every variant
        spec = spec.model_copy(update={"ip_adapter": ip_adapter_spec(job.ip_adapter)})
        condition = load_image(store, job.ip_adapter.image)
    if job.reference:  # keep the reference's composition: each variant is img2img from it
        from reelflow.imaging.generate import img2img_from_reference

        reference = load_image(store, job.reference).resize((job.width, job.height))
        return [
            (
                seed,
                img2img_from_reference(
                    reference,
                    spec.model_copy(update={"seed": seed}),
                    job.reference_strength,
                    ip_adapter_image=condition,
                    speed=speed_options(job),
                    cached=cached,
                ),
            )
            for seed in range(job.seed, job.seed + job.variants)
        ]
    return generate_variants(spec, job.variants, ip_adapter_image=condition,
                             speed=speed_options(job), cached=cached)


def speed_options(job: ImageJob):
    """The job's speed options (`job.speed`), None without (or for a previz panel)."""
    from reelflow.gpu.speed import SpeedOptions

    return SpeedOptions.model_validate(job.speed) if job.speed and not is_previz(job) else None


def speed_lineage(job: ImageJob) -> dict:
    """The speed options the variants are made with, for their sidecars: the cache, the
    guard's figures, and what compilation did (the resident model's blocks compiled first)."""
    from reelflow.gpu.speed import compile_blocks, lineage
    from reelflow.imaging.pipelines import get_pipeline_cache

    options = speed_options(job)
    if options is None:
        return {}
    source = model_source(job.model)
    compiled = None
    if options.compile:
        pipe = get_pipeline_cache().text2image(source)
        compiled = compile_blocks(pipe, options, source.resolved_device())
    return lineage(options, compiled)


def guard_cache(
    store: ArtifactStore, job: ImageJob, identity_threshold: float | None = None
):
    """The guard of the job's speed cache on its first variant, rendered without and with it:
    the PSNR decides, or on a shot with library characters the identity score (the identity
    gate's scorer, against their references; `identity_threshold`: the run's, unless the
    options name their own). Returns a `CacheGuard`; the caller keys the run's images with it."""
    import numpy as np

    from reelflow.gpu.speed import run_guard

    options = speed_options(job)
    if options is None or options.cache is None:
        raise ValueError(f"shot {job.shot}: no speed.cache to guard")
    first = job.model_copy(update={"variants": 1})

    def render(cached: bool) -> np.ndarray:
        return np.asarray(variant_images(store, first, cached=cached)[0][1].convert("RGB"))

    identity = None
    if job.character_refs:
        from reelflow.render.identity import default_clip_model, load_references, score_image

        model = default_clip_model()
        try:
            references = load_references(store, job)
        except Exception as exc:  # noqa: BLE001 - as the lineage's scorer: the PSNR decides
            log.warning("speed guard on %s: identity not scored (%s); the PSNR decides",
                        job.shot, exc)
        else:

            def identity(pixels: np.ndarray) -> float:
                return min(score_image(Image.fromarray(pixels), references, model).values())

    return run_guard(job.shot, options, render, identity=identity,
                     identity_threshold=identity_threshold)


def with_guard(job: ImageJob, guard) -> ImageJob:
    """`job` with the guard's decision: the cache runs (and is in the key) when kept; turned
    off, the figures stay in the job so its lineage shows why."""
    return job.model_copy(update={"speed": {**job.speed, "guard": guard.model_dump(mode="json")}})


def _identity_scorer(store: ArtifactStore, job: ImageJob):
    """Scores a variant against the shot's characters for its lineage (None: no references).

    A check that cannot run (a reference gone from the bucket) is logged, never fatal: the
    review scores the variants again and says so."""
    if not job.character_refs:
        return None
    from reelflow.render.identity import (
        default_clip_model,
        identity_lineage,
        identity_method,
        load_references,
        score_image,
    )

    model = default_clip_model()
    try:
        references = load_references(store, job)
    except Exception as exc:  # noqa: BLE001 - the images themselves must still be stored
        log.warning("identity check skipped for %s: %s", job.shot, exc)
        return None
    method = identity_method(model)
    return lambda image: identity_lineage(score_image(image, references, model), method)


def hires_fix(store: ArtifactStore, job: HiresJob) -> str:
    """Upscale the chosen variant and refine it with img2img at the same seed."""
    key = job.output_key()
    if store.complete(key):
        return key
    if not is_previz(job.image):
        require_weights(job, f"shot {job.image.shot} hi-res")
    base = job.image
    refined = hires_image(store, job)
    store.put_bytes(
        key,
        png_bytes(refined),
        "image/png",
        lineage_of(
            "image",
            job,
            [job.variant_key],
            {"step": "hires-fix", "shot": base.shot, "seed": job.seed},
        ),
    )
    return key


def hires_image(store: ArtifactStore, job: HiresJob) -> Image.Image:
    """The hi-res image, computed, not stored (previz: the panel redrawn larger)."""
    from reelflow.imaging.generate import hires_fix as refine

    base = job.image
    if is_previz(base):
        return draw_previz(store, base, job.seed, scale=job.scale)
    spec = image_spec(base, prompt=base.prompt, width=base.width, height=base.height, seed=job.seed)
    return refine(load_image(store, job.variant_key), spec, scale=job.scale, strength=job.strength)


def retouch(store: ArtifactStore, job: RetouchJob) -> str:
    """Inpaint the shot's regions, then outpaint, on the chosen (hi-res) image."""
    key = job.output_key()
    if store.complete(key):
        return key
    if not is_previz(job.image):
        require_weights(job, f"shot {job.image.shot} retouch")
    image = retouched_image(store, job)
    store.put_bytes(
        key,
        png_bytes(image),
        "image/png",
        lineage_of("image", job, [job.source_key], {"step": "retouch", "shot": job.image.shot}),
    )
    return key


def retouched_image(store: ArtifactStore, job: RetouchJob) -> Image.Image:
    """The retouched image, computed, not stored (previz: the panel as it is)."""
    from PIL import ImageDraw

    if is_previz(job.image):
        return load_image(store, job.source_key)

    from reelflow.imaging.generate import inpaint, outpaint

    image = load_image(store, job.source_key)
    base = job.image
    width, height = image.size
    for region in job.inpaint:
        x0, y0, x1, y1 = region["box"]
        mask = Image.new("L", image.size, 0)
        ImageDraw.Draw(mask).rectangle(
            (round(x0 * width), round(y0 * height), round(x1 * width), round(y1 * height)),
            fill=255,
        )
        spec = image_spec(
            base,
            prompt=f"{region['prompt']}, {base.prompt}",
            width=width,
            height=height,
            seed=base.seed,
        )
        image = inpaint(image, mask, spec, strength=region["strength"])
    if job.outpaint:
        spec = image_spec(base, prompt=base.prompt, width=width, height=height, seed=base.seed)
        side = job.outpaint.get("direction")
        expand = round(job.outpaint["expand"] * (width if side in ("left", "right") else height))
        image = outpaint(
            image,
            spec,
            direction=side,
            target_aspect=job.outpaint.get("target_aspect"),
            expand_px=expand if side else None,
        )
    return image


def take_frame(store: ArtifactStore, job: FrameJob) -> str:
    """A frame of another shot's clip, restyled through ControlNet Canny when the job asks."""
    key = job.output_key()
    if store.complete(key):
        return key
    if job.restyle_prompt and not is_previz(job):
        require_weights(job, f"shot {job.shot} restyled frame")
    store.put_bytes(
        key,
        png_bytes(frame_image(store, job)),
        "image/png",
        lineage_of(
            "image",
            job,
            [job.clip_key],
            {"step": "restyle" if job.restyle_prompt else "frame", "shot": job.shot},
        ),
    )
    return key


def frame_image(store: ArtifactStore, job: FrameJob) -> Image.Image:
    """The (restyled) frame, computed, not stored (previz: the frame as it is, or the shot's
    own panel at the frame's size when the job carries one)."""
    from reelflow.media.frames import extract_frame

    with scratch() as tmp:
        clip = store.get_file(job.clip_key, tmp / "clip.mp4")
        frame = Image.fromarray(extract_frame(clip, job.frame))
    if job.panel is not None:
        width, height = frame.size
        return draw_panel_spec(store, job.shot, job.panel, width=width, height=height,
                               seed=job.seed)  # fmt: skip
    if job.restyle_prompt and not is_previz(job):  # previz: the frame as it is
        from reelflow.imaging.generate import restyle_canny

        width, height = _generation_size(frame.size, job)
        spec = image_spec(job, prompt=job.restyle_prompt, width=width, height=height, seed=job.seed)
        frame = restyle_canny(
            frame.resize((width, height), Image.LANCZOS), spec, resolve_model_path(job.controlnet)
        )
    return frame


def _generation_size(size: tuple[int, int], job: FrameJob) -> tuple[int, int]:
    """Restyle at a size the model handles: the frame's aspect, at most 512 px wide, /8."""
    width, height = size
    scale = min(1.0, 512 / width)
    return max(8, int(width * scale) // 8 * 8), max(8, int(height * scale) // 8 * 8)


def score_variants(
    store: ArtifactStore, variants: dict[str, list[str]], palette: list[str]
) -> dict[str, list[float]]:
    """Sharpness and palette fit per variant, 0..1: the contact sheet's numbers and what
    quality-gate compares with its threshold. A blank (black / NaN) image scores 0."""
    from reelflow.imaging.checks import is_blank, palette_score, sharpness

    scores: dict[str, list[float]] = {}
    for shot, shot_keys in variants.items():
        scores[shot] = []
        for key in shot_keys:
            image = load_image(store, key)
            if is_blank(image):
                scores[shot].append(0.0)
                continue
            sharp = min(1.0, sharpness(image) / 500.0)
            fit = palette_score(image, palette) if palette else 1.0
            scores[shot].append(round(0.5 * sharp + 0.5 * fit, 3))
    return scores
