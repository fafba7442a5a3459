"""Runs and approvals: `render` a storyboard to a film, `approve` a paused run with the
reviewer's decision, list the runs that are `pending` at a gate."""

from __future__ import annotations

import os
from pathlib import Path

import click

from cli.common import APPROVALS, DECIMAL, EXIT_INVALID, WHOLE, ShotValue, artifact_store, fail
from cli.console import PrefectCommand
from cli.stack import use_local_stack
from cli.storyboard import PROFILE
from reelflow.errors import ReelflowError


@click.command(cls=PrefectCommand, help="render a storyboard (a file or an s3:// URI) to a film")
@click.argument("file")
@click.option("--approval", type=APPROVALS, default="manual", show_default=True)
@click.option("--auto-approve", is_flag=True, help="same as --approval auto")
@click.option("--profile", type=PROFILE, default="full", show_default=True)
@click.option("--out", help="download the film, cover and manifest into OUT/PROJECT/")
@click.option("--llm", metavar="BLOCK",
              help="LLMEndpoint block: rewrites a rejected shot's prompt from the notes")
@click.option("--export", "exports", multiple=True, metavar="ASPECT[,k=v...]",
              help="a version to deliver, e.g. 9:16 (1080x1920) or 9:16,size=720p or "
              "16:9,fps=60 or 16:9,size=3840x2160 (codec=h264|h265|av1, "
              "captions=burn|soft|none, cut=fast|slow); "
              "default: one at the storyboard's aspect with burned captions")
@click.option("--identity-threshold", type=DECIMAL, metavar="0..1",
              help="quality-gate: lowest identity score (vs the character's references) "
              "a shot's best variant needs to pass unattended")
def render(file: str, approval: str, auto_approve: bool, profile: str, out: str | None,
           llm: str | None, exports: tuple[str, ...], identity_threshold: float | None) -> int:
    use_local_stack()  # the store reads an s3:// board and the character library
    from flows.produce_video import produce_video
    from reelflow.progress import ProgressPrinter, listening
    from reelflow.render.inputs import check_inputs
    from reelflow.store.uris import is_s3_uri
    from tasks.common import ensure_results_block, get_store

    identity = {} if identity_threshold is None else {"identity_threshold": identity_threshold}
    approval = "auto" if auto_approve else approval
    # Every check the flow's first step makes, made here before any run exists (one line and
    # exit 2 for bad input); the parsed board is kept, so the run does not parse it again.
    inputs = check_inputs(file, approval=approval, profile=profile,
                          exports=list(exports) or None, llm_endpoint=llm, store=get_store(),
                          keep_for_run=True, **identity)
    ensure_results_block()
    # "images 3/9", "clips 5/9", "edit" on stderr as they happen; a line at least every 10 s
    with ProgressPrinter() as printer, listening(printer):
        result = produce_video(
            storyboard=file if is_s3_uri(file) else str(Path(file).resolve()),
            approval=approval,
            profile=profile,
            exports=inputs.exports,
            llm_endpoint=llm,
            **identity,
        )
    print(printer.summary())  # rendered in N s (work W s, waiting for review R s)
    print(f"film:     {result.film_uri}")
    print(f"cover:    {result.cover_uri}")
    print(f"manifest: {result.manifest_uri}")
    bucket_uri = result.film_uri.removesuffix(result.film_key)
    for name, key in result.versions.items():
        print(f"version:  {name} {bucket_uri}{key}")
    if out:
        _download(result, Path(out) / result.project)
    return 0


def _download(result, folder: Path) -> None:  # type: ignore[no-untyped-def]
    """final.mp4 is the delivered film (captions as the storyboard asks); master.mp4 the clean
    picture + music it was made from; every other version by its export name."""
    store = artifact_store()
    folder.mkdir(parents=True, exist_ok=True)
    store.get_file(result.film_key, folder / "final.mp4")
    store.get_file(result.cover_key, folder / "cover.png")
    store.get_file(result.master_key, folder / "master.mp4")
    store.get_file(result.manifest_key, folder / "manifest.json")
    others = {name: key for name, key in result.versions.items() if key != result.film_key}
    for name, key in others.items():
        store.get_file(key, folder / f"{name}.mp4")
        store.get_file(result.version_covers[name], folder / f"cover-{name}.png")
    print(f"downloaded to {folder}/: final.mp4, cover.png, master.mp4, manifest.json"
          + "".join(f", {name}.mp4" for name in others))


@click.command(cls=PrefectCommand, help="resume a paused run with the reviewer's decision")
@click.argument("run_id")
@click.option("--pick", multiple=True, type=ShotValue(int), metavar="SHOT=N",
              help="images gate: the variant chosen for a shot (default: 0)")
@click.option("--reject", multiple=True, type=ShotValue(), metavar="SHOT=NOTES",
              help="images/clips gate: regenerate this shot with these notes")
@click.option("--new-seed", multiple=True, type=ShotValue(int), metavar="SHOT=SEED",
              help="clips gate: regenerate this shot with another seed")
@click.option("--retake", multiple=True, type=ShotValue(), metavar="SHOT=TEXT",
              help="clips gate: speak this shot's voice-over line again with this text")
@click.option("--voice", multiple=True, type=ShotValue(), metavar="SHOT=VOICE",
              help="clips gate: speak this shot's voice-over line again in this voice")
@click.option("--speed", multiple=True, type=ShotValue(float), metavar="SHOT=X",
              help="clips gate: speak this shot's voice-over line again at this pace (1.0)")
@click.option("--lang", type=click.Choice(["zh", "en"]),
              help="clips gate: the language of the lines re-taken (default: the film's)")
@click.option("--notes", help="storyboard gate: notes for a revision (none: approve)")
@click.option("--version", type=WHOLE, help="storyboard gate: the version chosen")
@click.option("--reviewer", default=lambda: os.environ.get("USER", "reviewer"),
              show_default=False, help="who decides (default: $USER)")
def approve(run_id: str, pick: tuple[tuple[str, int], ...], reject: tuple[tuple[str, str], ...],
            new_seed: tuple[tuple[str, int], ...], notes: str | None, version: int | None,
            reviewer: str, retake: tuple[tuple[str, str], ...] = (),
            voice: tuple[tuple[str, str], ...] = (), speed: tuple[tuple[str, float], ...] = (),
            lang: str | None = None) -> int:
    use_local_stack()
    from flows.reviewer import approve_run

    try:
        gate = approve_run(run_id, picks=dict(pick), rejects=dict(reject),
                           new_seeds=dict(new_seed), notes=notes, version=version,
                           reviewer=reviewer, retakes=dict(retake), voices=dict(voice),
                           speeds=dict(speed), lang=lang)
    except (LookupError, ValueError) as exc:
        return fail(str(exc), EXIT_INVALID)
    except ReelflowError as exc:  # an answer the gate does not take: the run keeps waiting
        return fail(str(exc), exc.exit_code)
    except Exception as exc:
        if type(exc).__name__ == "ObjectNotFound":  # prefect.exceptions: no such flow run
            return fail(f"no flow run {run_id!r} on this Prefect server", EXIT_INVALID)
        raise
    print(f"resumed run {run_id} at the {gate} gate")
    return 0


@click.command(cls=PrefectCommand, help="list runs waiting for approval")
def pending() -> int:
    use_local_stack()
    from flows.reviewer import pending_runs

    runs = pending_runs()
    if not runs:
        print("no run is waiting for approval")
    for run in runs:
        print(f"{run['id']}  {run['project']}  waiting at {run['gate']} for {run['age']}")
    return 0


def register(group: click.Group) -> None:
    for command in (render, approve, pending):
        group.add_command(command)
