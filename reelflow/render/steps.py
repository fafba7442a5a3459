"""One function per production step: a job in, objects with lineage in the bucket, keys out.

These are the core of every Prefect task (tasks/ only wraps them) and of the benchmarks' plain
loops. Each step is idempotent: the job's spec hash names its output, so when the object is
already in the bucket the step returns its key without recomputing anything.
"""

from __future__ import annotations

import io
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

from reelflow.render.jobs import (
    ClipJob,
    CoverJob,
    EditJob,
    FrameJob,
    HiresJob,
    ImageJob,
    Job,
    LoraChoice,
    MasterJob,
    ModelChoice,
    MusicJob,
    RetouchJob,
    VersionJob,
    models_dir,
    resolve_model_path,
)
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore, Lineage

log = logging.getLogger("reelflow.render.steps")


@contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="reelflow-") as tmp:
        yield Path(tmp)


def lineage_of(
    kind: str, job: Job, parents: list[str], extra: dict[str, object] | None = None
) -> Lineage:
    """The sidecar of an object a job made: the job itself is the spec, its hash the name."""
    return Lineage(
        kind=kind,
        spec=job.model_dump(mode="json"),
        spec_hash=job.spec_hash(),
        parents=parents,
        extra=extra or {},
    )


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _load_image(store: ArtifactStore, key: str) -> Image.Image:
    return Image.open(io.BytesIO(store.get_bytes(key))).convert("RGB")


# -- models ----------------------------------------------------------------------------------


def prepare_demo_models(
    lora_names: list[str], family: str = "sd15", video_model: str | None = None
) -> dict[str, str]:
    """Build the tiny models a `demo`/`test` profile asks for (once; later calls find them)."""
    root = models_dir()
    wanted = {"tiny-sd": root / "tiny-sd", "tiny-controlnet": root / "tiny-controlnet"}
    wanted |= {name: root / "loras" / f"{name}.safetensors" for name in lora_names}
    if video_model in ("tiny-ltx", "tiny-wan"):
        wanted[video_model] = root / video_model
    if all(
        (path / "model_index.json").exists() or path.is_file() or (path / "config.json").exists()
        for path in wanted.values()
    ):
        return {name: str(path) for name, path in wanted.items()}  # no torch import needed
    from reelflow.imaging.tiny import build_tiny_controlnet, build_tiny_lora, build_tiny_sd

    if video_model in ("tiny-ltx", "tiny-wan"):
        from reelflow.motion.tiny import build_tiny_ltx, build_tiny_wan

        build = build_tiny_ltx if video_model == "tiny-ltx" else build_tiny_wan
        build(root / video_model)
    sd = build_tiny_sd(root / "tiny-sd", family=family)
    controlnet = build_tiny_controlnet(sd, root / "tiny-controlnet")
    built = {"tiny-sd": str(sd), "tiny-controlnet": str(controlnet)}
    for index, name in enumerate(sorted(set(lora_names))):
        path = build_tiny_lora(sd, root / "loras" / f"{name}.safetensors", seed=1000 + index)
        built[name] = str(path)
    return built


def _image_spec(job: ImageJob | FrameJob, *, prompt: str, width: int, height: int, seed: int):
    from reelflow.imaging.generate import ImageSpec

    return ImageSpec(
        prompt=prompt,
        negative_prompt=job.negative_prompt,
        seed=seed,
        width=width,
        height=height,
        steps=job.steps,
        guidance=job.guidance,
        model=_model_source(job.model),
        loras=[_lora_spec(lora) for lora in job.loras],
        shot=job.shot,
    )


def _model_source(model: ModelChoice):
    from reelflow.imaging.models import ModelSource

    return ModelSource(
        family=model.family,
        source=resolve_model_path(model.source),
        dtype=model.dtype,
        device=model.device,
    )


def _lora_spec(lora: LoraChoice):
    from reelflow.imaging.models import LoraSpec

    return LoraSpec(path=resolve_model_path(lora.path), name=lora.name, weight=lora.weight)


# -- images ----------------------------------------------------------------------------------


