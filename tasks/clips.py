"""Clip tasks: one clip per shot (a coarse unit: never a frame)."""

from __future__ import annotations

from prefect import task

from reelflow.render import clips, identity
from reelflow.render.identity import ClipDrift
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


@task(
    name="check-clip-drift",
    task_run_name="drift-{shot}",
    cache_policy=CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY,
)
def check_clip_drift(
    shot: str, clip_key: str, still_key: str, clip_model: str | None = None
) -> ClipDrift:
    """First/middle/last frames of a clip against its approved still; flags the drifting ones."""
    return identity.clip_drift(get_store(), shot, clip_key, still_key, clip_model=clip_model)
