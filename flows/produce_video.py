"""produce-video: storyboard -> images -> clips -> film + cover, with three approval gates.

The flow reads like the director's procedure. Every expensive step is a cached task that takes a
small job and returns object keys, so a resumed or repeated run only recomputes what changed:
rejecting one shot's images regenerates that shot, and every other task comes back Cached.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel

from blocks.models import ImageModel, VideoModel
from flows.gates import (
    Approval,
    ApprovalRecord,
    ClipsReview,
    ImagesReview,
    StoryboardReview,
    wait_for_review,
)
from flows.render_shot import fan_out_shots, fan_out_variants
from reelflow.progress import report
from reelflow.render.jobs import (
    CaptionCue,
    CoverJob,
    EditClip,
    EditJob,
    ExportSpec,
    ImageJob,
    MasterJob,
    MusicJob,
    VersionJob,
    clip_job,
    cut_plan,
    frame_job,
    hires_job,
    image_job,
    lora_names,
    needs_image,
    plan_render,
    retouch_job,
    shot_seed,
)
from reelflow.render.manifest import RunManifest
from reelflow.render.profiles import get_profile
from reelflow.script.drafts import replace_shot
from reelflow.store import keys
from reelflow.storyboard import Storyboard, load_storyboard, parse_storyboard
from tasks.clips import render_clip
from tasks.common import RESULTS_BLOCK, get_store
from tasks.edit import (
    assemble_film,
    export_version,
    make_cover,
    master_with_music,
    snap_to_music,
    upload_input,
)
from tasks.images import hires_fix, prepare_models, render_variants, retouch, take_frame
from tasks.review import (
    clips_review,
    final_review,
    images_review,
    publish_storyboard,
    storyboard_review,
)
from tasks.script import refine_prompt, zh_prompts


class FilmResult(BaseModel):
    project: str
    film_key: str
    cover_key: str
    manifest_key: str
    film_uri: str
    cover_uri: str
    manifest_uri: str
    versions: dict[str, str] = {}  # export name -> key
    version_covers: dict[str, str] = {}


def read_storyboard(source: str) -> tuple[Storyboard, Path]:
    """A path on disk, an s3://bucket/key in the store, or the storyboard's YAML/JSON itself."""
    if source.startswith("s3://"):
        key = source.split("/", 3)[3]
        return parse_storyboard(get_store().get_bytes(key).decode(), source=source), Path.cwd()
    if "\n" in source or source.lstrip().startswith("{"):
        return parse_storyboard(source, source="<inline>"), Path.cwd()
    path = Path(source)
    return load_storyboard(path), path.resolve().parent


@task(name="score-variants")
def score_variants(variants: dict[str, list[str]], palette: list[str]) -> dict[str, list[float]]:
    """Sharpness and palette fit per variant, 0..1, for the contact sheet and quality-gate."""
    import io

    from PIL import Image

    from reelflow.imaging.checks import is_blank, palette_score, sharpness

    store = get_store()
    scores: dict[str, list[float]] = {}
    for shot, shot_keys in variants.items():
        scores[shot] = []
        for key in shot_keys:
            image = Image.open(io.BytesIO(store.get_bytes(key))).convert("RGB")
            if is_blank(image):
                scores[shot].append(0.0)
                continue
            sharp = min(1.0, sharpness(image) / 500.0)
            fit = palette_score(image, palette) if palette else 1.0
            scores[shot].append(round(0.5 * sharp + 0.5 * fit, 3))
    return scores


