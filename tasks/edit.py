"""Edit tasks: assembly of the approved clips and the cover."""

from __future__ import annotations

from prefect import task

from reelflow import produce
from reelflow.plan import CoverJob, EditJob
from tasks.common import CACHE, RETRIES, RETRY_DELAY, get_store


@task(name="assemble-film", cache_policy=CACHE, retries=RETRIES, retry_delay_seconds=RETRY_DELAY)
def assemble_film(job: EditJob) -> str:
    return produce.assemble_film(get_store(), job)


@task(name="make-cover", cache_policy=CACHE, retries=RETRIES, retry_delay_seconds=RETRY_DELAY)
def make_cover(job: CoverJob) -> str:
    return produce.make_cover(get_store(), job)
