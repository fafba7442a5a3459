"""Image tasks: variants per shot, hi-res fix of the chosen one, frames taken from clips."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from reelflow.render import identity, images, models
from reelflow.render.identity import IdentityReport
from reelflow.render.jobs import FrameJob, HiresJob, ImageJob, RetouchJob
from tasks.common import CACHE, RETRIES, RETRY_DELAY, get_store


@task(name="prepare-models", cache_policy=NO_CACHE, retries=RETRIES)
def prepare_models(
    lora_names: list[str], family: str = "sd15", video_model: str | None = None
) -> dict[str, str]:
    return models.prepare_demo_models(lora_names, family, video_model)


@task(
    name="render-variants",
    task_run_name="variants-{job.shot}",
    cache_policy=CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY,
)
def render_variants(job: ImageJob) -> list[str]:
    keys = images.render_variants(get_store(), job)
    _log_model_loads()
    return keys


def _log_model_loads() -> None:
    """The proof that a storyboard loads its base model once per worker process."""
    from reelflow.imaging.pipelines import get_pipeline_cache

    get_run_logger().info("model loads in this worker process: %d", get_pipeline_cache().loads)


@task(
    name="hires-fix",
    task_run_name="hires-{job.image.shot}",
    cache_policy=CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY,
)
def hires_fix(job: HiresJob) -> str:
    key = images.hires_fix(get_store(), job)
    _log_model_loads()
    return key


@task(
    name="take-frame",
    task_run_name="frame-{job.shot}-from-{job.source_shot}",
    cache_policy=CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY,
)
def take_frame(job: FrameJob, clip_key: str) -> str:
    return images.take_frame(get_store(), job, clip_key)


@task(
    name="retouch",
    task_run_name="retouch-{job.image.shot}",
    cache_policy=CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY,
)
def retouch(job: RetouchJob) -> str:
    return images.retouch(get_store(), job)


@task(
    name="score-identity",
    task_run_name="score-identity",
    cache_policy=CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY,
)
def score_identity(
    jobs: dict[str, ImageJob], variants: dict[str, list[str]], clip_model: str | None = None
) -> IdentityReport:
    """Identity score per variant of each shot with characters (read from the images'
    lineage where recorded); `clip_model` is part of the cache key since it picks the method."""
    return identity.score_identity(get_store(), jobs, variants, clip_model)
