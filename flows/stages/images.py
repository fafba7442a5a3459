"""Stage 4: images. K variants per shot; a person picks one or rejects a shot with notes (only
rejected shots are regenerated); the chosen variant is then hi-res fixed and retouched."""

from __future__ import annotations

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from flows.gates import ImagesReview, wait_for_review
from flows.render_shot import fan_out_shots, fan_out_variants
from flows.stages.finishing import Finishing
from flows.stages.run import RunContext
from reelflow.gpu.speed import CacheGuard
from reelflow.progress import Counter, step
from reelflow.render.decisions import GateSpec
from reelflow.render.identity import (
    IDENTITY_THRESHOLD,
    IdentityReport,
    identity_failures,
    identity_markdown,
    pick_by_identity,
)
from reelflow.render.images import with_guard
from reelflow.render.jobs import (
    PREVIZ,
    ImageJob,
    image_job,
    plan_render,
    still_plan,
)
from reelflow.script.drafts import replace_shot
from reelflow.storyboard.prompts import language_warnings
from tasks.edit import upload_input
from tasks.images import (
    guard_image_cache,
    hires_fix,
    render_variants,
    retouch,
    score_identity,
    score_variants,
)
from tasks.review import images_review
from tasks.script import english_prompts, refine_prompt, zh_prompts


class Stills(BaseModel):
    """Everything the images stage decided, for the clips stage and the manifest."""

    jobs: dict[str, ImageJob]
    variants: dict[str, list[str]]
    references: dict[str, tuple[str, float]] = {}  # shot -> (reference image key, strength)
    picks: dict[str, int] = {}  # decisions so far: they carry over to the next round
    chosen: dict[str, str] = {}  # shot -> the approved still's key
    notes: dict[str, list[str]] = {}
    prompt_diffs: dict[str, list[str]] = {}
    llm_usage: list[dict[str, int]] = Field(default_factory=list)
    identity: IdentityReport | None = None  # identity score per variant (shots with characters)
    identity_retries: dict[str, int] = {}
    #: shot -> (key, variant number) of the take the last rejection replaced: the next round's
    #: contact sheet shows it beside the new takes
    replaced: dict[str, tuple[str, int]] = {}
    cache_guard: CacheGuard | None = None  # the speed cache's check on the run's first image
    identity_threshold: float = IDENTITY_THRESHOLD  # the run's: a character shot's guard


def images_stage(
    run: RunContext,
    quality_threshold: float,
    identity_threshold: float = IDENTITY_THRESHOLD,
    identity_retries: int = 2,
) -> Stills:
    stills = first_round(run, identity_threshold)
    if run.policy == "quality-gate":
        retry_off_model(run, stills, identity_threshold, identity_retries)
    round_ = 1
    while rejected := review_images(run, stills, round_, quality_threshold, identity_threshold):
        round_ += 1
        regenerate(run, stills, rejected, round_)
    approve_stills(run, stills)
    return stills


def prompts_for_encoder(run: RunContext) -> None:
    """Prompts reach English text encoders (CLIP, T5) in English: translated through the LLM
    when one is configured (the translated board is the one rendered and recorded), else one
    warning per shot whose prompt is in another language."""
    if run.profile.image_model == PREVIZ:  # panels are drawn: no text encoder reads them
        return
    logger = get_run_logger()
    if run.llm_endpoint:
        with step("translating prompts", "for the text encoder, through the LLM"):
            board, untranslated = english_prompts(run.board, run.llm_endpoint)
        if board != run.board:
            run.publish(board)
        for warning in untranslated:
            logger.warning("%s", warning)
        return
    for warning in language_warnings(run.board, run.facts.model.family).values():
        logger.warning("%s", warning)


def retry_off_model(run: RunContext, stills: Stills, threshold: float, bound: int) -> None:
    """Unattended: shots none of whose variants look like their characters get the next seeds,
    up to `bound` times; what still fails then stops at the gate with its reason."""
    logger = get_run_logger()
    for attempt in range(1, bound + 1):
        report = score_identity(stills.jobs, stills.variants, run.clip_model)
        failing = identity_failures(report, threshold)
        if not failing:
            return
        for shot_id, reason in failing.items():
            logger.warning("%s (retry %d with new seeds)", reason, attempt)
            stills.identity_retries[shot_id] = attempt
            job = image_job(
                run.board,
                run.board.shot(shot_id),
                run.profile,
                base_dir=run.base_dir,
                round_=attempt,
                facts=run.facts,
            )
            stills.jobs[shot_id] = guarded(stills, with_reference(stills, job))
        render_all(run, stills, list(failing), retry=attempt)


