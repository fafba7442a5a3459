"""Edit tasks: assembly of the approved clips and the cover."""

from __future__ import annotations

from prefect import task

from reelflow.render import edit
from reelflow.render.jobs import CoverJob, EditJob, MasterJob, MusicJob, VersionJob
from tasks.common import CACHE, RETRIES, RETRY_DELAY, get_store


@task(
    name="assemble-film",
    task_run_name="assemble-film",
    cache_policy=CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY,
)
def assemble_film(job: EditJob) -> str:
    return edit.assemble_film(get_store(), job)


@task(
    name="make-cover",
    task_run_name="make-cover",
    cache_policy=CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY,
)
def make_cover(job: CoverJob) -> str:
    return edit.make_cover(get_store(), job)


@task(name="upload-input", retries=RETRIES, retry_delay_seconds=RETRY_DELAY)
def upload_input(project: str, ref: str, base_dir: str | None) -> str:
    """Store a file the storyboard names (music, a reference image), confined to the
    storyboard's folder (`base_dir`; None: a bucket storyboard, which names project keys)."""
    from pathlib import Path

    return edit.store_input(get_store(), project, ref, Path(base_dir) if base_dir else None)


@task(
    name="snap-to-music",
    task_run_name="snap-to-music",
    cache_policy=CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY,
)
def snap_to_music(job: MusicJob) -> list[float]:
    return edit.snap_to_music(get_store(), job)


@task(
    name="master-with-music",
    task_run_name="master-with-music",
    cache_policy=CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY,
)
def master_with_music(job: MasterJob) -> str:
    return edit.master_with_music(get_store(), job)


@task(
    name="export-version",
    task_run_name="version-{job.export.name}",
    cache_policy=CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY,
)
def export_version(job: VersionJob, source_aspect: str) -> str:
    return edit.export_version(get_store(), job, source_aspect)
