"""Stage 5: clips. Each shot's clip from its approved still (a camera move), or a transition
between frames taken from other shots' clips; a person approves them or asks for a new take."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from flows.gates import ClipsReview, wait_for_review
from flows.stages.finishing import Finishing
from flows.stages.run import RunContext
from flows.stages.voice import lines_on_table, retake_lines, retaken_now, voice_lines
from reelflow.gpu.speed import CacheGuard
from reelflow.progress import Counter, step
from reelflow.render.clips import with_guard
from reelflow.render.decisions import GateSpec
from reelflow.render.jobs import ClipJob, clip_job, frame_job, frame_refs, shot_seed
from reelflow.storyboard import Shot, Storyboard
from tasks.clips import check_clip_drift, guard_cache, render_clip
from tasks.images import take_frame
from tasks.review import clips_review

log = logging.getLogger(__name__)


class Clips(BaseModel):
    keys: dict[str, str]  # shot -> approved clip, storyboard order
    frames: dict[str, list[str]] = {}  # shot -> frames it took from other clips
    motion: dict[str, str] = {}  # shot -> motion prompt used
    backends: dict[str, str] = {}  # shot -> video backend (the run's, or the shot's own)
    notes: dict[str, list[str]] = {}
    seeds: dict[str, int] = {}
    drifting: dict[str, list[str]] = {}  # shot -> frames (first/middle/last) off its still
    replaced: dict[str, str] = {}  # shot -> the clip its last regeneration replaced
    cache_guard: CacheGuard | None = None  # the speed cache's check on the run's first clip
    retaken: list[str] = []  # shots whose voice-over line the last round re-took


def clips_stage(run: RunContext, chosen: dict[str, str]) -> Clips:
    clips = Clips(keys={})
    round_, redo = 1, None  # round 1 makes every clip; later rounds what was sent back
    while True:
        render_clips(run, clips, chosen, round_, redo)
        if run.attended:
            check_drift(run, clips, chosen)
        redo = review_clips(run, clips, round_)
        if not redo and not clips.retaken:  # a re-taken line is heard at the next round
            return clips
        clips.replaced = {shot_id: clips.keys[shot_id] for shot_id in redo}
        for shot_id, notes in redo.items():
            if notes:
                clips.notes.setdefault(shot_id, []).append(notes)
        round_ += 1


def remade(board: Storyboard, redo: Iterable[str]) -> set[str]:
    """The shots a round makes again: those sent back, and every transition that takes frames
    from one of them (its frames change with its source)."""
    out = set(redo)
    for shot in board.shots:  # storyboard order: a transition takes frames from earlier shots
        if any(ref.shot in out for _, ref in frame_refs(shot)):
            out.add(shot.id)
    return out


def render_clips(
    run: RunContext,
    clips: Clips,
    chosen: dict[str, str],
    round_: int = 1,
    redo: Iterable[str] | None = None,
) -> None:
    """Shots with a still start at once, concurrently; a transition starts as soon as the clips
    it takes frames from are done. Progress counts clips as they finish; a later round counts
    only the shots it makes again (the others come back Cached). Keys do not depend on
    completion order."""
    board = run.board
    counted = {shot.id for shot in board.shots} if redo is None else remade(board, redo)
    counter = Counter("clips", len(counted), round_=round_)
    finished: dict[str, str] = {}  # shot -> clip key, as they finish
    frames: dict[str, dict[str, str]] = {}  # transition -> its frames (ClipJob field -> key)
    not_started = list(board.shots)
    work: Finishing[tuple[str, str | None]] = Finishing()  # (shot, frame field or None: clip)

    index = {shot.id: i for i, shot in enumerate(board.shots)}

    def start_clip(shot: Shot) -> None:
        taken = frames.get(shot.id, {})
        job = clip_job(
            board,
            shot,
            run.profile,
            still_key=chosen.get(shot.id),
            duration=run.durations[index[shot.id]],
            notes=clips.notes.get(shot.id),
            seed=clips.seeds.get(shot.id),
            facts=run.facts,
            **taken,
        )
        job = guarded(clips, job, cast_references(board, shot))
        clips.frames[shot.id] = [taken[field] for field, _ in frame_refs(shot)]
        clips.motion[shot.id] = job.motion_prompt
        clips.backends[shot.id] = job.backend
        work.add((shot.id, None), render_clip.submit(job))

    def start_ready() -> None:
        for shot in list(not_started):
            refs = frame_refs(shot)
            if any(ref.shot not in finished for _, ref in refs):
                continue
            not_started.remove(shot)
            if not refs:
                start_clip(shot)
            for field, ref in refs:
                job = frame_job(board, shot, ref, run.profile, finished[ref.shot],
                                base_dir=run.base_dir, facts=run.facts)  # fmt: skip
                work.add((shot.id, field), take_frame.submit(job))

    start_ready()
    for (shot_id, field), future in work:
        key = future.result()
        if field is not None:  # a frame for a transition: its clip starts with the last one
            frames.setdefault(shot_id, {})[field] = key
            shot = board.shot(shot_id)
            if len(frames[shot_id]) == len(frame_refs(shot)):
                start_clip(shot)
            continue
        finished[shot_id] = key
        if shot_id in counted:
            counter.advance(shot_id)
            if round_ == 1:
                run.advance()
        start_ready()
    if not_started:  # validation refuses frames from later or unknown shots; never silently
        raise RuntimeError(f"clips never started (frames from shots without a clip): "
                           f"{', '.join(shot.id for shot in not_started)}")
    clips.keys = {shot.id: finished[shot.id] for shot in board.shots}
    clips.frames = {shot: keys for shot, keys in clips.frames.items() if keys}


def cast_references(board: Storyboard, shot: Shot) -> dict[str, list[str]]:
    """The shot's library characters with reference images: name -> their keys."""
    cast = [board.character(name) for name in shot.characters]
    return {c.name: list(c.reference_images) for c in cast if c.reference_images}


