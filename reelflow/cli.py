"""The `reelflow` command.

Heavy imports (Prefect, torch, diffusers) happen inside the commands that need them, so that
`reelflow validate` answers instantly and never touches a server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import NoReturn

EXIT_INVALID = 2
MAX_VERSIONS = 5
_FLOW_COMMANDS = {"script", "render", "approve", "pending"}


def _fail(message: str, code: int = 1) -> int:
    print(f"reelflow: {message}", file=sys.stderr)
    return code


# -- storyboard commands ---------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from reelflow.storyboard import StoryboardError, load_storyboard

    status = 0
    for file in args.files:
        try:
            storyboard = load_storyboard(file)
        except StoryboardError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            status = EXIT_INVALID
            continue
        print(
            f"{file}: ok ({len(storyboard.shots)} shots, {storyboard.duration:g} s, "
            f"{storyboard.width}x{storyboard.height}@{storyboard.fps})"
        )
    return status


def cmd_schema(args: argparse.Namespace) -> int:
    from reelflow.storyboard import json_schema

    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from reelflow.render.jobs import plan_render
    from reelflow.render.profiles import get_profile
    from reelflow.storyboard import StoryboardError, load_storyboard

    try:
        storyboard = load_storyboard(args.file)
        profile = get_profile(args.profile)
    except (StoryboardError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    from reelflow.render.jobs import model_choice, token_counter
    from reelflow.script.camera import propose_camera
    from reelflow.storyboard.prompts import count_tokens, language_warnings

    storyboard = propose_camera(storyboard)  # as the render does: unset camera fields proposed
    plan = plan_render(storyboard, profile, base_dir=Path(args.file).resolve().parent)
    model = model_choice(storyboard, profile, Path(args.file).resolve().parent)
    counter = token_counter(model)
    how = "counted by the model's tokenizer" if counter else "estimated"
    for job in plan.images:
        tokens = counter(job.prompt) if counter else count_tokens(job.prompt, model.family)
        print(
            f"{job.shot}: seed {job.seed}, {job.width}x{job.height}, {job.steps} steps, "
            f"{job.variants} variants, loras {[lora.name for lora in job.loras]}, "
            f"{tokens} tokens ({how})"
        )
        print(f"    {job.prompt}")
    for shot, parts in plan.truncated_prompts.items():
        print(f"{shot}: over the token budget, left out: {' | '.join(parts)}")
    if model.source != "previz":  # panels are drawn, no text encoder reads the prompt
        for warning in language_warnings(storyboard, model.family).values():
            print(f"warning: {warning}", file=sys.stderr)
    return 0


# -- style board -----------------------------------------------------------------------------


def cmd_styleboard(args: argparse.Namespace) -> int:
    """Render one shot under 2-4 candidate looks into one labelled image, offline."""
    from reelflow.render.profiles import get_profile
    from reelflow.storyboard import StoryboardError, load_storyboard
    from reelflow.styleboard import StyleBoardError, derive_candidates, load_candidates

    try:
        storyboard = load_storyboard(args.file)
        profile = get_profile(args.profile)
        shot = storyboard.shot(args.shot)
        candidates = (
            load_candidates(args.styles) if args.styles else derive_candidates(storyboard)
        )
    except StoryboardError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_INVALID
    except KeyError as exc:
        return _fail(str(exc.args[0]), EXIT_INVALID)
    except (StyleBoardError, ValueError) as exc:
        return _fail(str(exc), EXIT_INVALID)
    if profile.image_model == "tiny":
        from reelflow.render.jobs import shot_loras
        from reelflow.render.models import prepare_demo_models

        loras = [ref.name for ref in shot_loras(storyboard, shot)] if profile.tiny_loras else []
        prepare_demo_models(loras, profile.image_family or "sd15")
    from reelflow.styleboard import render_style_board

    base_dir = Path(args.file).resolve().parent
    store = None
    if args.upload:
        from reelflow.store.artifacts import ArtifactStore
        from reelflow.store.settings import S3Settings

        store = ArtifactStore(S3Settings.from_env())
        image, scores, key = render_style_board(
            storyboard, shot.id, candidates, profile, store, base_dir=base_dir
        )
    else:
        image, scores = render_style_board(
            storyboard, shot.id, candidates, profile, base_dir=base_dir
        )
    out = Path(args.out or f"styleboard-{storyboard.project}-{shot.id}.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    print(f"board:  {out} ({len(candidates)} styles, shot {shot.id}, profile {profile.name})")
    for index, (candidate, score) in enumerate(zip(candidates, scores, strict=True)):
        print(f"  #{index + 1} {candidate.name:24} palette {score:.2f}")
    if store is not None:
        print(f"stored: {store.uri(key)}")
    return 0


# -- character library -----------------------------------------------------------------------


def _lora_name(path: str, fallback: str) -> str:
    """A slug for a LoRA named after its file (`SU7 Body.safetensors` -> `su7-body`)."""
    import re

    name = re.sub(r"[^a-z0-9]+", "-", Path(path).stem.lower()).strip("-")[:64]
    return name or fallback


def _character_store():
    from reelflow.store.artifacts import ArtifactStore
    from reelflow.store.settings import S3Settings

    return ArtifactStore(S3Settings.from_env())


def _one_line_validation(exc: Exception, what: str) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"])
        value = error.get("input")
        shown = f" {value!r}" if isinstance(value, (str, int, float)) else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "string_pattern_mismatch":
            message = "use lowercase letters, digits and dashes"
        return f"invalid {what} {field}{shown}: {message}"
    return str(exc).splitlines()[0]


def _given(**values: object) -> dict[str, object]:
    """The options the user gave (not None), so model defaults apply to the rest."""
    return {k: v for k, v in values.items() if v is not None}


def cmd_characters_add(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from reelflow.storyboard import Character, LoraRef
    from reelflow.storyboard.characters import add_character

    if args.lora_weight is not None and not args.lora:
        return _fail("--lora-weight needs --lora", EXIT_INVALID)
    lora = None
    try:
        if args.lora:
            lora = LoraRef(
                name=_lora_name(args.lora, args.name),
                path=args.lora,
                weight=1.0 if args.lora_weight is None else args.lora_weight,
                role="subject",
            )
    except ValidationError as exc:
        return _fail(_one_line_validation(exc, "lora"), EXIT_INVALID)
    try:
        character = Character(
            name=args.name,
            description=args.description,
            trigger_words=list(dict.fromkeys(args.trigger)),
            lora=lora,
            **_given(ip_adapter_scale=args.ip_adapter_scale),
        )
    except ValidationError as exc:
        return _fail(_one_line_validation(exc, "character"), EXIT_INVALID)
    if not character.description.strip():
        return _fail("--description must not be empty", EXIT_INVALID)
    missing = [path for path in args.images if not Path(path).is_file()]
    if missing:
        return _fail(f"no such image file: {missing[0]}", EXIT_INVALID)
    try:
        record = add_character(_character_store(), character, [Path(p) for p in args.images])
    except ValueError as exc:  # not an image, a reserved or invalid file name
        return _fail(_one_line_validation(exc, "character"), EXIT_INVALID)
    images = len(record.reference_images)
    print(f"saved {record.name}: {images} reference image{'s' if images != 1 else ''}"
          + (f", lora {record.lora.name} ({record.lora.weight:g})" if record.lora else ""))
    return 0


def cmd_characters_list(args: argparse.Namespace) -> int:
    from reelflow.storyboard.characters import list_characters

    characters = list_characters(_character_store())
    if not characters:
        print("no characters in the library")
    for character in characters:
        extras = [f"{len(character.reference_images)} images"]
        if character.trigger_words:
            extras.append("triggers " + ", ".join(character.trigger_words))
        if character.lora:
            extras.append(f"lora {character.lora.name}")
        print(f"{character.name:20} {character.description}  ({'; '.join(extras)})")
    return 0


def cmd_characters_show(args: argparse.Namespace) -> int:
    import yaml

    from reelflow.store.keys import slug
    from reelflow.storyboard.characters import CharacterNotFound, get_character

    try:
        slug(args.name, "character name")
    except ValueError as exc:
        return _fail(str(exc), EXIT_INVALID)
    if args.sheet == "":
        args.sheet = f"{args.name}-sheet.png"
    store = _character_store()
    try:
        character = get_character(store, args.name)
    except CharacterNotFound as exc:
        return _fail(str(exc))
    from reelflow.storyboard.characters import character_version

    print(yaml.safe_dump(character.model_dump(mode="json"), allow_unicode=True,
                         sort_keys=False).rstrip())
    print(f"# current version (what renders record): {character_version(store, character)}")
    for key in character.reference_images:
        print(f"# {store.uri(key)}")
    if args.sheet:
        from reelflow.render.sheet import character_sheet

        sheet, entries = character_sheet(store, args.name)
        out = Path(args.sheet)
        out.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(out)
        for entry in entries:
            score = "" if entry.score is None else f"  {entry.score:.2f}"
            print(f"# sheet: {entry.label.splitlines()[0]}{score}")
        print(f"sheet: {out} ({len(entries)} images)")
    return 0


# -- local stack -----------------------------------------------------------------------------


def _stack_config(args: argparse.Namespace):
    """The recorded stack (its real ports), with the ports and database given as options."""
    from reelflow import devstack

    overrides = {k: getattr(args, k, None) for k in ("s3_port", "prefect_port", "redis_port", "db")}
    return devstack.StackConfig.load(**overrides)


def cmd_up(args: argparse.Namespace) -> int:
    from reelflow import devstack

    try:
        state = devstack.up(_stack_config(args))
    except devstack.StackError as exc:
        return _fail(str(exc))
    started = ", ".join(state.started) or "nothing (already running)"
    print(f"started: {started}")
    print(f"s3:      {state.s3_endpoint} ({'embedded' if state.s3_managed else 'external'})")
    if state.prefect_api_url:
        print(f"prefect: {state.prefect_api_url.removesuffix('/api')} (UI and API, database: "
              f"{state.db}; login: the auth_string in the state file)")
    if state.redis_pid:
        print(f"redis:   pid {state.redis_pid} (lock manager)")
    if state.prefect_api_url:
        try:
            grace = _watch_for_crashed_runs(state.prefect_api_url, state.home)
            print(f"crashed: a run whose heartbeats stop is marked Crashed after {grace} s")
        except Exception as exc:  # the stack works without it: say so, do not fail `up`
            print(f"crashed: the crashed-run automation was not applied "
                  f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})")
    print(f"state:   {state.home}/stack.json")
    return 0


def _watch_for_crashed_runs(api_url: str, home: Path) -> int:
    """Apply the crashed-run automation to the stack's own server (as `reelflow deploy` does),
    so a local render killed with its process does not stay Running before any deploy.
    Returns its grace in seconds."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from deployments.automations import ensure_zombie_automation
    from deployments.config import load_ops_config
    from reelflow import devstack

    grace = int(os.environ.get("REELFLOW_CRASHED_AFTER_SECONDS")
                or load_ops_config().crashed_after_seconds)
    auth = devstack.client_env(home).get("PREFECT_API_AUTH_STRING")
    with temporary_settings({PREFECT_API_URL: api_url, PREFECT_API_AUTH_STRING: auth}):
        with get_client(sync_client=True) as client:
            ensure_zombie_automation(client, grace)
    return grace


