"""The studio's history, as the Prefect server keeps it: how long earlier runs' steps took.

Each produce-video run labels itself with its work record (`reelflow.work`: profile, device,
each step's units; reelflow/render/estimates.py `WorkRecord`); an estimate reads the recent
runs' records and their finished (not Cached) task runs' durations, and turns them into seconds
per unit for the core's :func:`~reelflow.render.estimates.estimate`. One query for the runs, one
for their task runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from reelflow.render.estimates import (
    KINDS,
    STAGES,
    Estimate,
    Lanes,
    Sample,
    WorkRecord,
    estimate,
    kind_of,
    plan_work,
    price_per_gpu_hour,
)
from reelflow.render.jobs import PREVIZ
from reelflow.render.profiles import RenderProfile
from reelflow.render.weights import environment
from reelflow.storyboard import Storyboard

__all__ = ["WORK_LABEL", "record_work", "stage_seconds", "studio_estimate", "studio_samples"]

#: the flow-run label that holds a run's work record
WORK_LABEL = "reelflow.work"
FLOW = "produce-video"
#: earlier runs an estimate reads (the most recent first)
RECENT_RUNS = 20
#: a run this many runs older than the latest counts half as much in an estimate
HALF_LIFE_RUNS = 3


def device_of(profile: RenderProfile) -> str:
    """The device this machine renders on for ``profile`` (`auto` resolved): `cpu`, `cuda`.
    A profile without models (previz panels, animatic clips) works on the CPU anywhere, and
    is not made to import torch to find that out."""
    if profile.image_model == PREVIZ and profile.video_backend == "animatic":
        return "cpu"
    return str(environment(profile.device)["device"]).split(":", 1)[0]


def run_lanes() -> Lanes:
    """How many steps a run on this machine works at once: the flow's threads (CPU slots) and,
    of those, the model slots (tasks/common.py)."""
    from tasks.common import cpu_slots, gpu_slots

    return Lanes(cpu=cpu_slots(), model=gpu_slots())


def work_record(board: Storyboard, profile_name: str, profile: RenderProfile,
                languages: Sequence[str] | None = None) -> WorkRecord:
    return WorkRecord.of(plan_work(board, profile, languages), profile_name, device_of(profile),
                         run_lanes())


def record_work(client: Any, flow_run_id: UUID, record: WorkRecord) -> None:
    """Label the run with its work record, so later estimates can read its steps."""
    client.update_flow_run_labels(flow_run_id, {WORK_LABEL: record.model_dump_json()})


def _record_of(run: Any) -> WorkRecord | None:
    text = (run.labels or {}).get(WORK_LABEL)
    if not text:
        return None
    try:
        return WorkRecord.model_validate(json.loads(str(text)))
    except ValueError:
        return None


def _seconds(task_run: Any) -> float | None:
    if task_run.start_time and task_run.end_time:
        return (task_run.end_time - task_run.start_time).total_seconds()
    if task_run.total_run_time:
        return task_run.total_run_time.total_seconds()
    return None


def step_shares(task_runs: Iterable[Any],
                lanes: Mapping[str, int] | None = None) -> dict[str, float]:
    """Each finished (Completed, not Cached) counted step's time on one of its stage's lanes,
    by task run id: every moment while k steps of a stage run on L lanes (``lanes``, per stage;
    default one) is counted in full for each when k <= L, else split: L/k of it each.

    Why not a step's own duration: more steps than lanes run at once when they wait in a
    running state for the device's slot, so a step queued behind others looks slower than its
    size makes it. With one lane, the shares of a stage add up to the time it was busy (the
    union of its steps' spans); with more, to its lanes' busy time, which :func:`stage_time`
    lays out again on the lanes of the run being estimated."""
    spans: dict[str, list[tuple[str, float, float]]] = {}
    for run in task_runs:
        kind = kind_of(run.name)
        if kind and run.state_name == "Completed" and run.start_time and run.end_time:
            spans.setdefault(KINDS[kind][0], []).append(
                (str(run.id), run.start_time.timestamp(), run.end_time.timestamp()))
    shares: dict[str, float] = {}
    for stage, steps in spans.items():
        on = max(1, (lanes or {}).get(stage, 1))
        times = sorted({t for _, start, end in steps for t in (start, end)})
        for key, _, _ in steps:
            shares[key] = 0.0
        for t0, t1 in zip(times, times[1:], strict=False):
            running = [key for key, start, end in steps if start <= t0 and end >= t1]
            for key in running:
                shares[key] += (t1 - t0) * min(1.0, on / len(running))
    return shares


def studio_samples(
    client: Any, profile: str, device: str, *, exclude: Iterable[UUID | str] = (),
    since: datetime | None = None,
) -> list[Sample]:
    """Seconds and units of every finished step of the recent runs at ``profile`` on
    ``device`` (Cached steps ran no work and are left out; so are runs in ``exclude``, and
    runs started before ``since``: history older than a change of machine misleads)."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateName,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    skip = {str(e) for e in exclude}
    runs = client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW])),
        sort=FlowRunSort.START_TIME_DESC, limit=RECENT_RUNS,
    )
    if since is not None:
        runs = [r for r in runs if r.start_time and r.start_time >= since]
    records = {str(r.id): rec for r in runs if str(r.id) not in skip
               and (rec := _record_of(r)) and rec.profile == profile and rec.device == device}
    if not records:
        return []
    # the most recent run first (the runs come sorted): each earlier one counts less
    weights = {run_id: 0.5 ** (rank / HALF_LIFE_RUNS) for rank, run_id in enumerate(records)}
    task_runs = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(i) for i in records])),
        task_run_filter=TaskRunFilter(state=TaskRunFilterState(name=TaskRunFilterStateName(
            any_=["Completed"]))),
    )
    by_run: dict[str, list[Any]] = {}
    for task_run in task_runs:
        by_run.setdefault(str(task_run.flow_run_id), []).append(task_run)
    samples = []
    for run_id, steps in by_run.items():
        record = records[run_id]
        shares = step_shares(steps, record.lanes)
        for task_run in steps:
            kind = kind_of(task_run.name)
            units = record.units_of(task_run.name) if kind else None
            seconds = shares.get(str(task_run.id))
            if (task_run.run_count or 1) > 1:  # its time holds the failed tries too
                continue
            if kind and units and seconds is not None:
                samples.append(Sample(kind=kind, seconds=seconds, units=units, run=run_id,
                                      weight=weights[run_id]))
    return samples


