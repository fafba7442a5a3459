"""Clip tasks: one clip per shot (a coarse unit: never a frame)."""

from __future__ import annotations

from reelflow.gpu.speed import CacheGuard
from reelflow.render import clips, identity
from reelflow.render.identity import ClipDrift
from reelflow.render.jobs import ClipJob
from tasks.common import get_store, gpu_slot, step_task

MODEL_FREE = {"animatic", "morph"}


@step_task("render-clip", "clip-{job.shot}")
def render_clip(job: ClipJob) -> str:
    if job.backend in MODEL_FREE:  # OpenCV camera moves and morphs: CPU work, no slot
        return clips.render_clip(get_store(), job)
    with gpu_slot():
        return clips.render_clip(get_store(), job)


@step_task("guard-cache", "cache-guard-{first.shot}")
def guard_cache(first: ClipJob, characters: dict[str, list[str]] | None = None) -> CacheGuard:
    """The run's speed cache checked on its first clip (rendered with and without it; on a
    shot with library characters, name -> reference keys, their identity score decides);
    cached on the job, so a resumed run keeps its decision. (`first`, not `job`: the guard
    writes no object of the job's.)"""
    with gpu_slot():
        return clips.guard_cache(get_store(), first, characters)


@step_task("check-clip-drift", "drift-{shot}")
def check_clip_drift(
    shot: str, clip_key: str, still_key: str, clip_model: str | None = None
) -> ClipDrift:
    """First/middle/last frames of a clip against its approved still; flags the drifting ones."""
    return identity.clip_drift(get_store(), shot, clip_key, still_key, clip_model=clip_model)
