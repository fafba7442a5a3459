"""Work pools and global concurrency limits, created or brought in line idempotently."""

from __future__ import annotations

from typing import Any

from deployments.config import ConcurrencyLimitSpec, WorkPoolSpec


def ensure_work_pool(client: Any, spec: WorkPoolSpec) -> str:
    """Create a process work pool unless it exists; returns 'created' or 'unchanged'.

    An existing pool is left alone (an operator may have tuned its job template in the UI),
    unless its type differs, which no worker could serve: that is an error to fix by hand.
    """
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    try:
        pool = client.read_work_pool(spec.name)
    except ObjectNotFound:
        client.create_work_pool(
            WorkPoolCreate(
                name=spec.name,
                type=spec.type,
                description=spec.description,
                base_job_template=ProcessWorker.get_default_base_job_template(),
            )
        )
        return "created"
    if pool.type != spec.type:
        raise RuntimeError(
            f"work pool {spec.name!r} exists with type {pool.type!r}, prefect.yaml wants "
            f"{spec.type!r}: delete it (prefect work-pool delete {spec.name}) and deploy again"
        )
    return "unchanged"


def ensure_concurrency_limit(client: Any, spec: ConcurrencyLimitSpec) -> str:
    """Create the global limit or set its slot count; returns 'created', 'updated', 'unchanged'."""
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.exceptions import ObjectNotFound

    try:
        current = client.read_global_concurrency_limit_by_name(spec.name)
    except ObjectNotFound:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=spec.name, limit=spec.limit, active=True)
        )
        return "created"
    if current.limit == spec.limit and current.active:
        return "unchanged"
    client.update_global_concurrency_limit(
        spec.name, GlobalConcurrencyLimitUpdate(limit=spec.limit, active=True)
    )
    return "updated"
