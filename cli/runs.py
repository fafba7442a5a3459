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


def _check_storyboard(file: str) -> bool:
    """Fetch (an s3:// URI) or load the storyboard and refuse it before any flow run exists;
    True when it is in the bucket. A StoryboardError is raised for main() to print."""
    from reelflow.store.uris import is_s3_uri, parse_s3_uri
    from reelflow.storyboard import load_storyboard

    if not is_s3_uri(file):
        load_storyboard(file)
        return False
    from reelflow.errors import InputError
    from reelflow.store.artifacts import ArtifactStore, ObjectNotFound
    from reelflow.store.settings import S3Settings
    from reelflow.storyboard.sources import read_storyboard

    settings = S3Settings.from_env()
    parse_s3_uri(file, settings.bucket, what="storyboard")
    try:
        read_storyboard(file, ArtifactStore(settings))
    except ObjectNotFound:
        raise InputError(f"storyboard {file}: no such object") from None
    return True


@click.command(cls=PrefectCommand, help="render a storyboard (a file or an s3:// URI) to a film")
@click.argument("file")
@click.option("--approval", type=APPROVALS, default="manual", show_default=True)
@click.option("--auto-approve", is_flag=True, help="same as --approval auto")
@click.option("--profile", type=PROFILE, default="full", show_default=True)
@click.option("--out", help="download the film, cover and manifest into OUT/PROJECT/")
@click.option("--llm", metavar="BLOCK",
              help="LLMEndpoint block: rewrites a rejected shot's prompt from the notes")
@click.option("--export", "exports", multiple=True, metavar="ASPECT[,k=v...]",
              help="a version to deliver, e.g. 9:16 or 16:9,fps=60 or 16:9,size=3840x2160 "
              "(codec=h264|h265|av1, captions=burn|soft|none, cut=fast|slow); "
              "default: one at the storyboard's aspect with burned captions")
@click.option("--identity-threshold", type=DECIMAL, metavar="0..1",
              help="quality-gate: lowest identity score (vs the character's references) "
              "a shot's best variant needs to pass unattended")
def render(file: str, approval: str, auto_approve: bool, profile: str, out: str | None,
           llm: str | None, exports: tuple[str, ...], identity_threshold: float | None) -> int:
    from reelflow.render.jobs import parse_export

    try:
        remote = _check_storyboard(file)  # its content is validated by the flow too
    except ReelflowError:
        raise  # main() prints it (a storyboard's problems one per line)
    except ValueError as exc:
        return fail(str(exc), EXIT_INVALID)
    export_specs = [parse_export(text) for text in exports] or None
    use_local_stack()
    from flows.produce_video import produce_video
    from reelflow.progress import ProgressPrinter, listening
    from tasks.common import ensure_results_block

    if not remote:  # a character missing from the library: one line, before any run starts
        from reelflow.storyboard import load_storyboard
        from reelflow.storyboard.characters import resolve_cast
        from tasks.common import get_store

        resolve_cast(load_storyboard(file), get_store())
    ensure_results_block()
    identity = {} if identity_threshold is None else {"identity_threshold": identity_threshold}
    with listening(ProgressPrinter()) as printer:  # "images 3/9", "clips 5/9", "edit" on stderr
        result = produce_video(
            storyboard=file if remote else str(Path(file).resolve()),
            approval="auto" if auto_approve else approval,
            profile=profile,
            exports=export_specs,
            llm_endpoint=llm,
            **identity,
        )
    print(f"rendered in {printer.clock() - printer.start:.0f} s")
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
@click.option("--notes", default="", help="storyboard gate: notes for a revision")
@click.option("--version", type=WHOLE, help="storyboard gate: the version chosen")
@click.option("--reviewer", default=lambda: os.environ.get("USER", "reviewer"),
              show_default=False, help="who decides (default: $USER)")
def approve(run_id: str, pick: tuple[tuple[str, int], ...], reject: tuple[tuple[str, str], ...],
            new_seed: tuple[tuple[str, int], ...], notes: str, version: int | None,
            reviewer: str) -> int:
    use_local_stack()
    from flows.gates import approve_run

    try:
        gate = approve_run(run_id, picks=dict(pick), rejects=dict(reject),
                           new_seeds=dict(new_seed), notes=notes, version=version,
                           reviewer=reviewer)
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
    from flows.gates import pending_runs

    runs = pending_runs()
    if not runs:
        print("no run is waiting for approval")
    for run in runs:
        print(f"{run['id']}  {run['project']}  waiting at {run['gate']} for {run['age']}")
    return 0


def register(group: click.Group) -> None:
    for command in (render, approve, pending):
        group.add_command(command)