def render_variants(store: ArtifactStore, job: ImageJob) -> list[str]:
    """K variants of a shot; variant i uses seed + i. Returns their keys, variant order."""
    from reelflow.imaging.generate import generate_variants

    base = job.spec_hash()
    wanted = [keys.image_key(job.project, job.shot, f"{base}-v{i}") for i in range(job.variants)]
    if all(store.exists(key) for key in wanted):
        return wanted
    spec = _image_spec(job, prompt=job.prompt, width=job.width, height=job.height, seed=job.seed)
    if job.reference:  # keep the reference's composition: each variant is img2img from it
        from reelflow.imaging.generate import img2img_from_reference

        reference = _load_image(store, job.reference).resize((job.width, job.height))
        results = [
            (
                seed,
                img2img_from_reference(
                    reference, spec.model_copy(update={"seed": seed}), job.reference_strength
                ),
            )
            for seed in range(job.seed, job.seed + job.variants)
        ]
    else:
        results = generate_variants(spec, job.variants)
    for index, (seed, image) in enumerate(results):
        store.put_bytes(
            wanted[index],
            _png_bytes(image),
            "image/png",
            Lineage(
                kind="image",
                spec=job.model_dump(mode="json"),
                spec_hash=base,
                extra={"variant": index, "seed": seed, "shot": job.shot, "prompt": job.prompt},
                parents=[job.reference] if job.reference else [],
            ),
        )
    return wanted


def hires_fix(store: ArtifactStore, job: HiresJob) -> str:
    """Upscale the chosen variant and refine it with img2img at the same seed."""
    from reelflow.imaging.generate import hires_fix as refine

    key = keys.image_key(job.image.project, job.image.shot, job.spec_hash())
    if store.exists(key):
        return key
    image = _load_image(store, job.variant_key)
    base = job.image
    spec = _image_spec(
        base, prompt=base.prompt, width=base.width, height=base.height, seed=job.seed
    )
    refined = refine(image, spec, scale=job.scale, strength=job.strength)
    store.put_bytes(
        key,
        _png_bytes(refined),
        "image/png",
        lineage_of(
            "image",
            job,
            [job.variant_key],
            {"step": "hires-fix", "shot": base.shot, "seed": job.seed},
        ),
    )
    return key


def retouch(store: ArtifactStore, job: RetouchJob) -> str:
    """Inpaint the shot's regions, then outpaint, on the chosen (hi-res) image."""
    from PIL import ImageDraw

    from reelflow.imaging.generate import inpaint, outpaint

    key = keys.image_key(job.image.project, job.image.shot, f"{job.spec_hash()}-retouch")
    if store.exists(key):
        return key
    image = _load_image(store, job.source_key)
    base = job.image
    width, height = image.size
    for region in job.inpaint:
        x0, y0, x1, y1 = region["box"]
        mask = Image.new("L", image.size, 0)
        ImageDraw.Draw(mask).rectangle(
            (round(x0 * width), round(y0 * height), round(x1 * width), round(y1 * height)),
            fill=255,
        )
        spec = _image_spec(
            base,
            prompt=f"{region['prompt']}, {base.prompt}",
            width=width,
            height=height,
            seed=base.seed,
        )
        image = inpaint(image, mask, spec, strength=region["strength"])
    if job.outpaint:
        spec = _image_spec(base, prompt=base.prompt, width=width, height=height, seed=base.seed)
        side = job.outpaint.get("direction")
        expand = round(job.outpaint["expand"] * (width if side in ("left", "right") else height))
        image = outpaint(
            image,
            spec,
            direction=side,
            target_aspect=job.outpaint.get("target_aspect"),
            expand_px=expand if side else None,
        )
    store.put_bytes(
        key,
        _png_bytes(image),
        "image/png",
        lineage_of("image", job, [job.source_key], {"step": "retouch", "shot": base.shot}),
    )
    return key


def take_frame(store: ArtifactStore, job: FrameJob, clip_key: str) -> str:
    """A frame of another shot's clip, restyled through ControlNet Canny when the job asks."""
    from reelflow.media.frames import extract_frame

    key = keys.image_key(job.project, job.shot, f"{job.spec_hash()}-{clip_key_hash(clip_key)}")
    if store.exists(key):
        return key
    with scratch() as tmp:
        clip = store.get_file(clip_key, tmp / "clip.mp4")
        frame = Image.fromarray(extract_frame(clip, job.frame))
    parents = [clip_key]
    if job.restyle_prompt:
        from reelflow.imaging.generate import restyle_canny

        width, height = _generation_size(frame.size, job)
        spec = _image_spec(
            job, prompt=job.restyle_prompt, width=width, height=height, seed=job.seed
        )
        frame = restyle_canny(
            frame.resize((width, height), Image.LANCZOS), spec, resolve_model_path(job.controlnet)
        )
    store.put_bytes(
        key,
        _png_bytes(frame),
        "image/png",
        lineage_of(
            "image",
            job,
            parents,
            {"step": "restyle" if job.restyle_prompt else "frame", "shot": job.shot},
        ),
    )
    return key