def cmd_down(args: argparse.Namespace) -> int:
    from reelflow import devstack

    stopped = devstack.down(devstack.StackConfig.load())
    print(f"stopped: {', '.join(map(str, stopped)) or 'nothing was running'}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from reelflow import devstack

    report = devstack.status(devstack.StackConfig.load())
    for name in devstack.SERVICES:
        service = report.get(name)
        if service is None:
            continue
        health = "healthy" if service["healthy"] else "down"
        owner = "managed" if service["managed"] else "external"
        pid = f" pid {service['pid']}" if service.get("pid") else ""
        print(f"{name:8} {health:8} {service.get('endpoint') or '-'} ({owner}{pid})")
    return 0 if report["healthy"] else 1


def use_local_stack() -> None:
    """Point Prefect at the local stack's server (its recorded port, with its credentials) unless
    the user configured another one; pass the stack's Redis on for the lock manager. Prefect's
    client retries (devstack.CLIENT_RETRY_ENV) are set for any server."""
    from deployments.automations import HEARTBEAT_SECONDS
    from reelflow import devstack

    for name, value in devstack.CLIENT_RETRY_ENV.items():  # ride out a server restart
        os.environ.setdefault(name, value)
    # a local run killed with its process is marked Crashed by the zombie automation
    # (`reelflow deploy` applies it) once its heartbeats stop, as a worker's runs are
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_SECONDS))
    stack = devstack.client_env()
    url = stack.get("PREFECT_API_URL")
    if not os.environ.get("PREFECT_API_URL") and url:
        os.environ["PREFECT_API_URL"] = url
    if url and os.environ.get("PREFECT_API_URL") != url:
        return  # another server: the stack's credentials, Redis and results key are not its own
    if "PREFECT_API_AUTH_STRING" in stack:
        os.environ.setdefault("PREFECT_API_AUTH_STRING", stack["PREFECT_API_AUTH_STRING"])
    for name in (devstack.ENV_REDIS_URL, devstack.ENV_RESULTS_KEY):
        if name in stack:
            os.environ.setdefault(name, stack[name])


