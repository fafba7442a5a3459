"""Image tasks: variants per shot, hi-res fix and retouch of the chosen one, frames taken from
clips, and the scores reviewers and quality-gate read."""

from __future__ import annotations

import sys

from prefect import get_run_logger
from prefect.cache_policies import NO_CACHE

from reelflow.gpu.speed import CacheGuard
from reelflow.render import identity, images, models
from reelflow.render.identity import IdentityReport
from reelflow.render.jobs import FrameJob, HiresJob, ImageJob, RetouchJob
from tasks.common import RETRIES, get_store, gpu_slot, step_task


@step_task("prepare-models", cache_policy=NO_CACHE, retries=RETRIES, retry_delay_seconds=0)
def prepare_models(
    lora_names: list[str], family: str = "sd15", video_model: str | list[str] | None = None
) -> dict[str, str]:
    return models.prepare_demo_models(lora_names, family, video_model)


@step_task("render-variants", "variants-{job.shot}")
def render_variants(job: ImageJob) -> list[str]:
    with gpu_slot():
        keys = images.render_variants(get_store(), job)
    _log_model_loads()
    return keys


def _log_model_loads() -> None:
    """The proof that a storyboard loads its base model once per worker process."""
    pipelines = sys.modules.get("reelflow.imaging.pipelines")  # not imported: no model loaded
    loads = pipelines.get_pipeline_cache().loads if pipelines else 0  # (nor torch, for previz)
    get_run_logger().info("model loads in this worker process: %d", loads)


@step_task("guard-image-cache", "image-cache-guard-{first.shot}")
def guard_image_cache(first: ImageJob, identity_threshold: float | None = None) -> CacheGuard:
    """The run's speed cache checked on its first image (rendered with and without it; on a
    shot with library characters their identity score decides); cached on the job, so a
    resumed run keeps its decision. (`first`, not `job`: the guard writes no object of the
    job's.)"""
    with gpu_slot():
        return images.guard_cache(get_store(), first, identity_threshold)


@step_task("hires-fix", "hires-{job.image.shot}")
def hires_fix(job: HiresJob) -> str:
    with gpu_slot():
        key = images.hires_fix(get_store(), job)
    _log_model_loads()
    return key


@step_task("take-frame", "frame-{job.shot}-from-{job.source_shot}")
def take_frame(job: FrameJob) -> str:
    with gpu_slot():
        return images.take_frame(get_store(), job)


@step_task("retouch", "retouch-{job.image.shot}")
def retouch(job: RetouchJob) -> str:
    with gpu_slot():
        return images.retouch(get_store(), job)


@step_task("score-variants", cache_policy=NO_CACHE)
def score_variants(variants: dict[str, list[str]], palette: list[str]) -> dict[str, list[float]]:
    """Sharpness and palette fit per variant, 0..1, for the contact sheet and quality-gate."""
    return images.score_variants(get_store(), variants, palette)


@step_task("score-identity")
def score_identity(
    jobs: dict[str, ImageJob], variants: dict[str, list[str]], clip_model: str | None = None
) -> IdentityReport:
    """Identity score per variant of each shot with characters (read from the images'
    lineage where recorded); `clip_model` is part of the cache key since it picks the method."""
    return identity.score_identity(get_store(), jobs, variants, clip_model)