def guarded(clips: Clips, job: ClipJob, characters: dict[str, list[str]] | None = None
            ) -> ClipJob:
    """A job whose options ask for a speed cache, keyed with the guard's decision: the first
    such clip of the run is rendered with and without the cache (once per run; a shot with
    library characters, `characters`, is decided by their identity score), the others take
    the same decision."""
    if not (job.backend_options.get("speed") or {}).get("cache"):
        return job
    if clips.cache_guard is None:
        with step("speed cache", f"checking the cache on shot {job.shot}"):
            clips.cache_guard = guard_cache(job, characters or None)
        log.info("%s", clips.cache_guard.line())
        # an artifact of the run whatever its approval policy (an auto run has no gate form)
        create_markdown_artifact(f"# Speed\n\n{clips.cache_guard.line()}\n", key="speed-guard",
                                 description="speed cache guard")
    return with_guard(job, clips.cache_guard)


def check_drift(run: RunContext, clips: Clips, chosen: dict[str, str]) -> None:
    """A clip of a shot with characters whose first, middle or last frame drifts off its
    approved still (off-model) is flagged before the edit."""
    board = run.board
    shots = [
        shot.id
        for shot in board.shots
        if shot.id in chosen and shot.id in clips.keys
        and any(board.character(name).reference_images for name in shot.characters)
    ]  # fmt: skip
    clips.drifting = {}
    if not shots:
        return
    work: Finishing[str] = Finishing()
    for shot in shots:
        work.add(shot, check_clip_drift.submit(shot, clips.keys[shot], chosen[shot],
                                               run.clip_model))  # fmt: skip
    counter = Counter("drift check", len(shots), detail="clips against their stills")
    drifting = {}
    for shot, future in work:
        drift = future.result()
        if drift.drifts:
            drifting[shot] = drift.flagged
        counter.advance(shot)
    clips.drifting = {shot: drifting[shot] for shot in shots if shot in drifting}


def review_clips(run: RunContext, clips: Clips, round_: int) -> dict[str, str]:
    """One round of the clips gate; returns shot -> notes for the clips to make again (new
    seeds are recorded on `clips`)."""
    board = run.board
    seeds = {shot.id: clips.seeds.get(shot.id, shot_seed(board, shot)) for shot in board.shots}
    description = ""
    lines = lines_on_table(run) if run.attended else {}
    if run.attended:
        with step("review material", "clips gate: previews"):
            description = clips_review(
                board.project, clips.keys, clips.motion, seeds, clips.backends,
                round_=round_, replaced=clips.replaced,
                speed=clips.cache_guard.line() if clips.cache_guard else None,
                lines=voice_lines(run), retaken=retaken_now(run, round_),
            )
        if clips.drifting:
            description += "\n**Drifting from the approved still:** " + "; ".join(
                f"{shot} ({', '.join(frames)})" for shot, frames in clips.drifting.items()
            )
        description += run.estimate_note("clips")
    answer, record = wait_for_review(
        "clips", round_, ClipsReview, description=description, policy=run.policy,
        checks_passed=True,
        spec=GateSpec(gate="clips", round=round_, project=board.project,
                      shots=dict.fromkeys(clips.keys, 1), seeds=seeds,
                      descriptions={shot.id: shot.description for shot in board.shots},
                      lines=lines),
        check=lambda answer: retake_lines(run, answer.retakes, round_,
                                          answer.reviewer or "unknown"),
    )  # fmt: skip
    run.approvals.append(record)
    clips.retaken = sorted({retake.shot for retake in answer.retakes})
    redo = (set(answer.regenerate) | set(answer.new_seeds) | set(answer.again)) & set(clips.keys)
    for shot_id in redo:
        clips.seeds[shot_id] = answer.new_seeds.get(shot_id, seeds[shot_id] + round_ * 7919)
    return {shot_id: answer.regenerate.get(shot_id, "") for shot_id in sorted(redo)}
