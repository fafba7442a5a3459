"""Clip step: a shot's clip from its still (a camera move) or from two frames (a transition),
through the video backend the job names; the backend stays resident per process."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from reelflow.render.common import lineage_of, require_weights, scratch
from reelflow.render.jobs import ClipJob, resolve_model_path
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore


def render_clip(store: ArtifactStore, job: ClipJob) -> str:
    """A shot's clip: a camera move over its still, or a transition between two frames."""
    key = job.output_key()
    if store.complete(key):
        return key
    require_weights(job, f"shot {job.shot} clip")
    with scratch() as tmp:
        out, info, backend = clip_file(store, job, tmp)
        store_audio_stem(store, job, out)  # before the clip: a stored clip means both are there
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
                },
            ),
        )
    return key


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


def clip_file(store: ArtifactStore, job: ClipJob, tmp: Path) -> tuple[Path, Any, str]:
    """Render the clip into `tmp` (not stored): (file, backend's info, backend name). Also what
    `regenerate` runs."""
    from reelflow.motion.backends import ClipRequest

    backend = _backend(job.backend, job.backend_options)
    out = tmp / "clip.mp4"
    request_images: list[Path] = []
    for index, source in enumerate((job.image_key, job.first_frame_key, job.last_frame_key)):
        if source:
            request_images.append(store.get_file(source, tmp / f"in{index}.png"))
    references = [  # the characters' library references (wan-vace)
        store.get_file(key, tmp / f"ref{index}{Path(key).suffix}")
        for index, key in enumerate(job.reference_keys)
    ]
    request = ClipRequest(
        reference_images=references,
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
    return out, info, backend.name


_BACKENDS: dict[str, object] = {}
_BACKENDS_LOCK = threading.Lock()


def _backend(name: str, options: dict):
    """One backend instance per (name, options) per process: a generative one keeps its
    pipeline resident across clips instead of reloading it for every shot.

    Shots render in parallel threads: the lock makes two first calls share one instance (a
    generative backend then serialises its calls on its pipeline's own lock)."""
    from reelflow.motion.backends import get_backend

    resolved = {k: resolve_model_path(v) if k == "model" else v for k, v in options.items()}
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
