"""Clip tasks: one clip per shot (a coarse unit: never a frame)."""

from __future__ import annotations

from reelflow.render import clips
from reelflow.render.jobs import ClipJob
from tasks.common import get_store, gpu_slot, step_task

MODEL_FREE = {"animatic", "morph"}


@step_task("render-clip", "clip-{job.shot}")
def render_clip(job: ClipJob) -> str:
    if job.backend in MODEL_FREE:  # OpenCV camera moves and morphs: CPU work, no slot
        return clips.render_clip(get_store(), job)
    with gpu_slot():
        return clips.render_clip(get_store(), job)
