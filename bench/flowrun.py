"""Worker functions that render a whole storyboard: through the flow, or as a plain loop.

Both run in a fresh interpreter (see `bench.worker`); the timer starts after the imports and
the set-up (results block saved, store configured) and stops when the film, cover and manifest
are in the bucket. The plain loop calls the same `reelflow.render` functions in the flow's
order, with the same auto decisions (variant 0 of every shot), delivers the flow's default
version (captions burned in) with its cover, and stores the storyboard and a manifest like the
flow does; it has no Prefect, no review artifacts and no variant scoring.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def run_flow(board_text: str, profile: str, results_bucket: str) -> dict[str, Any]:
    """`produce_video(approval='auto')` once; seconds plus per-task states and run times."""
    return run_flow_series([board_text], profile, results_bucket)["runs"][0]


def run_flow_series(
    board_texts: list[str], profile: str, results_bucket: str, warmup_text: str | None = None
) -> dict[str, Any]:
    """Several `produce_video` runs, one after another, in this one interpreter: a long-lived
    worker's view, where the pipelines stay resident between runs. `warmup_text` (another
    project, so it shares no keys) is rendered first, outside the series, to load them."""
    from blocks.minio_storage import MinIOStorage
    from reelflow.store.settings import S3Settings
    from tasks.common import RESULTS_BLOCK

    block = MinIOStorage.from_settings(S3Settings.from_env().with_bucket(results_bucket))
    block.to_store().ensure_bucket()
    block.save(RESULTS_BLOCK.split("/", 1)[1], overwrite=True)
    warmup = _one_flow(warmup_text, profile)["seconds"] if warmup_text else None
    return {"warmup_seconds": warmup, "runs": [_one_flow(text, profile) for text in board_texts]}


def _one_flow(board_text: str, profile: str) -> dict[str, Any]:
    from flows.produce_video import produce_video

    start = time.perf_counter()
    state = produce_video(
        storyboard=board_text, approval="auto", profile=profile, return_state=True
    )
    result = state.result()
    seconds = time.perf_counter() - start
    states, task_seconds = _task_runs(state.state_details.flow_run_id)
    return {
        "seconds": seconds,
        "film_key": result.film_key,
        "states": states,
        "task_seconds": task_seconds,
    }


def _task_runs(flow_run_id: Any) -> tuple[dict[str, list[str]], dict[str, float]]:
    """Task run name -> states, and task name -> summed run time, from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    states: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    for run in sorted(runs, key=lambda r: r.expected_start_time or r.created):
        states.setdefault(run.name, []).append(run.state.name if run.state else "?")
        base = run.task_key.rsplit("-", 1)[0] if run.task_key else run.name
        seconds[base] = seconds.get(base, 0.0) + run.total_run_time.total_seconds()
    return states, seconds