def studio_estimate(
    client: Any | None, board: Storyboard, profile_name: str, profile: RenderProfile, *,
    exclude: Iterable[UUID | str] = (), since: datetime | None = None,
    languages: Sequence[str] | None = None,
) -> Estimate:
    """The film's estimate from the studio's history (``client``: a sync Prefect client; None:
    no server to ask, so the declared rule; ``since``: only runs started from then on;
    ``languages``: those the run speaks, default the film's own)."""
    record = work_record(board, profile_name, profile, languages)
    samples = studio_samples(client, profile_name, record.device, exclude=exclude,
                             since=since) if client else []  # fmt: skip
    price, currency = price_per_gpu_hour()
    return estimate(plan_work(board, profile, languages), samples, profile=profile_name,
                    device=record.device, price=price, currency=currency, lanes=run_lanes())


def stage_seconds(client: Any, flow_run_id: UUID, *, settle: float = 5.0) -> dict[str, float]:
    """The run's own time per stage so far: the time its finished (not Cached) steps kept the
    stage busy (their :func:`step_shares` added), as an estimate counts them. Task states
    reach the server a moment after they finish: it waits up to ``settle`` seconds for the
    run's steps to be final there."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + settle
    while True:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        pending = [t for t in task_runs if kind_of(t.name) and not (t.state and
                                                                    t.state.is_final())]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    totals = dict.fromkeys(STAGES, 0.0)
    shares = step_shares(task_runs)
    for task_run in task_runs:
        kind = kind_of(task_run.name)
        if kind and str(task_run.id) in shares:
            totals[KINDS[kind][0]] += shares[str(task_run.id)]
    return totals


def estimate_this_run(board: Storyboard, profile_name: str, profile: RenderProfile,
                      languages: Sequence[str] | None = None) -> Estimate:
    """In a flow run: label it with its work record (for later runs' estimates) and estimate it
    from the runs before it (``languages``: those its versions speak). A server that does not
    answer leaves the declared rule."""
    from prefect.client.orchestration import get_client
    from prefect.logging import get_run_logger
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    try:
        with get_client(sync_client=True) as client:
            if run_id:
                record_work(client, UUID(str(run_id)),
                            work_record(board, profile_name, profile, languages))
            return studio_estimate(client, board, profile_name, profile,
                                   exclude=[run_id] if run_id else [], languages=languages)
    except Exception as exc:  # noqa: BLE001 - an estimate never stops a render
        get_run_logger().warning("no estimate from the history (%s: %s)", type(exc).__name__,
                                 str(exc).splitlines()[0] if str(exc) else "")
        return studio_estimate(None, board, profile_name, profile, languages=languages)


def estimate_and_actual(estimate_: Estimate | None) -> dict[str, Any]:
    """For the run manifest: each stage's estimate beside the time this run's steps took."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    if estimate_ is None:
        return {}
    run_id = flow_run.get_id()
    actual: dict[str, float] = {}
    if run_id:
        try:
            with get_client(sync_client=True) as client:
                actual = stage_seconds(client, UUID(str(run_id)))
        except Exception:  # noqa: BLE001 - the manifest is written without the actual times
            actual = {}
    stages = {name: {**stage.model_dump(), "actual": actual.get(name)}
              for name, stage in estimate_.stages.items()}
    total = estimate_.total.model_dump()
    total["actual"] = sum(actual.values()) if actual else None
    return {"basis": estimate_.basis, "profile": estimate_.profile, "device": estimate_.device,
            "from_history": estimate_.from_history,
            "unit": "seconds the stage's steps ran (busy time)",
            "stages": stages, "total": total, "gpu_hours": estimate_.gpu_hours,
            "price_per_gpu_hour": estimate_.price, "currency": estimate_.currency}
