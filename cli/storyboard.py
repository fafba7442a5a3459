"""Storyboard commands: validate, schema, plan, styleboard (offline), and script (a brief to an
approved storyboard, through the write-script flow)."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from cli.common import APPROVALS, EXIT_INVALID, WHOLE, artifact_store, fail
from cli.console import PrefectCommand
from reelflow.errors import InputError
from reelflow.render.profiles import PROFILES

MAX_VERSIONS = 5
PROFILE = click.Choice(list(PROFILES))


@click.command(help="check storyboard files (and what each shot asks of its video backend); "
               "exit 2 when one is invalid")
@click.argument("files", nargs=-1, required=True)
def validate(files: tuple[str, ...]) -> int:
    from reelflow.render.inputs import backend_problems
    from reelflow.sound.check import check_lines
    from reelflow.sound.music_model import check_music_model
    from reelflow.storyboard import StoryboardError, load_storyboard

    status = 0
    for file in files:
        try:
            storyboard = load_storyboard(file)
        except StoryboardError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            status = EXIT_INVALID
            continue
        problems = list(backend_problems(storyboard))  # every one, two alike included
        if not problems:
            try:  # speech sources, line lengths (measured), a generated bed's model
                check_lines(storyboard, Path(file).resolve().parent)
                check_music_model(storyboard)
            except InputError as exc:
                problems.append(str(exc))
        if problems:
            for problem in problems:
                print(f"{file}: {problem}", file=sys.stderr)
            status = EXIT_INVALID
            continue
        print(
            f"{file}: ok ({len(storyboard.shots)} shots, {storyboard.duration:g} s, "
            f"{storyboard.width}x{storyboard.height}@{storyboard.fps})"
        )
    return status


@click.command(help="print the storyboard JSON Schema")
def schema() -> int:
    from reelflow.storyboard import json_schema

    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
    return 0


@click.command(help="show composed prompts, seeds and sizes without rendering")
@click.argument("file")
@click.option("--profile", type=PROFILE, default="full", show_default=True)
@click.option("--estimate", is_flag=True,
              help="expected time of each stage and the film (with a range), GPU-hours and "
              "price ($REELFLOW_GPU_HOUR_PRICE), from the Prefect server's history of this "
              "studio's runs")
@click.option("--since", type=click.DateTime(), default=None,
              help="with --estimate: only runs started from then on (history from before a "
              "change of machine misleads), e.g. 2026-12-01")
def plan(file: str, profile: str, estimate: bool = False, since: datetime | None = None) -> int:
    from reelflow.motion.capabilities import capabilities
    from reelflow.render.jobs import (
        PREVIZ,
        needs_image,
        plan_render,
        resolve_model_path,
        resolve_run_facts,
        shot_video,
    )
    from reelflow.render.profiles import get_profile
    from reelflow.render.prompt_readout import readouts
    from reelflow.script.camera import propose_camera
    from reelflow.storyboard import load_storyboard
    from reelflow.storyboard.prompts import language_warnings

    storyboard = load_storyboard(file)  # a StoryboardError: main() prints its problems
    render_profile = get_profile(profile)
    base_dir = Path(file).resolve().parent
    storyboard = _with_library_characters(storyboard)
    storyboard = propose_camera(storyboard)  # as the render does: unset camera fields proposed
    facts = resolve_run_facts(storyboard, render_profile, base_dir)
    planned = plan_render(storyboard, render_profile, base_dir=base_dir, facts=facts)
    model_dir = resolve_model_path(facts.model.source)
    jobs = {job.shot: job for job in planned.images}
    for shot in storyboard.shots:
        job = jobs.get(shot.id)
        backend = capabilities(shot_video(storyboard, shot, render_profile.video_backend).backend)
        clip = "    clip: " + backend.summary(
            shot.duration, storyboard.width, storyboard.height, storyboard.fps
        )
        if job is None and not needs_image(shot):  # first and last frames from other clips
            ends = [f"{ref.shot}'s {ref.frame} frame"
                    + (f" restyled to '{ref.restyle}'" if ref.restyle else "")
                    for ref in (shot.first_frame, shot.last_frame) if ref is not None]
            print(f"{shot.id}: {shot.duration:g} s, a transition from {ends[0]} to {ends[1]} "
                  "(no still of its own)")
            print(clip)
            continue
        print(
            f"{job.shot}: seed {job.seed}, {job.width}x{job.height}, {job.steps} steps, "
            f"{job.variants} variants, loras {[lora.name for lora in job.loras]}"
        )
        print(f"    {job.prompt}")
        print(clip)
        if facts.model.source != PREVIZ:  # panels are drawn: no text encoder reads them
            for readout in readouts(job.prompt, facts.model.family, model_dir):
                print(f"    {readout.line()}")
    for shot, parts in planned.truncated_prompts.items():
        print(f"{shot}: over the token budget, left out: {' | '.join(parts)}")
    if facts.model.source != PREVIZ:
        for warning in language_warnings(storyboard, facts.model.family).values():
            print(f"warning: {warning}", file=sys.stderr)
    if estimate:
        print("\n".join(_estimate(storyboard, profile, render_profile, since).lines()))
    return 0


def _estimate(storyboard, profile: str, render_profile, since=None):  # type: ignore[no-untyped-def]
    """The film's estimate from the history on the Prefect server (the local stack's unless
    one is configured); a server that does not answer leaves the declared rule, said so."""
    from cli.stack import use_local_stack

    use_local_stack()  # before Prefect reads its settings, as `render` does
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from flows.history import studio_estimate

    if not (PREFECT_API_URL.value() or os.environ.get("PREFECT_API_URL")):
        result = studio_estimate(None, storyboard, profile, render_profile)
        return result.model_copy(update={"basis": "no Prefect server to read the history from "
                                         "(reelflow up); " + result.basis})
    try:
        with get_client(sync_client=True) as client:
            return studio_estimate(client, storyboard, profile, render_profile,
                                   since=since.astimezone(UTC) if since else None)
    except Exception as exc:  # noqa: BLE001 - a plan never fails for want of history
        result = studio_estimate(None, storyboard, profile, render_profile)
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return result.model_copy(update={"basis": f"the Prefect server did not answer ({why}); "
                                         + result.basis})


def _with_library_characters(storyboard):  # type: ignore[no-untyped-def]
    """The storyboard with its library characters' descriptions filled in, as the render will
    have them (they are part of the prompt), when a bucket is configured and answers; else as
    it is, with a note naming the characters whose text is not in the plan."""
    from reelflow.storyboard.characters import resolve_characters

    library = [c.name for c in storyboard.characters if not c.description.strip()]
    if not library:
        return storyboard
    try:
        return resolve_characters(storyboard, artifact_store())
    except Exception as exc:  # noqa: BLE001 - a plan is offline; it says what it could not see
        print(f"note: library characters {', '.join(library)} not described in the plan "
              f"(the character library could not be read: {str(exc).splitlines()[0]})",
              file=sys.stderr)
        return storyboard


@click.command(help="one shot under 2-4 candidate styles, side by side (offline)")
@click.argument("file")
@click.option("--shot", required=True, help="id of the shot to render")
@click.option("--styles", metavar="YAML",
              help="list of styles (name, visual_style, lighting, palette, quality_tags); "
              "default: the storyboard's own style and two variations")
@click.option("--profile", type=PROFILE, default="demo", show_default=True)
@click.option("--out", metavar="PNG", help="PNG to write (default: styleboard-PROJECT-SHOT.png)")
@click.option("--upload", is_flag=True,
              help="also store it (with lineage) in the stack's S3 under styleboards/")
def styleboard(file: str, shot: str, styles: str | None, profile: str, out: str | None,
               upload: bool) -> int:
    from reelflow.render.profiles import get_profile
    from reelflow.storyboard import load_storyboard
    from reelflow.styleboard import (
        StyleBoardError,
        derive_candidates,
        load_candidates,
        render_style_board,
    )

    storyboard = load_storyboard(file)  # a StoryboardError: main() prints its problems
    render_profile = get_profile(profile)
    try:
        chosen = storyboard.shot(shot)
        candidates = load_candidates(styles) if styles else derive_candidates(storyboard)
    except KeyError as exc:
        return fail(str(exc.args[0]), EXIT_INVALID)
    except (StyleBoardError, ValueError) as exc:
        return fail(str(exc), EXIT_INVALID)
    if render_profile.image_model == "tiny":
        from reelflow.render.jobs import shot_loras
        from reelflow.render.models import prepare_demo_models

        loras = ([ref.name for ref in shot_loras(storyboard, chosen)]
                 if render_profile.tiny_loras else [])
        prepare_demo_models(loras, render_profile.image_family or "sd15")

    base_dir = Path(file).resolve().parent
    store = artifact_store() if upload else None
    if store is not None:
        image, scores, key = render_style_board(
            storyboard, chosen.id, candidates, render_profile, store, base_dir=base_dir
        )
    else:
        image, scores = render_style_board(
            storyboard, chosen.id, candidates, render_profile, base_dir=base_dir
        )
    path = Path(out or f"styleboard-{storyboard.project}-{chosen.id}.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    print(f"board:  {path} ({len(candidates)} styles, shot {chosen.id}, "
          f"profile {render_profile.name})")
    for index, (candidate, score) in enumerate(zip(candidates, scores, strict=True)):
        print(f"  #{index + 1} {candidate.name:24} palette {score:.2f}")
    if store is not None:
        print(f"stored: {store.uri(key)}")
    return 0


@click.command(cls=PrefectCommand,
               help="write, calibrate and approve a storyboard from a brief")
@click.argument("file")
@click.option("--llm", metavar="NAME",
              help="saved LLM endpoint block; default: the offline template planner")
@click.option("--versions", type=WHOLE, default=3, show_default=True,
              help=f"versions to choose from, 1..{MAX_VERSIONS}")
@click.option("--approval", type=APPROVALS, default="manual", show_default=True)
@click.option("--auto-approve", is_flag=True, help="same as --approval auto")
def script(file: str, llm: str | None, versions: int, approval: str, auto_approve: bool) -> int:
    """Brief -> calibrated versions -> the storyboard gate -> the approved storyboard's URI."""
    from reelflow.script.rounds import load_brief

    try:
        brief = load_brief(file)
    except ValueError as exc:
        return fail(str(exc), EXIT_INVALID)
    if not 1 <= versions <= MAX_VERSIONS:
        return fail(f"--versions {versions}: must be 1..{MAX_VERSIONS}", EXIT_INVALID)
    from cli.stack import use_local_stack

    use_local_stack()
    from flows.write_script import write_script
    from tasks.common import ensure_results_block
    from tasks.script import endpoint_info

    try:  # a missing block is refused before a flow run exists
        endpoint_info(llm)
    except ValueError as exc:
        return fail(f"--llm {llm}: {str(exc).splitlines()[0]}", EXIT_INVALID)
    ensure_results_block()
    uri = write_script(brief, versions=versions, approval="auto" if auto_approve else approval,
                       llm_endpoint=llm)
    print(f"storyboard: {uri}")
    print(f"editable:   {_save_beside(Path(file), uri)}")
    return 0


def _save_beside(brief: Path, uri: str) -> Path:
    """The approved storyboard as YAML next to the brief, to edit and render; an existing file
    (perhaps edited by hand) is never overwritten: the next free name is taken."""
    from reelflow.storyboard.sources import read_storyboard

    text = read_storyboard(uri, artifact_store())[0].to_yaml()
    stem = brief.name.split(".")[0]
    for k in range(1, 1000):
        path = brief.with_name(f"{stem}.storyboard{'' if k == 1 else f'-{k}'}.yaml")
        if not path.exists() or path.read_text(encoding="utf-8") == text:
            path.write_text(text, encoding="utf-8")
            return path
    raise InputError(f"{brief}: too many storyboard files beside it; remove some")


def register(group: click.Group) -> None:
    for command in (validate, schema, plan, styleboard, script):
        group.add_command(command)