@flow(name="produce-video", result_storage=RESULTS_BLOCK, persist_result=True, log_prints=True)
def produce_video(
    storyboard: str,
    approval: Approval = "manual",
    profile: str = "full",
    exports: list[ExportSpec] | None = None,
    image_model: str | None = None,
    video_model: str | None = None,
    llm_endpoint: str | None = None,
    quality_threshold: float = 0.3,
    fan_out: bool = False,
) -> FilmResult:
    """Render a storyboard (path, s3:// URI or inline YAML/JSON) into a film and its cover.

    `fan_out`: run each shot's GPU work as a `render-shot` deployment run on the `gpu` pool first
    (see flows/render_shot.py); the steps below then find it all Cached.
    """
    logger = get_run_logger()
    started = datetime.now(UTC)
    render_profile = get_profile(profile)
    if image_model:
        render_profile = ImageModel.load(image_model).apply(render_profile)
    if video_model:
        render_profile = VideoModel.load(video_model).apply(render_profile)
    board, base_dir = read_storyboard(storyboard)
    approvals: list[ApprovalRecord] = []
    attended = approval != "auto"

    # 1. The storyboard is the contract: stored by hash, reviewed before anything is rendered.
    storyboard_key = publish_storyboard(board)
    description = storyboard_review(board, storyboard_key)
    answer, record = wait_for_review(
        "storyboard",
        1,
        StoryboardReview,
        description=description,
        policy=approval,
        checks_passed=True,
    )
    approvals.append(record)
    if not answer.approve:
        raise ValueError(
            f"storyboard {board.project} sent back for revision: {answer.notes!r} "
            "(edit the storyboard, or configure an LLM endpoint to revise it, and run again)"
        )

    # 2. Models: the demo/test profiles build tiny ones from configs, once per machine.
    if render_profile.image_model == "tiny":
        prepare_models(
            lora_names(board), render_profile.image_family or "sd15", render_profile.video_model
        )

    # 3. Images: K variants per shot, a person picks one or rejects with notes.
    plan = plan_render(board, render_profile, base_dir=base_dir)
    for shot, parts in plan.truncated_prompts.items():
        logger.warning("%s: prompt over the token budget, left out: %s", shot, " | ".join(parts))
    references = {
        shot.id: (
            upload_input(board.project, str(base_dir / shot.reference.image)),
            shot.reference.strength,
        )
        for shot in board.shots
        if shot.reference and needs_image(shot)
    }

    def with_reference(job: ImageJob) -> ImageJob:
        if job.shot not in references:
            return job
        key, strength = references[job.shot]
        return job.model_copy(update={"reference": key, "reference_strength": strength})

    jobs = {job.shot: with_reference(job) for job in plan.images}
    if fan_out:
        fan_out_variants(jobs, board, render_profile)
    # Progress on the run's page: one step per shot's images and one per shot's clip.
    steps_total = len(jobs) + len(board.shots)
    progress = create_progress_artifact(0.0, key="render-progress", description="shots rendered")

    def advance(done: int) -> None:
        update_progress_artifact(progress, 100.0 * min(done, steps_total) / steps_total)
        # the same steps for whoever watches the process (`reelflow render` prints them)
        if done <= len(jobs):
            report("images", done, len(jobs))
        else:
            report("clips", done - len(jobs), len(board.shots))

    variants = {}
    for done, (shot, job) in enumerate(jobs.items(), 1):
        variants[shot] = render_variants(job)
        advance(done)
    notes: dict[str, list[str]] = {}
    prompt_diffs: dict[str, list[str]] = {}
    llm_usage: list[dict[str, int]] = []
    round_ = 1
    while True:
        # Unattended (`auto`) runs skip the review material: nobody looks at it before the
        # next stage, and it costs a second or two per shot.
        scores = (
            score_variants(variants, board.style.palette)
            if attended
            else {shot: [0.0] * len(keys_) for shot, keys_ in variants.items()}
        )
        best = {shot: max(range(len(s)), key=s.__getitem__) for shot, s in scores.items()}
        passed = all(max(s) >= quality_threshold for s in scores.values())
        prompts = {s: j.prompt for s, j in jobs.items()}
        description = (
            images_review(
                board.project,
                variants,
                prompts,
                scores,
                {shot: d[-1] for shot, d in prompt_diffs.items()},
                zh_prompts(prompts, llm_endpoint),
            )
            if attended
            else ""
        )
        picks_default = best if approval == "quality-gate" else {shot: 0 for shot in jobs}
        answer, record = wait_for_review(
            "images",
            round_,
            ImagesReview,
            description=description,
            policy=approval,
            checks_passed=passed,
            picks=picks_default,
        )
        approvals.append(record)
        unknown = sorted((set(answer.reject) | set(answer.picks)) - set(jobs))
        if unknown:
            logger.warning("images gate: ignoring unknown shots %s", ", ".join(unknown))
        rejected = {shot: text for shot, text in answer.reject.items() if shot in jobs}
        if not rejected:
            break
        for shot_id, text in rejected.items():
            notes.setdefault(shot_id, []).append(text)
            if llm_endpoint:  # the LLM rewrites this shot's prompt; the notes are then in it
                refined = refine_prompt(board, shot_id, text, llm_endpoint)
                board = replace_shot(
                    board, board.shot(shot_id).model_copy(update={"prompt": refined.prompt})
                )
                prompt_diffs.setdefault(shot_id, []).append(refined.diff)
                llm_usage.append(refined.usage)
            jobs[shot_id] = with_reference(
                image_job(
                    board,
                    board.shot(shot_id),
                    render_profile,
                    base_dir=base_dir,
                    notes=None if llm_endpoint else notes[shot_id],
                    round_=len(notes[shot_id]),
                )
            )
            variants[shot_id] = render_variants(jobs[shot_id])
        round_ += 1

    if fan_out:
        picked = {s: answer.picks.get(s, picks_default.get(s, 0)) for s in jobs}
        fan_out_shots(board, render_profile, jobs, variants, picked)
    chosen: dict[str, str] = {}
    for shot_id, job in jobs.items():
        index = answer.picks.get(shot_id, picks_default.get(shot_id, 0))
        index = min(max(index, 0), len(variants[shot_id]) - 1)
        key = variants[shot_id][index]
        chosen[shot_id] = (
            hires_fix(hires_job(job, key, index, render_profile))
            if render_profile.hires_fix
            else key
        )
        touch_up = retouch_job(job, board.shot(shot_id), chosen[shot_id])
        if touch_up is not None:  # inpaint / outpaint, as the shot asks
            chosen[shot_id] = retouch(touch_up)

    # 4. Clips, in storyboard order: a transition can take a frame of an earlier shot's clip.
    clip_notes: dict[str, list[str]] = {}
    clip_seeds: dict[str, int] = {}
    round_ = 1
    while True:
        clips: dict[str, str] = {}
        frames: dict[str, list[str]] = {}
        motion: dict[str, str] = {}
        for shot in board.shots:
            job = clip_job(board, shot, render_profile)
            updates: dict[str, object] = {}
            if needs_image(shot):
                updates["image_key"] = chosen[shot.id]
            for field, ref in (
                ("first_frame_key", shot.first_frame),
                ("last_frame_key", shot.last_frame),
            ):
                if ref is not None:
                    fjob = frame_job(board, shot, ref, render_profile, base_dir=base_dir)
                    updates[field] = take_frame(fjob, clips[ref.shot])
                    frames.setdefault(shot.id, []).append(updates[field])
            if shot.id in clip_notes:
                updates["motion_prompt"] = ", ".join([job.motion_prompt, *clip_notes[shot.id]])
            if shot.id in clip_seeds:
                updates["seed"] = clip_seeds[shot.id]
            job = job.model_copy(update=updates)
            motion[shot.id] = job.motion_prompt
            clips[shot.id] = render_clip(job)
            advance(len(jobs) + len(clips))
        seeds = {shot.id: clip_seeds.get(shot.id, shot_seed(board, shot)) for shot in board.shots}
        description = (
            clips_review(board.project, clips, motion, seeds, render_profile.video_backend)
            if attended
            else ""
        )
        answer, record = wait_for_review(
            "clips",
            round_,
            ClipsReview,
            description=description,
            policy=approval,
            checks_passed=True,
        )
        approvals.append(record)
        redo = (set(answer.regenerate) | set(answer.new_seeds)) & set(clips)
        if not redo:
            break
        for shot_id in redo:
            if answer.regenerate.get(shot_id):
                clip_notes.setdefault(shot_id, []).append(answer.regenerate[shot_id])
            clip_seeds[shot_id] = answer.new_seeds.get(
                shot_id, clip_seeds.get(shot_id, 0) + round_ * 7919
            )
        round_ += 1

    # 5. Edit: the storyboard's durations (snapped to the music's beats), its transitions, the
    #    music bed, then every version asked for (each style of cut assembled once) and a cover
    #    for each.
    report("edit", detail=f"{len(board.shots)} shots")
    music_key = None
    if board.music is not None:
        music_key = upload_input(board.project, str(base_dir / Path(board.music.path)))

    def edit_of(cut: str) -> tuple[str, list[float]]:
        """The assembled film (with its music) for a style of cut, and its shot durations."""
        plan = cut_plan(board, cut)
        durations = [duration for duration, _, _ in plan]
        if music_key and board.music and board.music.snap_cuts:
            durations = snap_to_music(
                MusicJob(
                    project=board.project,
                    music_key=music_key,
                    durations=durations,
                    min_shot=min(1.0, min(durations)),
                    tolerance=0.25,
                    fps=board.fps,
                )
            )
        edit = EditJob(
            project=board.project,
            clips=[
                EditClip(
                    shot=shot.id,
                    key=clips[shot.id],
                    duration=duration,
                    transition=transition,
                    transition_duration=length,
                )
                for shot, duration, (_, transition, length) in zip(
                    board.shots, durations, plan, strict=True
                )
            ],
            width=board.width,
            height=board.height,
            fps=board.fps,
            crf=render_profile.crf,
        )
        key = assemble_film(edit)
        if music_key:
            key = master_with_music(
                MasterJob(project=board.project, film_key=key, music_key=music_key)
            )
        return key, durations

    edits = {"storyboard": edit_of("storyboard")}
    film_key, durations = edits["storyboard"]
    cover_key = make_cover(
        CoverJob(
            project=board.project,
            film_key=film_key,
            title=board.title,
            width=board.width,
            height=board.height,
        )
    )
    if exports is None:
        exports = [ExportSpec(aspect=board.aspect if board.aspect in ("9:16", "1:1") else "16:9")]
    versions: dict[str, str] = {}
    version_covers: dict[str, str] = {}
    for export in exports:
        if export.cut not in edits:
            edits[export.cut] = edit_of(export.cut)
        master_key, cut_durations = edits[export.cut]
        captions = [
            CaptionCue(
                duration=d,
                zh=s.caption.zh if s.caption else "",
                en=s.caption.en if s.caption else "",
            )
            for s, d in zip(board.shots, cut_durations, strict=True)
        ]
        key = export_version(
            VersionJob(
                project=board.project,
                master_key=master_key,
                export=export,
                captions=captions,
                title=board.title,
            ),
            board.aspect,
        )
        versions[export.name] = key
        version_covers[export.name] = make_cover(
            CoverJob(
                project=board.project,
                film_key=key,
                title=board.title,
                width=board.width,
                height=board.height,
            )
        )

    # 6. The manifest: inputs, decisions, outputs.
    run_id = str(flow_run.get_id() or "local")
    manifest = RunManifest(
        run_id=run_id,
        project=board.project,
        title=board.title,
        storyboard_key=storyboard_key,
        storyboard_hash=board.content_hash(),
        profile=profile,
        approval_policy=approval,
        started_at=started,
        approvals=[a.model_dump(mode="json") for a in approvals],
        prompt_notes=notes,
        prompt_diffs=prompt_diffs,
        llm_usage={
            k: sum(u.get(k, 0) for u in llm_usage)
            for k in ("prompt_tokens", "completion_tokens", "total_tokens", "requests")
        },
        variants=variants,
        chosen_images=chosen,
        frames=frames,
        clips=clips,
        film_key=film_key,
        cover_key=cover_key,
        versions=versions,
        version_covers=version_covers,
        music_key=music_key,
        edit_durations=durations,
        duration=board.duration,
    )
    store = get_store()
    manifest_key = store.put_json(
        keys.manifest_key(board.project, run_id),
        manifest,
        {"kind": "manifest", "parents": [storyboard_key, film_key, cover_key, *versions.values()]},
    )
    final_review(film_key, cover_key, manifest_key)
    return FilmResult(
        project=board.project,
        film_key=film_key,
        cover_key=cover_key,
        manifest_key=manifest_key,
        film_uri=store.uri(film_key),
        cover_uri=store.uri(cover_key),
        manifest_uri=store.uri(manifest_key),
        versions=versions,
        version_covers=version_covers,
    )
