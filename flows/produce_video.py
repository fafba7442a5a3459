"""produce-video: storyboard -> images -> clips -> film + covers, with three approval gates.

The flow is the director's procedure, one numbered step per stage (flows/stages/). Every
expensive step is a cached task that takes a small job and returns object keys, so a resumed or
repeated run recomputes only what changed: rejecting one shot's images regenerates that shot,
and every other task comes back Cached. Independent work (shots, versions, covers) runs
concurrently on the flow's thread pool; model steps share this process's model slots.
"""

from __future__ import annotations

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from flows.gates import Approval
from flows.notify import on_delivered, on_failed
from flows.stages.clips import clips_stage
from flows.stages.delivery import deliver
from flows.stages.images import images_stage
from flows.stages.models import plan_timing, prepare_run_models
from flows.stages.record import FilmResult, record_run
from flows.stages.run import start_run
from flows.stages.storyboard import review_storyboard
from reelflow.render.identity import IDENTITY_THRESHOLD
from reelflow.render.jobs import ExportSpec
from tasks.common import RESULTS_BLOCK, cpu_slots

__all__ = ["FilmResult", "produce_video"]


@flow(
    name="produce-video",
    result_storage=RESULTS_BLOCK,
    persist_result=True,
    log_prints=True,
    task_runner=ThreadPoolTaskRunner(max_workers=cpu_slots()),
    on_completion=[on_delivered],
    on_failure=[on_failed],
    on_crashed=[on_failed],
)
def produce_video(
    storyboard: str,
    approval: Approval = "manual",
    profile: str = "full",
    exports: list[ExportSpec] | None = None,
    image_model: str | None = None,
    video_model: str | None = None,
    llm_endpoint: str | None = None,
    quality_threshold: float = 0.3,
    identity_threshold: float = IDENTITY_THRESHOLD,
    identity_retries: int = 2,
    fan_out: bool = False,
) -> FilmResult:
    """Render a storyboard (path, s3:// URI or inline YAML/JSON) into a film and its covers.

    `fan_out`: each shot's GPU work also runs as a `render-shot` deployment run on the `gpu`
    pool (flows/render_shot.py); the steps below then find it Cached.
    """
    # 1. Start the run: every input checked (as the CLI checks them), the storyboard, the
    #    profile that fits it to this machine.
    run = start_run(
        storyboard, approval, profile, image_model, video_model, llm_endpoint, fan_out,
        exports=exports, quality_threshold=quality_threshold,
        identity_threshold=identity_threshold, identity_retries=identity_retries,
    )  # fmt: skip
    # 2. The storyboard gate: the contract is approved before anything is rendered.
    review_storyboard(run)
    # 3. Models, built or loaded once, and the run's facts (model, LoRAs, weight hashes)
    #    resolved once; timing: each clip's length, snapped to the music.
    prepare_run_models(run)
    plan_timing(run)
    # 4. Images: K variants per shot; a person picks one or rejects with notes.
    stills = images_stage(run, quality_threshold, identity_threshold, identity_retries)
    # 5. Clips: camera moves over the approved stills, transitions from other clips' frames.
    clips = clips_stage(run, stills.chosen)
    # 6. Delivery: the edit, its music master, every version asked for, a cover for each.
    delivery = deliver(run, clips.keys, run.exports)
    # 7. The record: the manifest of inputs, decisions and outputs.
    return record_run(run, stills, clips, delivery)
