"""Stage 5: clips. Each shot's clip from its approved still (a camera move), or a transition
between frames taken from other shots' clips; a person approves them or asks for a new take."""

from __future__ import annotations

from prefect.futures import PrefectFuture
from pydantic import BaseModel

from flows.gates import ClipsReview, wait_for_review
from flows.stages.run import RunContext
from reelflow.render.decisions import GateSpec
from reelflow.render.jobs import clip_job, frame_job, frame_refs, shot_seed
from tasks.clips import check_clip_drift, render_clip
from tasks.images import take_frame
from tasks.review import clips_review


class Clips(BaseModel):
    keys: dict[str, str]  # shot -> approved clip, storyboard order
    frames: dict[str, list[str]] = {}  # shot -> frames it took from other clips
    motion: dict[str, str] = {}  # shot -> motion prompt used
    backends: dict[str, str] = {}  # shot -> video backend (the run's, or the shot's own)
    notes: dict[str, list[str]] = {}
    seeds: dict[str, int] = {}
    drifting: dict[str, list[str]] = {}  # shot -> frames (first/middle/last) off its still


def clips_stage(run: RunContext, chosen: dict[str, str]) -> Clips:
    clips = Clips(keys={})
    round_ = 1
    while True:
        render_clips(run, clips, chosen)
        if run.attended:
            check_drift(run, clips, chosen)
        redo = review_clips(run, clips, round_)
        if not redo:
            return clips
        for shot_id, notes in redo.items():
            if notes:
                clips.notes.setdefault(shot_id, []).append(notes)
        round_ += 1


def render_clips(run: RunContext, clips: Clips, chosen: dict[str, str]) -> None:
    """Shots with a still start at once, concurrently; a transition waits only for the clips
    it takes frames from. Keys do not depend on completion order."""
    board = run.board
    futures: dict[str, PrefectFuture] = {}
    for index, shot in enumerate(board.shots):
        frames: dict[str, str] = {}
        for field, ref in frame_refs(shot):
            source = futures[ref.shot].result()
            job = frame_job(
                board, shot, ref, run.profile, source, base_dir=run.base_dir, facts=run.facts
            )
            frames[field] = take_frame(job)
        job = clip_job(
            board,
            shot,
            run.profile,
            still_key=chosen.get(shot.id),
            duration=run.durations[index],
            notes=clips.notes.get(shot.id),
            seed=clips.seeds.get(shot.id),
            facts=run.facts,
            **frames,
        )
        clips.frames[shot.id] = list(frames.values())
        clips.motion[shot.id] = job.motion_prompt
        clips.backends[shot.id] = job.backend
        futures[shot.id] = render_clip.submit(job)
    done_before = run.steps_total - len(board.shots)
    for done, (shot_id, future) in enumerate(futures.items(), 1):
        clips.keys[shot_id] = future.result()
        run.advance(done_before + done)
    clips.frames = {shot: keys for shot, keys in clips.frames.items() if keys}


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
    futures = {
        shot: check_clip_drift.submit(shot, clips.keys[shot], chosen[shot], run.clip_model)
        for shot in shots
    }
    clips.drifting = {}
    for shot, future in futures.items():
        drift = future.result()
        if drift.drifts:
            clips.drifting[shot] = drift.flagged


def review_clips(run: RunContext, clips: Clips, round_: int) -> dict[str, str]:
    """One round of the clips gate; returns shot -> notes for the clips to make again (new
    seeds are recorded on `clips`)."""
    board = run.board
    seeds = {shot.id: clips.seeds.get(shot.id, shot_seed(board, shot)) for shot in board.shots}
    description = ""
    if run.attended:
        description = clips_review(
            board.project, clips.keys, clips.motion, seeds, clips.backends
        )
        if clips.drifting:
            description += "\n**Drifting from the approved still:** " + "; ".join(
                f"{shot} ({', '.join(frames)})" for shot, frames in clips.drifting.items()
            )
    answer, record = wait_for_review(
        "clips", round_, ClipsReview, description=description, policy=run.policy,
        checks_passed=True,
        spec=GateSpec(gate="clips", round=round_, project=board.project,
                      shots=dict.fromkeys(clips.keys, 1)),
    )  # fmt: skip
    run.approvals.append(record)
    redo = (set(answer.regenerate) | set(answer.new_seeds)) & set(clips.keys)
    for shot_id in redo:
        clips.seeds[shot_id] = answer.new_seeds.get(shot_id, seeds[shot_id] + round_ * 7919)
    return {shot_id: answer.regenerate.get(shot_id, "") for shot_id in sorted(redo)}
