"""Clip step: a shot's clip from its still (a camera move) or from two frames (a transition),
through the video backend the job names; the backend stays resident per process.

A backend that samples latents (``saves_latents``: LTX-2) keeps each window's latents in the
bucket beside the clip (:class:`BucketLatents`, keyed by the clip's job) before it decodes, so a
clip whose decode failed or was killed is decoded again from them, not sampled again."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reelflow.motion.latents import read_latents, write_latents
from reelflow.render.common import lineage_of, require_weights, scratch
from reelflow.render.jobs import ClipJob, resolve_model_path
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore


def render_clip(store: ArtifactStore, job: ClipJob) -> str:
    """A shot's clip: a camera move over its still, or a transition between two frames. Its
    lineage says what made it: backend, model hash, window plan, decode settings, kept latents."""
    key = job.output_key()
    if store.complete(key):
        return key
    require_weights(job, f"shot {job.shot} clip")
    with scratch() as tmp:
        out, info, backend = clip_file(store, job, tmp, keep_latents=True)
        store_audio_stem(store, job, out)  # before the clip: a stored clip means both are there
        made = made_with(store, job, tmp)
        speed = speed_lineage(job)
        store.put_file(
            key,
            out,
            "video/mp4",
            lineage_of(
                "clip",
                job,
                job_parents(job),
                {
                    "backend": backend,
                    # which pipeline class and code version made it (model weights: `weights`)
                    "backend_identity": _backend(job.backend, job.backend_options).identity,
                    "frames": info.frame_count,
                    "shot": job.shot,
                    "model_sha256": job.model_sha256,
                    **made,
                    **({"speed": speed} if speed else {}),
                    **memory_lineage(job),
                },
            ),
        )
    return key


def memory_lineage(job: ClipJob) -> dict[str, Any]:
    """`{"memory": ...}`: the memory choices a generative clip was made with (the pins, offload
    included, and the plan its pipeline was loaded with) for the sidecar; {} for the others."""
    backend = _backend(job.backend, job.backend_options)
    if not hasattr(backend, "memory_lineage"):
        return {}
    return {"memory": backend.memory_lineage()}


def latents_key(clip_key: str, window: int) -> str:
    """Window ``window``'s sampled latents beside the clip: ``<hash>.latents-w<n>.safetensors``
    (its sidecar ``<hash>.latents-w<n>.json`` is its own)."""
    base, dot, _ = clip_key.rpartition(".")
    if not dot or "/clips/" not in base:
        raise ValueError(f"not a clip key: {clip_key!r}")
    return f"{base}.latents-w{window}.safetensors"


class BucketLatents:
    """A :class:`~reelflow.motion.latents.LatentCache` in the bucket, for one clip job: each
    window's latents are a safetensors object with a lineage sidecar naming the job."""

    def __init__(self, store: ArtifactStore, job: ClipJob, tmp: Path) -> None:
        self.store, self.job, self.tmp = store, job, tmp

    def key(self, window: int) -> str:
        return latents_key(self.job.output_key(), window)

    def load(self, window: int) -> dict[str, Any] | None:
        key = self.key(window)
        if not self.store.complete(key):
            return None
        return read_latents(self.store.get_file(key, self.tmp / f"latents-w{window}.in"))

    def save(self, window: int, tensors: dict[str, Any], meta: dict[str, str]) -> None:
        with tempfile.TemporaryDirectory(prefix="reelflow-latents-", dir=self.tmp) as work:
            path = write_latents(Path(work) / "latents.safetensors", tensors, meta)
            shapes = {name: list(t.shape) for name, t in tensors.items()}
            self.store.put_file(
                self.key(window),
                path,
                "application/octet-stream",
                lineage_of("clip-latents", self.job, job_parents(self.job),
                           {"clip": self.job.output_key(), "shot": self.job.shot,
                            "backend": self.job.backend, "window": window, "shapes": shapes,
                            **meta}),
            )  # fmt: skip

    def stored(self) -> list[str]:
        """Keys of the windows kept so far, in order."""
        out = []
        while self.store.complete(self.key(len(out))):
            out.append(self.key(len(out)))
        return out