class _Steps:
    """How the plain loop runs its steps: one after another, or with the flow's parallelism.

    In parallel, steps go to a thread pool as wide as the flow's task runner
    (`tasks.common.cpu_slots`) and model steps hold one of the process's model slots
    (`tasks.common.gpu_slots`), as the flow's tasks do; sequentially every step runs at once.
    """

    def __init__(self, parallel: bool) -> None:
        from tasks.common import cpu_slots, gpu_slots

        self.pool = ThreadPoolExecutor(cpu_slots()) if parallel else None
        self.model_slot = threading.BoundedSemaphore(gpu_slots())

    def submit(self, fn: Callable[..., Any], *args: Any, model: bool = False) -> Future:
        def call() -> Any:
            if not model:
                return fn(*args)
            with self.model_slot:
                return fn(*args)

        if self.pool is not None:
            return self.pool.submit(call)
        done: Future = Future()
        done.set_result(call())
        return done

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def run_plain(board_text: str, profile: str, parallel: bool = False) -> dict[str, Any]:
    """The same film from the same job builders and `reelflow.render` steps, in a plain loop
    (no Prefect): auto approval, variant 0, the default version. `parallel` gives the loop the
    flow's own parallelism (independent shots at once, a transition waiting only for the clip
    it takes a frame from, version and cover together) so the comparison isolates Prefect."""
    from reelflow.render import clips as clip_steps
    from reelflow.render import edit as edit_steps
    from reelflow.render import images as image_steps
    from reelflow.render import models as model_steps
    from reelflow.render.jobs import (
        clip_job,
        cover_job,
        cut_plan,
        default_export,
        edit_job,
        frame_job,
        frame_refs,
        lora_names,
        plan_render,
        resolve_run_facts,
        still_plan,
        version_job,
    )
    from reelflow.render.manifest import RunManifest
    from reelflow.render.profiles import get_profile
    from reelflow.store import keys
    from reelflow.store.artifacts import ArtifactStore
    from reelflow.store.settings import S3Settings
    from reelflow.storyboard import parse_storyboard
    from reelflow.storyboard.characters import resolve_cast

    steps_runner = _Steps(parallel)
    start = time.perf_counter()
    steps: dict[str, float] = {}

    def lap(name: str) -> None:
        steps[name] = time.perf_counter() - start - sum(steps.values())

    started = datetime.now(UTC)
    render_profile = get_profile(profile)
    board = parse_storyboard(board_text, source="<inline>")
    base_dir = Path.cwd()
    store = ArtifactStore(S3Settings.from_env())
    store.ensure_bucket()
    board, cast = resolve_cast(board, store)  # library characters, as the flow's start_run does
    storyboard_key = store.put_json(
        keys.storyboard_key(board.project, board.content_hash()), board, {"kind": "storyboard"},
        if_absent=True,
    )
    if render_profile.image_model == "tiny":
        model_steps.prepare_demo_models(
            lora_names(board), render_profile.image_family or "sd15", render_profile.video_model
        )
    # the run's facts (model, LoRAs, weight hashes) once, as the flow's step 3 does
    facts = resolve_run_facts(board, render_profile, base_dir, cast=cast)
    lap("prepare_models")
    plan = plan_render(board, render_profile, base_dir=base_dir, facts=facts)
    jobs = {job.shot: job for job in plan.images}
    pending = {shot: steps_runner.submit(image_steps.render_variants, store, job, model=True)
               for shot, job in jobs.items()}
    variants = {shot: future.result() for shot, future in pending.items()}
    lap("render_variants")

    def finish_still(shot_id: str) -> str:
        plan = still_plan(jobs[shot_id], board.shot(shot_id), variants[shot_id][0], 0,
                          render_profile)
        if plan.hires is not None:
            steps_runner.submit(image_steps.hires_fix, store, plan.hires, model=True).result()
        if plan.retouch is not None:
            steps_runner.submit(image_steps.retouch, store, plan.retouch, model=True).result()
        return plan.final_key()

    with ThreadPoolExecutor(len(jobs) if parallel else 1) as shots_pool:
        finishing = {shot_id: shots_pool.submit(finish_still, shot_id) for shot_id in jobs}
        chosen = {shot_id: future.result() for shot_id, future in finishing.items()}
    lap("hires_fix")
    durations = [duration for duration, _, _ in cut_plan(board, "storyboard")]
    clip_futures: dict[str, Future] = {}
    frames: dict[str, list[str]] = {}
    for index, shot in enumerate(board.shots):
        taken: dict[str, str] = {}
        for name, ref in frame_refs(shot):
            source = clip_futures[ref.shot].result()
            fjob = frame_job(board, shot, ref, render_profile, source, facts=facts)
            taken[name] = steps_runner.submit(
                image_steps.take_frame, store, fjob, model=True).result()
        if taken:
            frames[shot.id] = list(taken.values())
        job = clip_job(
            board, shot, render_profile, still_key=chosen.get(shot.id), duration=durations[index],
            facts=facts, **taken,
        )
        clip_futures[shot.id] = steps_runner.submit(clip_steps.render_clip, store, job, model=True)
    clips = {shot_id: future.result() for shot_id, future in clip_futures.items()}
    lap("clips_and_frames")
    edit_key = edit_steps.assemble_film(
        store, edit_job(board, clips, cut_plan(board, "storyboard", durations), render_profile.crf)
    )
    export = default_export(board)
    version = version_job(board, edit_key, export, durations, render_profile.delivery)
    film = steps_runner.submit(edit_steps.export_version, store, version)
    cover = steps_runner.submit(
        edit_steps.make_cover, store, cover_job(board, edit_key, export.aspect, version.size))
    film_key, cover_key = film.result(), cover.result()
    steps_runner.close()
    lap("assemble_cover_version")
    manifest = RunManifest(
        run_id="plain", project=board.project, title=board.title, storyboard_key=storyboard_key,
        storyboard_hash=board.content_hash(), profile=profile, approval_policy="auto",
        started_at=started, variants=variants, chosen_images=chosen, frames=frames, clips=clips,
        film_key=film_key, cover_key=cover_key, edit_key=edit_key, master_key=edit_key,
        duration=board.duration,
    )
    store.put_json(keys.manifest_key(board.project, "plain"), manifest,
                   {"kind": "manifest", "parents": [storyboard_key, film_key, cover_key]})
    return {"seconds": time.perf_counter() - start, "film_key": film_key, "steps": steps}


def prepare_models(lora_names: list[str]) -> dict[str, Any]:
    """Build the tiny models (and LoRAs) once, so every timed run finds them ready."""
    from reelflow.render.models import prepare_demo_models

    start = time.perf_counter()
    prepare_demo_models(lora_names)
    return {"seconds": time.perf_counter() - start}