# -- script: brief -> approved storyboard ---------------------------------------------------


def cmd_script(args: argparse.Namespace) -> int:
    """Brief -> calibrated versions -> the storyboard gate -> the approved storyboard's URI."""
    from reelflow.script.rounds import load_brief

    try:
        brief = load_brief(args.file)
    except ValueError as exc:
        return _fail(str(exc), EXIT_INVALID)
    if not 1 <= args.versions <= MAX_VERSIONS:
        return _fail(f"--versions {args.versions}: must be 1..{MAX_VERSIONS}", EXIT_INVALID)
    use_local_stack()
    from flows.write_script import write_script
    from tasks.common import ensure_results_block
    from tasks.script import endpoint_info

    try:  # a missing block is refused before a flow run exists
        endpoint_info(args.llm)
    except ValueError as exc:
        return _fail(f"--llm {args.llm}: {str(exc).splitlines()[0]}", EXIT_INVALID)
    ensure_results_block()
    approval = "auto" if args.auto_approve else args.approval
    uri = write_script(brief, versions=args.versions, approval=approval, llm_endpoint=args.llm)
    print(f"storyboard: {uri}")
    return 0


# -- rendering and approving -----------------------------------------------------------------


def cmd_render(args: argparse.Namespace) -> int:
    from reelflow.errors import ReelflowError
    from reelflow.render.profiles import get_profile
    from reelflow.store.uris import is_s3_uri, parse_s3_uri
    from reelflow.storyboard import load_storyboard

    remote = is_s3_uri(args.file)  # its content is validated by the flow, after it is fetched
    try:
        if remote:  # fetched and checked here too: no flow run for a storyboard we refuse
            from reelflow.errors import InputError
            from reelflow.store.artifacts import ArtifactStore, ObjectNotFound
            from reelflow.store.settings import S3Settings
            from reelflow.storyboard.sources import read_storyboard

            settings = S3Settings.from_env()
            parse_s3_uri(args.file, settings.bucket, what="storyboard")
            try:
                read_storyboard(args.file, ArtifactStore(settings))
            except ObjectNotFound:
                raise InputError(f"storyboard {args.file}: no such object") from None
        else:
            load_storyboard(args.file)
        get_profile(args.profile)
    except ReelflowError:
        raise  # main() prints it (a storyboard's problems one per line)
    except ValueError as exc:
        return _fail(str(exc), EXIT_INVALID)
    exports = [parse_export(text) for text in args.export] or None
    use_local_stack()
    from flows.produce_video import produce_video
    from tasks.common import ensure_results_block

    if not remote:  # a character missing from the library: one line, before any run starts
        from reelflow.storyboard.characters import resolve_cast
        from tasks.common import get_store

        resolve_cast(load_storyboard(args.file), get_store())
    ensure_results_block()
    from reelflow.progress import ProgressPrinter, listening

    approval = "auto" if args.auto_approve else args.approval
    threshold = args.identity_threshold
    identity = {} if threshold is None else {"identity_threshold": threshold}
    with listening(ProgressPrinter()) as printer:  # "images 3/9", "clips 5/9", "edit" on stderr
        result = produce_video(
            storyboard=args.file if remote else str(Path(args.file).resolve()),
            approval=approval,
            profile=args.profile,
            exports=exports,
            llm_endpoint=args.llm,
            **identity,
        )
    print(f"rendered in {printer.clock() - printer.start:.0f} s")
    print(f"film:     {result.film_uri}")
    print(f"cover:    {result.cover_uri}")
    print(f"manifest: {result.manifest_uri}")
    bucket_uri = result.film_uri.removesuffix(result.film_key)
    for name, key in result.versions.items():
        print(f"version:  {name} {bucket_uri}{key}")
    if args.out:
        from reelflow.store.artifacts import ArtifactStore
        from reelflow.store.settings import S3Settings

        store = ArtifactStore(S3Settings.from_env())
        out = Path(args.out) / result.project
        out.mkdir(parents=True, exist_ok=True)
        # final.mp4 is the delivered film (captions as the storyboard asks); master.mp4 the
        # clean picture + music it was made from; every other version by its export name.
        store.get_file(result.film_key, out / "final.mp4")
        store.get_file(result.cover_key, out / "cover.png")
        store.get_file(result.master_key, out / "master.mp4")
        store.get_file(result.manifest_key, out / "manifest.json")
        others = {name: key for name, key in result.versions.items() if key != result.film_key}
        for name, key in others.items():
            store.get_file(key, out / f"{name}.mp4")
            store.get_file(result.version_covers[name], out / f"cover-{name}.png")
        print(f"downloaded to {out}/: final.mp4, cover.png, master.mp4, manifest.json"
              + "".join(f", {name}.mp4" for name in others))
    return 0