def clip_key_hash(key: str) -> str:
    return key.rsplit("/", 1)[-1].split(".", 1)[0][:8]


def _generation_size(size: tuple[int, int], job: FrameJob) -> tuple[int, int]:
    """Restyle at a size the model handles: the frame's aspect, at most 512 px wide, /8."""
    width, height = size
    scale = min(1.0, 512 / width)
    return max(8, int(width * scale) // 8 * 8), max(8, int(height * scale) // 8 * 8)


# -- clips -----------------------------------------------------------------------------------


def render_clip(store: ArtifactStore, job: ClipJob) -> str:
    """A shot's clip: a camera move over its still, or a transition between two frames."""
    from reelflow.motion.backends import ClipRequest

    key = keys.clip_key(job.project, job.shot, job.spec_hash())
    if store.exists(key):
        return key
    backend = _backend(job.backend, job.backend_options)
    with scratch() as tmp:
        out = tmp / "clip.mp4"
        request_images: list[Path] = []
        parents: list[str] = []
        for index, source in enumerate((job.image_key, job.first_frame_key, job.last_frame_key)):
            if source:
                path = store.get_file(source, tmp / f"in{index}.png")
                request_images.append(path)
                parents.append(source)
        request = ClipRequest(
            images=request_images,
            motion_prompt=job.motion_prompt,
            movement=job.movement,
            duration=job.duration,
            fps=job.fps,
            width=job.width,
            height=job.height,
            seed=job.seed,
        )
        if job.first_frame_key or job.last_frame_key:
            first, last = _transition_ends(job, request_images)
            info = backend.render_transition(first, last, request, out)
        else:
            info = backend.render_shot(request, out)
        store.put_file(
            key,
            out,
            "video/mp4",
            lineage_of(
                "clip",
                job,
                parents,
                {"backend": backend.name, "frames": info.frame_count, "shot": job.shot},
            ),
        )
    return key


_BACKENDS: dict[str, object] = {}


def _backend(name: str, options: dict):
    """One backend instance per (name, options) per process: a generative one keeps its
    pipeline resident across clips instead of reloading it for every shot."""
    from reelflow.motion.backends import get_backend

    resolved = {k: resolve_model_path(v) if k == "model" else v for k, v in options.items()}
    cache_key = f"{name}:{sorted(resolved.items())}"
    if cache_key not in _BACKENDS:
        _BACKENDS[cache_key] = get_backend(name, **resolved)
    return _BACKENDS[cache_key]


def _transition_ends(job: ClipJob, images: list[Path]) -> tuple[Path, Path]:
    """First and last frame of a transition: referenced frames, else the shot's own still."""
    by_role = dict(
        zip(
            [
                r
                for r, k in (
                    ("image", job.image_key),
                    ("first", job.first_frame_key),
                    ("last", job.last_frame_key),
                )
                if k
            ],
            images,
            strict=True,
        )
    )
    first = by_role.get("first") or by_role["image"]
    last = by_role.get("last") or by_role["image"]
    return first, last


# -- edit ------------------------------------------------------------------------------------


def assemble_film(store: ArtifactStore, job: EditJob) -> str:
    from reelflow.editing.assemble import AssemblyClip, assemble

    key = keys.edit_key(job.project, job.spec_hash())
    if store.exists(key):
        return key
    with scratch() as tmp:
        clips = []
        for index, clip in enumerate(job.clips):
            path = store.get_file(clip.key, tmp / f"{index:03d}-{clip.shot}.mp4")
            clips.append(
                AssemblyClip(
                    path=path,
                    duration=clip.duration,
                    transition=clip.transition if index else "cut",
                    transition_duration=clip.transition_duration if index else 0.0,
                )
            )
        out = assemble(
            clips, tmp / "film.mp4", width=job.width, height=job.height, fps=job.fps, crf=job.crf
        )
        store.put_file(
            key,
            out,
            "video/mp4",
            lineage_of("edit", job, [clip.key for clip in job.clips]),
        )
    return key


def make_cover(store: ArtifactStore, job: CoverJob) -> str:
    from reelflow.editing.cover import make_cover as render_cover

    key = keys.cover_key(job.project, job.spec_hash())
    if store.exists(key):
        return key
    with scratch() as tmp:
        film = store.get_file(job.film_key, tmp / "film.mp4")
        out = render_cover(film, tmp / "cover.png", job.title)
        store.put_file(
            key,
            out,
            "image/png",
            lineage_of("cover", job, [job.film_key]),
        )
    return key


# -- finishing -------------------------------------------------------------------------------


def store_input(store: ArtifactStore, project: str, path: Path) -> str:
    """Upload a file the storyboard brings in (music), once per content."""
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    key = keys.input_key(project, digest.hexdigest()[:16], path.suffix.lstrip(".") or "bin")
    return store.put_file(
        key,
        path,
        "application/octet-stream",
        Lineage(kind="input", extra={"filename": path.name}),
        if_absent=True,
    )


def snap_to_music(store: ArtifactStore, job: MusicJob) -> list[float]:
    """Shot durations whose cuts land on the music's beats (within tolerance and min length)."""
    from reelflow.editing.beats import detect_beats, snap_cuts

    with scratch() as tmp:
        music = store.get_file(job.music_key, tmp / "music")
        grid = detect_beats(music)
    snapped = snap_cuts(
        job.durations,
        list(grid.beats),
        tolerance=job.tolerance,
        min_shot=job.min_shot,
        fps=job.fps,
    )
    log.info("music at %.1f BPM: durations %s -> %s", grid.tempo, job.durations, snapped)
    return snapped


def master_with_music(store: ArtifactStore, job: MasterJob) -> str:
    """The film with its music bed, faded out and normalised to the target loudness."""
    from reelflow.editing.audio import mux_music

    key = keys.edit_key(job.project, f"{job.spec_hash()}-master")
    if store.exists(key):
        return key
    with scratch() as tmp:
        film = store.get_file(job.film_key, tmp / "film.mp4")
        music = store.get_file(job.music_key, tmp / "music")
        out = mux_music(
            film, music, tmp / "master.mp4", fade_out=job.fade_out, target_lufs=job.target_lufs
        )
        store.put_file(
            key,
            out,
            "video/mp4",
            lineage_of("edit", job, [job.film_key, job.music_key], {"step": "music"}),
        )
    return key


def export_version(store: ArtifactStore, job: VersionJob, source_aspect: str) -> str:
    """One delivered version: reframed, enhanced (fps, size, denoise), then captioned."""
    from reelflow.editing.enhance import enhance
    from reelflow.editing.subtitles import Caption, burn_subtitles, mux_soft_subtitles, write_srt
    from reelflow.editing.versions import export_version as reframe

    export = job.export
    key = keys.edit_key(job.project, f"{job.spec_hash()}-{export.name}")
    if store.exists(key):
        return key
    with scratch() as tmp:
        current = store.get_file(job.master_key, tmp / "master.mp4")
        if export.aspect != source_aspect or export.codec != "h264":
            current = reframe(current, tmp / "framed.mp4", aspect=export.aspect, codec=export.codec)
        if export.fps or export.size or export.denoise:
            current = enhance(
                current,
                tmp / "enhanced.mp4",
                size=export.size,
                fps=export.fps,
                denoise=export.denoise,
            )
        captions = [Caption(duration=c.duration, zh=c.zh, en=c.en) for c in job.captions]
        if export.captions != "none" and any(c.zh or c.en for c in captions):
            if export.captions == "burn":
                current = burn_subtitles(current, captions, tmp / "captioned.mp4")
            else:
                tracks = {
                    lang: write_srt(captions, tmp / f"{lang}.srt", languages=(lang,))
                    for lang in ("zh", "en")
                }
                current = mux_soft_subtitles(current, tracks, tmp / "captioned.mp4")
        store.put_file(
            key,
            current,
            "video/mp4",
            lineage_of("edit", job, [job.master_key], {"version": export.name}),
        )
    return key