def first_round(run: RunContext, identity_threshold: float = IDENTITY_THRESHOLD) -> Stills:
    """Every shot's variants, rendered concurrently; the prompts' token-budget cuts logged.
    A speed cache is checked on the first image first (`guarded`)."""
    prompts_for_encoder(run)
    board, logger = run.board, get_run_logger()
    plan = plan_render(board, run.profile, base_dir=run.base_dir, facts=run.facts)
    for shot, parts in plan.truncated_prompts.items():
        logger.warning("%s: prompt over the token budget, left out: %s", shot, " | ".join(parts))
    references = {
        shot.id: (upload_input(board.project, shot.reference.image,
                                 run.base_dir and str(run.base_dir)),
                  shot.reference.strength)
        for shot in board.shots
        if shot.reference and any(job.shot == shot.id for job in plan.images)
    }  # fmt: skip
    stills = Stills(jobs={}, variants={}, references=references,
                    identity_threshold=identity_threshold)
    stills.jobs = {job.shot: guarded(stills, with_reference(stills, job)) for job in plan.images}
    run.steps_total = len(stills.jobs) + len(board.shots)
    if run.fan_out:
        fan_out_variants(stills.jobs, board, run.profile)
    render_all(run, stills, list(stills.jobs))
    return stills


def guarded(stills: Stills, job: ImageJob) -> ImageJob:
    """A job whose options ask for a speed cache, with the guard's decision: the first such
    image of the run is rendered with and without the cache (once per run; on a shot with
    library characters their identity score decides), the others take the same decision."""
    if not job.speed.get("cache"):
        return job
    if stills.cache_guard is None:
        with step("speed cache", f"checking the cache on shot {job.shot}"):
            own = job.speed.get("guard_identity") is not None  # else the run's threshold
            stills.cache_guard = guard_image_cache(job, None if own else stills.identity_threshold)
        get_run_logger().info("%s", stills.cache_guard.line())
        # an artifact of the run whatever its approval policy (an auto run has no gate form)
        create_markdown_artifact(f"# Speed (images)\n\n{stills.cache_guard.line()}\n",
                                 key="image-speed-guard", description="image speed cache guard")
    return with_guard(job, stills.cache_guard)


def with_reference(stills: Stills, job: ImageJob) -> ImageJob:
    if job.shot not in stills.references:
        return job
    key, strength = stills.references[job.shot]
    return job.model_copy(update={"reference": key, "reference_strength": strength})


def render_all(
    run: RunContext, stills: Stills, shots: list[str], *, round_: int = 1, retry: int = 0
) -> None:
    """The variants of `shots`, concurrently, counted as each shot's finish (`images 3/9`);
    a later round (or an unattended retry) counts only its own shots (`images 1/1 (round 2)`).
    """
    work: Finishing[str] = Finishing()
    for shot in shots:
        work.add(shot, render_variants.submit(stills.jobs[shot]))
    detail = f"retry {retry}: new seeds for off-model shots" if retry else ""
    counter = Counter("images", len(shots), round_=round_, detail=detail)
    finished: dict[str, list[str]] = {}
    for shot, future in work:
        finished[shot] = future.result()
        counter.advance(shot)
        if round_ == 1 and not retry:  # the run's progress artifact: the first render only
            run.advance()
    for shot in shots:  # storyboard order, whatever order they finished in
        stills.variants[shot] = finished[shot]


def review_images(
    run: RunContext,
    stills: Stills,
    round_: int,
    quality_threshold: float,
    identity_threshold: float = IDENTITY_THRESHOLD,
) -> dict[str, str]:
    """One round of the images gate; returns the rejected shots with their notes."""
    variants = stills.variants
    what = "images gate: scores, contact sheet" if run.attended else "images: identity check"
    with step("review material" if run.attended else "checks", what):
        scores, off_model, description = images_material(run, stills, identity_threshold,
                                                         round_)
    best = pick_by_identity(scores, stills.identity, identity_threshold)
    first_choice = best if run.policy == "quality-gate" else dict.fromkeys(stills.jobs, 0)
    answer, record = wait_for_review(
        "images",
        round_,
        ImagesReview,
        description=description,
        policy=run.policy,
        checks_passed=all(max(s) >= quality_threshold for s in scores.values()) and not off_model,
        spec=GateSpec(
            gate="images",
            round=round_,
            project=run.board.project,
            shots={shot: len(keys) for shot, keys in variants.items()},
            descriptions={shot: run.board.shot(shot).description for shot in variants},
            quality=scores if run.attended else {},
            identity=stills.identity.scores if stills.identity else {},
        ),
        picks=first_choice | stills.picks,
    )
    run.approvals.append(record)
    unknown = sorted((set(answer.reject) | set(answer.picks)) - set(stills.jobs))
    if unknown:
        get_run_logger().warning("images gate: ignoring unknown shots %s", ", ".join(unknown))
    for shot, index in (first_choice | stills.picks | answer.picks).items():
        if shot in stills.jobs:
            stills.picks[shot] = min(max(index, 0), len(variants[shot]) - 1)
    return {shot: text for shot, text in answer.reject.items() if shot in stills.jobs}