def made_with(store: ArtifactStore, job: ClipJob, tmp: Path) -> dict[str, Any]:
    """What the lineage says made the clip beyond its job: the window plan and the decode
    settings (a generative backend), and the kept latents' keys."""
    backend = _backend(job.backend, job.backend_options)
    if not hasattr(backend, "made_with"):
        return {}
    made = dict(backend.made_with(clip_request(job, tmp / "in0.png")))
    if getattr(backend, "saves_latents", False):
        made["latents"] = BucketLatents(store, job, tmp).stored()
    return made


def clip_request(job: ClipJob, *images: Path, references: Sequence[Path] = ()) -> Any:
    """The backend's request for ``job`` (``images``: its sources, ``references``: its
    characters' library references, fetched)."""
    from reelflow.motion.backends import ClipRequest

    return ClipRequest(
        reference_images=list(references),
        images=list(images),
        motion_prompt=job.motion_prompt,
        movement=job.movement,
        duration=job.duration,
        fps=job.fps,
        width=job.width,
        height=job.height,
        seed=job.seed,
    )


def store_audio_stem(store: ArtifactStore, job: ClipJob, clip: Path) -> str | None:
    """The clip's own sound (a backend that makes it, LTX-2, leaves a WAV beside the clip),
    stored beside the clip for the mix; its sidecar names the clip job. None: a silent clip."""
    from reelflow.motion.common import audio_stem_path
    from reelflow.motion.ltx2 import read_wav

    stem = audio_stem_path(clip)
    if not stem.is_file():
        return None
    audio, rate = read_wav(stem)
    key = keys.clip_audio_key(job.output_key())
    return store.put_file(
        key,
        stem,
        "audio/wav",
        lineage_of(
            "clip-audio",
            job,
            job_parents(job),
            {
                "clip": job.output_key(),
                "backend": job.backend,
                "shot": job.shot,
                "sample_rate": rate,
                "channels": int(audio.shape[0]),
                "duration": audio.shape[1] / rate,
            },
        ),
    )


def job_parents(job: ClipJob) -> list[str]:
    return [k for k in (job.image_key, job.first_frame_key, job.last_frame_key) if k] + list(
        job.reference_keys
    )


def clip_file(
    store: ArtifactStore, job: ClipJob, tmp: Path, *, keep_latents: bool = False,
    cache: bool | None = None, name: str = "clip.mp4",
) -> tuple[Path, Any, str]:
    """Render the clip into `tmp` (not stored): (file, backend's info, backend name). Also what
    `regenerate` runs (it samples afresh: it checks that sampling reproduces the clip).
    `keep_latents`: a backend that samples latents keeps them in the bucket before decoding,
    and decodes those an earlier attempt kept instead of sampling again. A job's speed cache
    runs once its guard kept it (`cache` forces it on or off: the guard's two renders)."""
    backend = _backend(job.backend, job.backend_options)
    out = tmp / name
    request_images: list[Path] = []
    for index, source in enumerate((job.image_key, job.first_frame_key, job.last_frame_key)):
        if source:
            request_images.append(store.get_file(source, tmp / f"in{index}.png"))
    references = [  # the characters' library references (wan-vace)
        store.get_file(key, tmp / f"ref{index}{Path(key).suffix}")
        for index, key in enumerate(job.reference_keys)
    ]
    request = clip_request(job, *request_images, references=references)
    kept = {}
    if keep_latents and getattr(backend, "saves_latents", False):
        kept["latents"] = BucketLatents(store, job, tmp)
    with _speed(backend, job, cache):
        if job.first_frame_key or job.last_frame_key:
            first, last = _transition_ends(job, request_images)
            info = backend.render_transition(first, last, request, out, **kept)
        else:
            info = backend.render_shot(request, out, **kept)
    return out, info, backend.name


def speed_options(job: ClipJob):
    """The job's speed options (`backend_options["speed"]`), None without."""
    from reelflow.gpu.speed import SpeedOptions

    raw = job.backend_options.get("speed")
    return SpeedOptions.model_validate(raw) if raw else None


