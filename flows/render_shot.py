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

from reelflow.render.jobs import ClipJob, HiresJob, ImageJob, clip_job, hires_job, needs_image
from reelflow.render.profiles import RenderProfile
from reelflow.store import keys
from reelflow.storyboard import Storyboard
from tasks.clips import render_clip
from tasks.common import RESULTS_BLOCK, get_store
from tasks.images import hires_fix, prepare_models, render_variants

DEPLOYMENT = "render-shot/render-shot"
GPU_LIMIT = "gpu"
POLL_SECONDS = 1.0
MAX_RESUBMITS = 2


class ShotOutput(BaseModel):
    shot: str
    variants: list[str] = Field(default_factory=list)
    hires: str | None = None
    clip: str | None = None


@flow(name="render-shot", result_storage=RESULTS_BLOCK, persist_result=True, log_prints=True)
def render_shot(
    image_job: ImageJob | None = None,
    hires_job: HiresJob | None = None,
    clip_job: ClipJob | None = None,
    tiny_models: list[str] | None = None,
) -> ShotOutput:
    """Variants, then the hi-res fix, then the clip (fed the hi-res still), for one shot.

    `tiny_models`: the full LoRA name set of the demo/test profile, so that every machine builds
    the same tiny models (None: the job names real models).
    """
    first = image_job or (hires_job.image if hires_job else None)
    shot = first.shot if first else (clip_job.shot if clip_job else "?")
    out = ShotOutput(shot=shot)
    with concurrency(GPU_LIMIT, occupy=1, strict=True):
        if tiny_models is not None:
            prepare_models(tiny_models, first.model.family if first else "sd15")
        if image_job is not None:
            out.variants = render_variants(image_job)
        if hires_job is not None:
            out.hires = hires_fix(hires_job)
        if clip_job is not None:
            if clip_job.image_key is None and out.hires:
                clip_job = clip_job.model_copy(update={"image_key": out.hires})
            out.clip = render_clip(clip_job)
    return out


# -- the parent's side ---------------------------------------------------------------------------


def tiny_model_names(board: Storyboard, profile: RenderProfile) -> list[str] | None:
    """The LoRA names produce_video builds tiny models for (None for real models)."""
    from reelflow.render.jobs import lora_names

    return lora_names(board) if profile.image_model == "tiny" else None


def fan_out(work: list[dict[str, Any]], *, label: str) -> list[ShotOutput]:
    """One render-shot deployment run per item, all at once on the `gpu` pool; wait for all.

    A shot run that ends Crashed (its worker or machine died; the crashed-run automation marks
    it) is re-submitted, up to MAX_RESUBMITS times, and another worker takes it. Raises when a
    shot run does not complete (its state message says why).
    """
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    logger = get_run_logger()
    if not work:
        return []

    def submit(params: dict[str, Any]) -> Any:
        return run_deployment(DEPLOYMENT, parameters=params, timeout=0, as_subflow=True)

    runs = [submit(params) for params in work]
    resubmits = [0] * len(runs)
    total = len(runs)
    artifact_id = create_progress_artifact(
        0.0, description=f"{label}: {total} shot runs on the gpu pool"
    )
    finished: dict[int, Any] = {}
    with get_client(sync_client=True) as client:
        while len(finished) < total:
            for i, run in enumerate(runs):
                if i in finished:
                    continue
                current = client.read_flow_run(run.id)
                if not (current.state and current.state.is_final()):
                    continue
                if current.state.is_crashed() and resubmits[i] < MAX_RESUBMITS:
                    runs[i] = submit(work[i])
                    resubmits[i] += 1
                    logger.warning("%s: %s crashed (%s); re-submitted as %s", label,
                                   current.name, current.state.message, runs[i].name)
                    continue
                finished[i] = current
                logger.info("%s: %s %s", label, current.name, current.state.name)
                update_progress_artifact(artifact_id, 100.0 * len(finished) / total)
            if len(finished) < total:
                time.sleep(POLL_SECONDS)
    failed = [r for r in finished.values() if not r.state.is_completed()]
    if failed:
        raise RuntimeError(
            f"{label}: {len(failed)} of {total} shot runs failed: "
            + "; ".join(f"{r.name}: {r.state.message}" for r in failed)
        )
    return [finished[i].state.result() for i in range(total)]


def _variant_keys(job: ImageJob) -> list[str]:
    """The keys reelflow.produce.render_variants writes for this job."""
    base = job.spec_hash()
    return [keys.image_key(job.project, job.shot, f"{base}-v{i}") for i in range(job.variants)]


def fan_out_variants(
    jobs: dict[str, ImageJob], board: Storyboard, profile: RenderProfile
) -> list[ShotOutput]:
    """Every shot's variants as its own render-shot run."""
    models = tiny_model_names(board, profile)
    store = get_store()
    todo = [  # a resumed run finds them in the bucket and starts no shot runs
        job for job in jobs.values()
        if not all(store.exists(key) for key in _variant_keys(job))
    ]
    return fan_out(
        [{"image_job": job.model_dump(mode="json"), "tiny_models": models} for job in todo],
        label="variants",
    )


def fan_out_shots(
    board: Storyboard,
    profile: RenderProfile,
    jobs: dict[str, ImageJob],
    variants: dict[str, list[str]],
    picks: dict[str, int],
) -> list[ShotOutput]:
    """Hi-res fix and clip of every shot that needs nothing from another shot's clip.

    Shots built from another clip's frames (first/last-frame transitions) stay with the parent,
    which renders them in storyboard order once the clips they need exist.
    """
    models = tiny_model_names(board, profile)
    store = get_store()
    work: list[dict[str, Any]] = []
    for shot in board.shots:
        if shot.id not in jobs or not needs_image(shot):
            continue
        index = min(max(picks.get(shot.id, 0), 0), len(variants[shot.id]) - 1)
        params: dict[str, Any] = {"tiny_models": models}
        clip = clip_job(board, shot, profile)
        still = variants[shot.id][index]
        if profile.hires_fix:
            hires = hires_job(jobs[shot.id], still, index, profile)
            params["hires_job"] = hires.model_dump(mode="json")
            still = keys.image_key(hires.image.project, hires.image.shot, hires.spec_hash())
        else:
            clip = clip.model_copy(update={"image_key": still})
        wanted = [still]
        if shot.first_frame is None and shot.last_frame is None:
            params["clip_job"] = clip.model_dump(mode="json")
            clip = clip.model_copy(update={"image_key": still})
            wanted.append(keys.clip_key(clip.project, clip.shot, clip.spec_hash()))
        if not all(store.exists(key) for key in wanted):
            work.append(params)
    return fan_out(work, label="shots")
