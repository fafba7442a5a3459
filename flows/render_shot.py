"""render-shot: one shot's GPU work, the unit `produce_video(fan_out=True)` spreads over GPUs.

It takes small values (jobs whose hashes name their outputs) and returns object keys. The same
tasks run here as in produce_video, with the same inputs and the same result storage, so the
cache entries a render-shot run leaves are the ones the parent flow finds: fan-out is a prefetch.
The parent then walks its usual path and every task comes back Cached; if a shot run is lost, the
parent simply renders that shot itself. Correctness never depends on the fan-out.

GPU work holds a slot of the strict global concurrency limit `gpu` (created by `reelflow deploy`,
one slot per GPU); each `gpu` pool worker is started with its own CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.concurrency.sync import concurrency
from pydantic import BaseModel, Field

from reelflow.render.jobs import (
    ClipJob,
    ImageJob,
    RunFacts,
    StillPlan,
    clip_job,
    lora_names,
    needs_image,
)
from reelflow.render.profiles import RenderProfile
from reelflow.storyboard import Storyboard
from tasks.clips import render_clip
from tasks.common import RESULTS_BLOCK, get_store
from tasks.images import hires_fix, prepare_models, render_variants, retouch

DEPLOYMENT = "render-shot/render-shot"
GPU_LIMIT = "gpu"
POLL_SECONDS = 1.0
MAX_RESUBMITS = 2


class ShotOutput(BaseModel):
    shot: str
    variants: list[str] = Field(default_factory=list)
    still: str | None = None
    clip: str | None = None


@flow(name="render-shot", result_storage=RESULTS_BLOCK, persist_result=True, log_prints=True)
def render_shot(
    image_job: ImageJob | None = None,
    still: StillPlan | None = None,
    clip_job: ClipJob | None = None,
    tiny_models: list[str] | None = None,
) -> ShotOutput:
    """Variants; or the chosen variant's still plan (hi-res fix, retouch) and then the clip fed
    that still. Every job comes from the parent's builders, so keys and cache entries match.

    `tiny_models`: the full LoRA name set of the demo/test profile, so that every machine builds
    the same tiny models (None: the jobs name real models).
    """
    first = image_job or (still.hires.image if still and still.hires else None)
    shot = image_job.shot if image_job else (clip_job.shot if clip_job else "?")
    out = ShotOutput(shot=shot)
    with concurrency(GPU_LIMIT, occupy=1, strict=True):
        if tiny_models is not None:
            prepare_models(tiny_models, first.model.family if first else "sd15")
        if image_job is not None:
            out.variants = render_variants(image_job)
        if still is not None:
            if still.hires is not None:
                hires_fix(still.hires)
            if still.retouch is not None:
                retouch(still.retouch)
            out.still = still.final_key()
        if clip_job is not None:
            out.clip = render_clip(clip_job)
    return out


# -- the parent's side ---------------------------------------------------------------------------


def tiny_model_names(board: Storyboard, profile: RenderProfile) -> list[str] | None:
    """The LoRA names produce_video builds tiny models for (None for real models)."""
    return lora_names(board) if profile.image_model == "tiny" else None


def fan_out(work: list[dict[str, Any]], *, label: str) -> list[ShotOutput]:
    """One render-shot deployment run per item, all at once on the `gpu` pool; wait for all.

    The wait asks the server one question per poll (which of these runs have ended?), not one
    per run. A shot run that ends Crashed (its worker or machine died; the crashed-run
    automation marks it) is re-submitted, up to MAX_RESUBMITS times, and another worker takes
    it. Raises when a shot run does not complete (its state message says why).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import TERMINAL_STATES
    from prefect.deployments import run_deployment

    logger = get_run_logger()
    if not work:
        return []

    def submit(params: dict[str, Any]) -> Any:
        return run_deployment(DEPLOYMENT, parameters=params, timeout=0, as_subflow=True)

    waiting = {submit(params).id: i for i, params in enumerate(work)}  # run id -> work index
    resubmits = [0] * len(work)
    total = len(work)
    artifact_id = create_progress_artifact(
        0.0, description=f"{label}: {total} shot runs on the gpu pool"
    )
    finished: dict[int, Any] = {}
    with get_client(sync_client=True) as client:
        while waiting:
            ended = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=list(waiting)),
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=list(TERMINAL_STATES))
                    ),
                )
            )  # at most a page of them: the rest come with the next poll
            for current in ended:
                i = waiting.pop(current.id)
                if current.state.is_crashed() and resubmits[i] < MAX_RESUBMITS:
                    again = submit(work[i])
                    waiting[again.id] = i
                    resubmits[i] += 1
                    logger.warning("%s: %s crashed (%s); re-submitted as %s", label,
                                   current.name, current.state.message, again.name)
                    continue
                finished[i] = current
                logger.info("%s: %s %s", label, current.name, current.state.name)
                update_progress_artifact(artifact_id, 100.0 * len(finished) / total)
            if waiting and not ended:  # after progress, ask again at once: a page may be full
                time.sleep(POLL_SECONDS)
    failed = [r for r in finished.values() if not r.state.is_completed()]
    if failed:
        raise RuntimeError(
            f"{label}: {len(failed)} of {total} shot runs failed: "
            + "; ".join(f"{r.name}: {r.state.message}" for r in failed)
        )
    return [finished[i].state.result() for i in range(total)]


def fan_out_variants(
    jobs: dict[str, ImageJob], board: Storyboard, profile: RenderProfile
) -> list[ShotOutput]:
    """Every shot's variants as its own render-shot run."""
    models = tiny_model_names(board, profile)
    store = get_store()
    todo = [  # a resumed run finds them in the bucket and starts no shot runs
        job for job in jobs.values() if not all(store.complete(k) for k in job.variant_keys())
    ]
    return fan_out(
        [{"image_job": job.model_dump(mode="json"), "tiny_models": models} for job in todo],
        label="variants",
    )


def fan_out_shots(
    board: Storyboard,
    profile: RenderProfile,
    plans: dict[str, StillPlan],
    durations: list[float],
    facts: RunFacts | None = None,
) -> list[ShotOutput]:
    """Still plan (hi-res fix, retouch) and clip of every shot that needs nothing from another
    shot's clip, built with the same builders the parent's clips stage uses.

    Shots built from another clip's frames (first/last-frame transitions) stay with the parent,
    which renders them once the clips they need exist.
    """
    models = tiny_model_names(board, profile)
    store = get_store()
    work: list[dict[str, Any]] = []
    for index, shot in enumerate(board.shots):
        if shot.id not in plans or not needs_image(shot):
            continue
        plan = plans[shot.id]
        params: dict[str, Any] = {"still": plan.model_dump(mode="json"), "tiny_models": models}
        wanted = [plan.final_key()]
        if shot.first_frame is None and shot.last_frame is None:
            clip = clip_job(
                board,
                shot,
                profile,
                still_key=plan.final_key(),
                duration=durations[index],
                facts=facts,
            )
            params["clip_job"] = clip.model_dump(mode="json")
            wanted.append(clip.output_key())
        if not all(store.complete(key) for key in wanted):
            work.append(params)
    return fan_out(work, label="shots")