def _pipe_of(backend: Any) -> Any:
    """A generative backend's resident diffusers pipeline (loaded on first use); None for the
    model-free ones."""
    return backend.pipe if isinstance(getattr(type(backend), "pipe", None), property) else None


@contextmanager
def _speed(backend: Any, job: ClipJob, cache: bool | None) -> Iterator[None]:
    """The cache on or off around one render (the transformer is shared by the process's jobs,
    so every generative render sets it), and the transformer's blocks compiled when asked."""
    from reelflow.gpu.speed import cache_state, compile_blocks

    pipe = _pipe_of(backend)
    if pipe is None:
        yield
        return
    options = speed_options(job)
    _COMPILE_NOTES[job.spec_hash()] = compile_blocks(pipe, options, str(backend.device))
    with cache_state(pipe, options, force=cache):
        yield


_COMPILE_NOTES: dict[str, str | None] = {}


def speed_lineage(job: ClipJob) -> dict[str, Any]:
    """The speed options a clip was made with, for its sidecar: the cache, the guard's figures
    and what compilation did (or why it was skipped)."""
    from reelflow.gpu.speed import lineage

    return lineage(speed_options(job), _COMPILE_NOTES.get(job.spec_hash()))


def guard_cache(
    store: ArtifactStore,
    job: ClipJob,
    characters: dict[str, list[str]] | None = None,
    identity_threshold: float | None = None,
):
    """The guard of the job's cache: the clip rendered without and with it, compared frame by
    frame (PSNR). A shot that shows library characters (`characters`: name -> reference image
    keys) is decided by their identity score instead, the weakest of the first, middle and
    last frames (the identity gate's scorer). Returns a `CacheGuard`; the caller keys the
    run's clips with it."""
    import numpy as np

    from reelflow.gpu.speed import run_guard
    from reelflow.media.frames import read_frames

    options = speed_options(job)
    if options is None or options.cache is None:
        raise ValueError(f"shot {job.shot}: no speed.cache to guard")
    identity = None
    if characters:
        from PIL import Image

        from reelflow.render.common import load_image
        from reelflow.render.identity import default_clip_model, score_image

        model = default_clip_model()
        references = {name: [load_image(store, key) for key in refs]
                      for name, refs in characters.items()}  # fmt: skip

        def identity(frames: np.ndarray) -> float:
            picked = (frames[0], frames[len(frames) // 2], frames[-1])
            return min(min(score_image(Image.fromarray(frame), references, model).values())
                       for frame in picked)  # fmt: skip

    with scratch() as tmp:

        def render(cached: bool) -> np.ndarray:
            out, _, _ = clip_file(store, job, tmp, cache=cached, name=f"guard-{int(cached)}.mp4")
            return np.stack(list(read_frames(out)))

        return run_guard(job.shot, options, render, identity=identity,
                         identity_threshold=identity_threshold)


def with_guard(job: ClipJob, guard: Any) -> ClipJob:
    """`job` keyed with the guard's decision: the cache runs (and is in the key) when kept;
    turned off, the figures stay in the job's options so its lineage shows why."""
    options = dict(job.backend_options)
    options["speed"] = {**options["speed"], "guard": guard.model_dump(mode="json")}
    return job.model_copy(update={"backend_options": options})


_BACKENDS: dict[str, object] = {}
_BACKENDS_LOCK = threading.Lock()


def _backend(name: str, options: dict):
    """One backend instance per (name, options) per process: a generative one keeps its
    pipeline resident across clips instead of reloading it for every shot.

    Shots render in parallel threads: the lock makes two first calls share one instance (a
    generative backend then serialises its calls on its pipeline's own lock)."""
    from reelflow.motion.backends import get_backend

    resolved = {k: resolve_model_path(v) if k in ("model", "upsampler") else v
                for k, v in options.items()
                if k != "speed"}  # fmt: skip (speed options are set per render: `_speed`)
    cache_key = f"{name}:{sorted(resolved.items())}"
    with _BACKENDS_LOCK:
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