def parse_export(text: str):
    """`9:16`, `16:9,codec=h265`, `16:9,fps=60`, `16:9,size=3840x2160,captions=soft`."""
    from reelflow.render.jobs import parse_export as parse

    return parse(text)


def _int(value: str, option: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{option}: expected a whole number, got {value!r}") from None


def _parse_pairs(values: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        shot, sep, rest = value.partition("=")
        if not sep or not shot:
            raise ValueError(f"{what} '{value}': expected SHOT=VALUE")
        pairs[shot] = rest
    return pairs


def cmd_approve(args: argparse.Namespace) -> int:
    use_local_stack()
    from flows.gates import approve_run
    from reelflow.errors import ReelflowError

    try:
        picks = {k: _int(v, f"--pick {k}") for k, v in _parse_pairs(args.pick, "--pick").items()}
        rejects = _parse_pairs(args.reject, "--reject")
        seeds = {k: _int(v, f"--new-seed {k}")
                 for k, v in _parse_pairs(args.new_seed, "--new-seed").items()}
    except ValueError as exc:
        return _fail(str(exc), EXIT_INVALID)
    try:
        gate = approve_run(
            args.run_id,
            picks=picks,
            rejects=rejects,
            new_seeds=seeds,
            notes=args.notes,
            version=args.version,
            reviewer=args.reviewer,
        )
    except (LookupError, ValueError) as exc:
        return _fail(str(exc), EXIT_INVALID)
    except ReelflowError as exc:  # an answer the gate does not take: the run keeps waiting
        return _fail(str(exc), exc.exit_code)
    except Exception as exc:
        if type(exc).__name__ == "ObjectNotFound":  # prefect.exceptions: no such flow run
            return _fail(f"no flow run {args.run_id!r} on this Prefect server", EXIT_INVALID)
        raise
    print(f"resumed run {args.run_id} at the {gate} gate")
    return 0


def cmd_pending(args: argparse.Namespace) -> int:
    use_local_stack()
    from flows.gates import pending_runs

    runs = pending_runs()
    if not runs:
        print("no run is waiting for approval")
    for run in runs:
        print(f"{run['id']}  {run['project']}  waiting at {run['gate']} for {run['age']}")
    return 0


# -- operations (deployments, workers) -------------------------------------------------------


def cmd_deploy(args: argparse.Namespace) -> int:
    use_local_stack()
    from deployments.deploy import DeployError, deploy

    try:
        report = deploy(args.prefect_file, notify_url=args.notify_url)
    except (DeployError, RuntimeError, ValueError) as exc:
        return _fail(str(exc))
    print(f"server:        {report.api_url}")
    for what, items in (("work pools", report.work_pools),
                        ("limits", report.concurrency_limits)):
        print(f"{what + ':':14} " + ", ".join(f"{k} ({v})" for k, v in items.items()))
    print(f"results block: {report.results_block}")
    print(f"notifications: {report.notifications}")
    for name, deployment_id in report.deployments.items():
        print(f"deployment:    {name} {deployment_id}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    use_local_stack()
    from deployments.worker import worker_command, worker_env

    env = worker_env(project_dir=args.project_dir, gpu=args.gpu)
    name = args.name or (f"{args.pool}-{args.gpu}" if args.gpu is not None else None)
    # one GPU renders one run at a time: a GPU worker takes the next run when its GPU is free
    limit = args.limit or (1 if args.gpu is not None else None)
    cmd = worker_command(args.pool, name=name, limit=limit)
    os.execvpe(cmd[0], cmd, env)  # the worker replaces this process (signals reach it)
    return 0


# -- entry point -----------------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1024 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1024-65535")
    return port


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one line (exit 2) like every other refusal."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INVALID, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reelflow", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also REELFLOW_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check storyboard files; exit 2 when one is invalid")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="print the storyboard JSON Schema")
    p.set_defaults(func=lambda args: cmd_schema(args))

    p = sub.add_parser("plan", help="show composed prompts, seeds and sizes without rendering")
    p.add_argument("file")
    p.add_argument("--profile", default="full")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("up", help="start the local stack: S3, PostgreSQL, Redis, Prefect")
    p.add_argument("--db", choices=["postgres", "sqlite"], default=None,
                   help="Prefect's database (default: postgres, or the last choice; an external "
                   "PREFECT_API_DATABASE_CONNECTION_URL is used when set)")
    p.add_argument("--prefect-port", type=_port, default=None, metavar="PORT",
                   help="Prefect UI/API port (default 4200, or the last one used)")
    p.add_argument("--s3-port", type=_port, default=None, metavar="PORT",
                   help="S3 port (default 8333, or the last one used)")
    p.add_argument("--redis-port", type=_port, default=None, metavar="PORT",
                   help="Redis port (default 6390, or the last one used)")
    p.set_defaults(func=cmd_up)
    for name, func, text in (
        ("down", cmd_down, "stop the local stack"),
        ("status", cmd_status, "say what runs where"),
    ):
        sub.add_parser(name, help=text).set_defaults(func=func)

    p = sub.add_parser("styleboard", help="one shot under 2-4 candidate styles, side by side")
    p.add_argument("file")
    p.add_argument("--shot", required=True, help="id of the shot to render")
    p.add_argument("--styles", default=None, metavar="YAML",
                   help="list of styles (name, visual_style, lighting, palette, quality_tags); "
                   "default: the storyboard's own style and two variations")
    p.add_argument("--profile", default="demo", help="demo | test | full (default: demo)")
    p.add_argument("--out", default=None,
                   help="PNG to write (default: styleboard-PROJECT-SHOT.png)")
    p.add_argument("--upload", action="store_true",
                   help="also store it (with lineage) in the stack's S3 under styleboards/")
    p.set_defaults(func=cmd_styleboard)

    p = sub.add_parser("characters", help="the character library shared across projects (S3)")
    chars = p.add_subparsers(dest="characters_command", required=True)
    c = chars.add_parser("add", help="add or update a character, uploading reference images")
    c.add_argument("name", help="slug: lowercase letters, digits and dashes")
    c.add_argument("images", nargs="*", metavar="IMAGE", help="reference images (PNG/JPEG/WebP)")
    c.add_argument("--description", required=True)
    c.add_argument("--trigger", action="append", default=[], metavar="WORD",
                   help="trigger word (repeatable)")
    c.add_argument("--lora", default=None, metavar="PATH", help="the character's LoRA file")
    c.add_argument("--lora-weight", type=float, default=None, metavar="W",
                   help="LoRA weight, -4..4 (default 1)")
    c.add_argument("--ip-adapter-scale", type=float, default=None, metavar="S",
                   help="how strongly its first reference conditions its shots, 0..2 "
                   "(IP-Adapter; default 0.6)")
    c.set_defaults(func=cmd_characters_add, trailing="images")
    c = chars.add_parser("list", help="every character in the library")
    c.set_defaults(func=cmd_characters_list)
    c = chars.add_parser("show", help="one character's record and reference image URIs")
    c.add_argument("name")
    c.add_argument("--sheet", nargs="?", const="", default=None, metavar="PNG",
                   help="also render its references and the chosen frames of its shots with "
                   "identity scores (default file: NAME-sheet.png)")
    c.set_defaults(func=cmd_characters_show)

    p = sub.add_parser("script", help="write, calibrate and approve a storyboard from a brief")
    p.add_argument("file", help="brief YAML/JSON: subjects, scenes, mood, shots, total_seconds")
    p.add_argument("--llm", default=None, metavar="NAME",
                   help="saved LLM endpoint block; default: the offline template planner")
    p.add_argument("--versions", type=int, default=3,
                   help=f"versions to choose from, 1..{MAX_VERSIONS}")
    p.add_argument("--approval", choices=["manual", "auto", "quality-gate"], default="manual")
    p.add_argument("--auto-approve", action="store_true", help="same as --approval auto")
    p.set_defaults(func=cmd_script)

    p = sub.add_parser("render", help="render a storyboard to a film")
    p.add_argument("file")
    p.add_argument("--approval", choices=["manual", "auto", "quality-gate"], default="manual")
    p.add_argument("--auto-approve", action="store_true", help="same as --approval auto")
    p.add_argument("--profile", default="full", help="full | demo | test")
    p.add_argument("--out", help="download the film, cover and manifest into OUT/PROJECT/")
    p.add_argument("--llm", default=None, metavar="BLOCK",
                   help="LLMEndpoint block: rewrites a rejected shot's prompt from the notes")
    p.add_argument("--export", action="append", default=[], metavar="ASPECT[,k=v...]",
                   help="a version to deliver, e.g. 9:16 or 16:9,fps=60 or 16:9,size=3840x2160 "
                   "(codec=h264|h265|av1, captions=burn|soft|none, cut=fast|slow); "
                   "default: one at the storyboard's aspect with burned captions")
    p.add_argument("--identity-threshold", type=float, default=None, metavar="0..1",
                   help="quality-gate: lowest identity score (vs the character's references) "
                   "a shot's best variant needs to pass unattended")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("approve", help="resume a paused run with the reviewer's decision")
    p.add_argument("run_id")
    p.add_argument(
        "--pick",
        action="append",
        default=[],
        metavar="SHOT=N",
        help="images gate: the variant chosen for a shot (default: 0)",
    )
    p.add_argument(
        "--reject",
        action="append",
        default=[],
        metavar="SHOT=NOTES",
        help="images/clips gate: regenerate this shot with these notes",
    )
    p.add_argument(
        "--new-seed",
        action="append",
        default=[],
        metavar="SHOT=SEED",
        help="clips gate: regenerate this shot with another seed",
    )
    p.add_argument("--notes", default="", help="storyboard gate: notes for a revision")
    p.add_argument("--version", type=int, default=None, help="storyboard gate: version chosen")
    p.add_argument("--reviewer", default=os.environ.get("USER", "reviewer"))
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("pending", help="list runs waiting for approval")
    p.set_defaults(func=cmd_pending)

    p = sub.add_parser("deploy", help="work pools, gpu limit, blocks, automations, deployments")
    p.add_argument("--prefect-file", default=None, help="default: prefect.yaml of this checkout")
    p.add_argument("--notify-url", default=None,
                   help="webhook for 'run waits at a gate' (default: $REELFLOW_NOTIFY_URL)")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("worker", help="start a process worker (code: the deployed bundle)")
    p.add_argument("--pool", default="cpu", help="cpu | gpu")
    p.add_argument("--gpu", default=None, help="CUDA_VISIBLE_DEVICES for this worker, e.g. 0")
    p.add_argument("--name", default=None)
    p.add_argument("--limit", type=int, default=None,
                   help="max concurrent runs (default: 1 with --gpu, else unlimited)")
    p.add_argument("--project-dir", default=None,
                   help="checkout runs execute in when a deployment has no code bundle")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("lineage", help="what made an object: the chain back to its storyboard")
    p.add_argument("target", help="object key, s3://bucket/key, or a downloaded file (by sha256)")
    p.add_argument("--project", default=None, help="search a file only in this project")
    p.add_argument("--json", action="store_true", help="the tree as JSON")
    p.set_defaults(func=cmd_lineage)

    p = sub.add_parser(
        "regenerate", help="re-run the step that made an image or clip; exit 0 when bit-identical"
    )
    p.add_argument("target", help="object key, s3://bucket/key, or a downloaded file")
    p.add_argument("--save", default=None, help="write the regenerated image (or clip) here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_regenerate)
    return parser


# -- lineage and regenerate ------------------------------------------------------------------


def _bucket_store():
    from reelflow.store.artifacts import ArtifactStore
    from reelflow.store.settings import S3Settings

    return ArtifactStore(S3Settings.from_env())


def cmd_lineage(args: argparse.Namespace) -> int:
    """The chain from an object (a key, s3:// URI or a downloaded file) back to its inputs."""
    from reelflow.errors import ReelflowError
    from reelflow.render.lineage import lineage_tree, render_text, resolve_target

    store = _bucket_store()
    prefix = f"projects/{args.project}/" if args.project else "projects/"
    try:
        key = resolve_target(store, args.target, prefix)
        tree = lineage_tree(store, key)
    except ReelflowError as exc:
        return _fail(str(exc), exc.exit_code)
    if args.json:
        print(tree.model_dump_json(indent=2))
    else:
        print(render_text(tree))
    return 0


def cmd_regenerate(args: argparse.Namespace) -> int:
    """Re-run the step that made an image or clip from its sidecar; exit 0 only when
    bit-identical."""
    from reelflow.errors import ReelflowError
    from reelflow.render.lineage import resolve_target
    from reelflow.render.regenerate import regenerate

    store = _bucket_store()
    try:
        key = resolve_target(store, args.target)
        result = regenerate(store, key, Path(args.save) if args.save else None)
    except ReelflowError as exc:
        return _fail(str(exc), exc.exit_code)
    print(result.model_dump_json(indent=2) if args.json else result.summary())
    return 0 if result.identical else 1


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's to fix: shown as one line, not a traceback."""
    from reelflow.store.artifacts import StoreError
    from reelflow.store.settings import SettingsError

    errors: list[type[BaseException]] = [SettingsError, StoreError]
    try:
        from reelflow.imaging.models import LoraError, ModelLoadError, ModelNotFoundError

        errors += [LoraError, ModelLoadError, ModelNotFoundError]
    except ImportError:  # imaging is optional for validate/schema
        pass
    return tuple(errors)


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parse_args, except that a command with `trailing=DEST` also takes positionals after its
    options (`characters add NAME --description D IMAGE...`): argparse alone fills a `*`
    positional before the options and rejects what follows them."""
    args, extras = parser.parse_known_args(argv)
    trailing = getattr(args, "trailing", None)
    if extras and trailing and not any(extra.startswith("-") for extra in extras):
        getattr(args, trailing).extend(extras)
    elif extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run a command; every error is one line on stderr (`--debug` or REELFLOW_DEBUG=1 for the
    traceback): exit 2 for bad input, 1 for a failure, 130 when interrupted."""
    from reelflow.errors import ReelflowError

    argv_given = argv is not None  # called in-process (tests): never os._exit
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("REELFLOW_DEBUG", "") not in ("", "0")
    argv = [arg for arg in argv if arg != "--debug"]
    args = _parse(build_parser(), argv)
    try:
        if not debug and args.command in _FLOW_COMMANDS:
            use_local_stack()  # before Prefect's first import reads its settings
            quiet_console_tracebacks()
        return args.func(args)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except ReelflowError as exc:
        if debug:
            raise
        problems = getattr(exc, "problems", None)  # a storyboard's: `file:line field: message`
        if not problems:
            return _fail(_first_line(exc), exc.exit_code)
        for problem in problems:
            print(problem, file=sys.stderr)
        return exc.exit_code
    except _expected_errors() as exc:
        if debug:
            raise
        return _fail(_first_line(exc))
    except Exception as exc:
        if debug:
            raise
        if _prefect_unreachable(exc):
            code = _fail(f"the Prefect API at {_api_url()} stopped answering "
                         f"({type(exc).__name__}: {_first_line(exc)}) and did not come back "
                         "within the client's retries; is the server up? (`reelflow status`)")
            if argv_given:
                return code
            # The real command: Prefect's exit hooks would now try, for minutes, to send queued
            # events and logs to the server that is gone. Nothing more can reach it: stop here.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return _fail(f"unexpected {type(exc).__name__}: {_first_line(exc)} "
                     "(run with --debug for the traceback)")


def _unreachable_errors() -> tuple[type[BaseException], ...]:
    import httpx

    return (httpx.TransportError,)


def _prefect_unreachable(exc: BaseException) -> bool:
    """A network error of a request to the Prefect API (not, say, the LLM's): what is left once
    Prefect's client has retried (devstack.CLIENT_RETRY_ENV)."""
    import httpx

    if not isinstance(exc, httpx.TransportError):
        return False
    try:
        url = exc.request.url
    except RuntimeError:  # no request attached
        return False
    api = httpx.URL(_api_url()) if _api_url().startswith("http") else None
    return api is not None and (url.host, url.port) == (api.host, api.port)


def _api_url() -> str:
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        try:
            from prefect.settings import PREFECT_API_URL

            url = PREFECT_API_URL.value()
        except Exception:  # noqa: BLE001 - only for the message
            url = None
    return url or "(no PREFECT_API_URL)"


class _QuietKnownErrors:
    """Wraps a console handler's `format`: a ReelflowError logged with its traceback (Prefect
    logs every failed task and flow that way) prints as its one-line message on the console.
    The record itself is untouched, so the run's log in Prefect keeps the full traceback."""

    def __init__(self, format_record):  # type: ignore[no-untyped-def]
        self.format_record = format_record

    def __call__(self, record):  # type: ignore[no-untyped-def]
        import copy

        from reelflow.errors import ReelflowError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (ReelflowError, *_unreachable_errors())):
            record = copy.copy(record)
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return self.format_record(record)


def _not_an_event_dump(record) -> bool:  # type: ignore[no-untyped-def]
    """While the server is away, Prefect logs each event it could not send as an ERROR holding
    the whole event (kilobytes); its `Unable to connect to ...` warning already says it."""
    return not (record.msg == "Service %r failed to process item %r"
                and record.args and record.args[0] == "EventsWorker")


def quiet_console_tracebacks() -> None:
    """Install _QuietKnownErrors on the console handlers Prefect set up (idempotent); keep event
    dumps off the console, and Prefect's API log handler from printing its own failures
    ("--- Error logging to API ---": the CLI's last line says the server is gone)."""
    import logging

    import prefect.main  # noqa: F401  (configures Prefect's logging, as any flow import does)

    logging.raiseExceptions = False

    loggers = [logging.getLogger()] + [
        logger for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if (isinstance(handler, logging.StreamHandler)
                    and not isinstance(handler, logging.FileHandler)
                    and not isinstance(handler.format, _QuietKnownErrors)):
                handler.format = _QuietKnownErrors(handler.format)  # type: ignore[method-assign]
                handler.addFilter(_not_an_event_dump)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