def images_material(
    run: RunContext, stills: Stills, identity_threshold: float, round_: int = 1
) -> tuple[dict[str, list[float]], dict[str, str], str]:
    """What the images gate decides on: scores per variant, the shots whose identity is under
    the threshold, and (attended) the review's description with its contact sheets."""
    variants = stills.variants
    if run.attended:
        scores = score_variants(variants, run.board.style.palette)
    else:  # unattended: nobody reads review material before the next stage
        scores = {shot: [0.0] * len(keys) for shot, keys in variants.items()}
    stills.identity = score_identity(stills.jobs, variants, run.clip_model)
    off_model = identity_failures(stills.identity, identity_threshold)
    if off_model:
        get_run_logger().warning(
            "images gate: identity under threshold: %s", "; ".join(off_model.values())
        )
    description = ""
    if run.attended:
        prompts = {shot: job.prompt for shot, job in stills.jobs.items()}
        diffs = {shot: d[-1] for shot, d in stills.prompt_diffs.items()}
        zh = zh_prompts(prompts, run.llm_endpoint)
        descriptions = {shot: run.board.shot(shot).description for shot in variants}
        description = images_review(
            run.board.project, variants, prompts, scores, diffs, zh, round_=round_,
            descriptions=descriptions,
            identity=stills.identity.scores if stills.identity else None,
            replaced={s: r for s, r in stills.replaced.items() if s in variants},
            speed=stills.cache_guard.line() if stills.cache_guard else None,
        )
        if off_model:
            description += "\n**Identity under threshold:** " + "; ".join(off_model.values())
        description += "\n" + identity_markdown(stills.identity, identity_threshold)
        description += run.estimate_note("images")
    return scores, off_model, description


def regenerate(
    run: RunContext, stills: Stills, rejected: dict[str, str], round_: int = 2
) -> None:
    """New variants for the rejected shots only, as review round `round_`: their prompts take
    the notes (or the LLM rewrites them from the notes), and a new seed round."""
    stills.replaced = {}
    for shot_id, text in rejected.items():
        stills.notes.setdefault(shot_id, []).append(text)
        old = stills.picks.pop(shot_id, 0)  # new variants: the old pick means nothing now
        stills.replaced[shot_id] = (stills.variants[shot_id][old], old)
        if run.llm_endpoint:
            with step("rewriting a prompt", f"{shot_id}, from the notes through the LLM"):
                refined = refine_prompt(run.board, shot_id, text, run.llm_endpoint)
            shot = run.board.shot(shot_id).model_copy(update={"prompt": refined.prompt})
            run.publish(replace_shot(run.board, shot))
            stills.prompt_diffs.setdefault(shot_id, []).append(refined.diff)
            stills.llm_usage.append(refined.usage)
        job = image_job(
            run.board,
            run.board.shot(shot_id),
            run.profile,
            base_dir=run.base_dir,
            notes=None if run.llm_endpoint else stills.notes[shot_id],
            round_=len(stills.notes[shot_id]),
            facts=run.facts,
        )
        stills.jobs[shot_id] = guarded(stills, with_reference(stills, job))
    render_all(run, stills, list(rejected), round_=round_)


def approve_stills(run: RunContext, stills: Stills) -> None:
    """Each chosen variant through its still plan (hi-res fix, then retouch), concurrently."""
    plans = {
        shot: still_plan(
            job,
            run.board.shot(shot),
            stills.variants[shot][stills.picks[shot]],
            stills.picks[shot],
            run.profile,
        )
        for shot, job in stills.jobs.items()
    }
    if run.fan_out:  # hi-res, retouch and clip of each shot as render-shot runs on the gpu pool
        fan_out_shots(run.board, run.profile, plans, run.durations, run.facts)
    finished = {shot: plan.variant_key for shot, plan in plans.items()
                if plan.hires is None and plan.retouch is None}  # fmt: skip
    work: Finishing[tuple[str, str]] = Finishing()  # (shot, "hires" or "retouch")
    for shot, plan in plans.items():
        if plan.hires is not None:
            work.add((shot, "hires"), hires_fix.submit(plan.hires))
        elif plan.retouch is not None:
            work.add((shot, "retouch"), retouch.submit(plan.retouch))
    counter = Counter("stills", len(work), detail="hi-res fix, retouch") if len(work) else None
    for (shot, kind), future in work:
        key = future.result()
        retouching = plans[shot].retouch
        if kind == "hires" and retouching is not None:  # the retouch starts from the hi-res
            work.add((shot, "retouch"), retouch.submit(retouching))
            continue
        finished[shot] = key
        if counter is not None:
            counter.advance(shot)
    stills.chosen = {shot: finished[shot] for shot in plans}
