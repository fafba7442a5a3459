"""Clip tasks: one clip per shot (a coarse unit: never a frame)."""

from __future__ import annotations

from prefect import task

from reelflow.render import clips
from reelflow.render.jobs import ClipJob
from tasks.common import CACHE, RETRIES, RETRY_DELAY, get_store


@task(
    name="render-clip",
    task_run_name="clip-{job.shot}",
    cache_policy=CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY,
)
def render_clip(job: ClipJob) -> str:
    return clips.render_clip(get_store(), job)
