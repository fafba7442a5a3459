"""One check of a run's inputs, before anything renders: the storyboard (limits, file references,
the cast in the character library), the profile, the exports, the model paths, and the bounds of
every parameter of produce-video.

The CLI calls it before a flow run exists; the flow calls it as its first step, so a run started
from the Prefect UI or a schedule is refused with the same one line. Within one process the
storyboard is parsed once per render: the caller that checked it hands the parsed board to the
run it starts (`keep_for_run`), which takes it instead of reading the source again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from reelflow.errors import InputError
from reelflow.motion.capabilities import backends_with, capabilities
from reelflow.render.identity import IDENTITY_THRESHOLD
from reelflow.render.jobs import (
    PREVIZ,
    ExportSpec,
    lora_choices,
    model_choice,
    needs_image,
    parse_export,
    shot_loras,
    shot_video,
)
from reelflow.render.jobs.builders import backend_video_options
from reelflow.render.profiles import PROFILES, RenderProfile, get_profile
from reelflow.storyboard import Storyboard

if TYPE_CHECKING:
    from reelflow.store.artifacts import ArtifactStore

#: approval policies of produce-video (flows/gates.py `Approval`)
APPROVALS = ("manual", "auto", "quality-gate")
#: inclusive bounds of produce-video's numeric parameters
BOUNDS: dict[str, tuple[float, float]] = {
    "quality_threshold": (0.0, 1.0),
    "identity_threshold": (0.0, 1.0),
    "identity_retries": (0, 10),
}


class RunInputs(BaseModel):
    """A run's inputs after the check: what the run starts from, nothing parsed twice."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    storyboard: Storyboard  # parsed, checked; characters completed from the library (with store)
    base_dir: Path | None  # where its file references resolve; None: from the bucket / inline
    profile: RenderProfile  # the named profile (model blocks are applied by the flow)
    exports: list[ExportSpec] | None
    cast: dict[str, str] = {}  # library character -> version (with store)
    cast_resolved: bool = False  # checked against the character library (a store was given)


_kept: dict[str, RunInputs] = {}
_kept_lock = threading.Lock()


def check_parameters(
    *,
    approval: str = "manual",
    profile: str = "full",
    exports: list[Any] | None = None,
    quality_threshold: float = 0.3,
    identity_threshold: float = IDENTITY_THRESHOLD,
    identity_retries: int = 2,
    image_model: str | None = None,
    video_model: str | None = None,
    llm_endpoint: str | None = None,
) -> tuple[RenderProfile, list[ExportSpec] | None]:
    """The parameters' bounds (InputError naming the parameter); the profile and exports."""
    if approval not in APPROVALS:
        raise InputError(f"approval {approval!r}: must be one of {', '.join(APPROVALS)}")
    values = {
        "quality_threshold": quality_threshold,
        "identity_threshold": identity_threshold,
        "identity_retries": identity_retries,
    }
    for name, value in values.items():
        low, high = BOUNDS[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"{name} {value!r}: must be a number in {low:g}..{high:g}")
        # `{value:g}`: the same line for 5 (the CLI) and 5.0 (a flow parameter typed float)
        if name == "identity_retries" and not float(value).is_integer():
            raise InputError(f"{name} {value:g}: must be a whole number in {low:g}..{high:g}")
        if not low <= value <= high:
            raise InputError(f"{name} {value:g}: must be in {low:g}..{high:g}")
    for name, block in (
        ("image_model", image_model), ("video_model", video_model), ("llm_endpoint", llm_endpoint)
    ):  # fmt: skip
        if block is not None and not str(block).strip():
            raise InputError(f"{name}: empty block name (leave it unset for none)")
    try:
        render_profile = get_profile(profile)
    except ValueError:
        known = ", ".join(PROFILES)
        raise InputError(f"profile {profile!r}: unknown (choose from {known})") from None
    checked = check_exports(exports)
    if render_profile.delivery == "film":  # the preset's size is then not the default one
        named: dict[str, ExportSpec] = {}
        for export in checked or []:
            other = named.setdefault(export.name, export)
            if (other.size is None) != (export.size is None):
                raise InputError(
                    f"exports: {export.name} asked at the film's size and at "
                    f"{(export.size or other.size)[0]}x{(export.size or other.size)[1]}; the "
                    f"{profile} profile delivers at the film's own size, so the two would share "
                    "a name: ask for one of them")
    return render_profile, checked


def check_exports(exports: list[Any] | None) -> list[ExportSpec] | None:
    """Exports as ExportSpecs: given as specs, `--export` texts (`9:16,codec=h265`) or the
    mappings a UI form sends; InputError naming the export and its field."""
    if not exports:
        return None
    out = []
    for index, export in enumerate(exports):
        if isinstance(export, ExportSpec):
            out.append(export)
        elif isinstance(export, str):
            out.append(parse_export(export))
        else:
            try:
                out.append(ExportSpec.model_validate(export))
            except ValidationError as exc:
                error = exc.errors()[0]
                field = ".".join(str(p) for p in error["loc"])
                message = str(error["msg"]).removeprefix("Value error, ")
                raise InputError(f"exports[{index}].{field}: {message}") from None
    return out  # a version asked for twice is made once (flows/stages/delivery.py)


def check_models(storyboard: Storyboard, profile: RenderProfile, base_dir: Path | None) -> None:
    """The base model and every LoRA path resolve where the renderer will look (inside the
    storyboard's folder, or the models folder for a board from the bucket); the video and image
    models' speed options are known ones."""
    model_choice(storyboard, profile, base_dir)
    for where, speed in (("video options speed", profile.video_options.get("speed")),
                         ("image model speed", profile.image_speed)):
        if speed:
            from reelflow.gpu.speed import SpeedOptions

            try:
                SpeedOptions.model_validate(speed)
            except ValidationError as exc:
                error = exc.errors()[0]
                field = ".".join(str(p) for p in error["loc"])
                raise InputError(f"{where}.{field}: {error['msg']}") from None
    from reelflow.gpu.pins import with_video_pins

    with_video_pins(profile.video_options)  # the video models' memory pins (one line each)
    for backend, options in profile.video_models.items():
        with_video_pins(options, f"video_models.{backend}")
    if profile.image_model == PREVIZ:  # panels are drawn: no LoRA file is read
        return
    refs = {ref.name: ref for ref in storyboard.style.loras}
    for shot in storyboard.shots:
        if needs_image(shot):
            refs |= {ref.name: ref for ref in shot_loras(storyboard, shot)}
        for frame in (shot.first_frame, shot.last_frame):
            for ref in frame.loras if frame else []:
                refs.setdefault(ref.name, ref)
    lora_choices(list(refs.values()), profile, base_dir)


def check_upscalers(
    board: Storyboard, profile: RenderProfile, exports: list[ExportSpec] | None
) -> None:
    """A learned upscaler that a version will run (its delivery is wider than the reframed
    film) is a model folder on this machine: refused here in one line naming the export, not
    at delivery once the clips are made."""
    from reelflow.render.jobs import default_export, profile_upscaler
    from reelflow.render.jobs.builders import upscales
    from reelflow.render.jobs.resolve import resolve_model_path

    film = (board.width, board.height)
    for asked in exports or [default_export(board)]:
        export = profile_upscaler(asked, profile)
        if not export.upscaler:
            continue
        if not upscales(export, film, export.delivery_size(film, profile.delivery)):
            continue
        folder = Path(resolve_model_path(export.upscaler))
        if not (folder / "model_index.json").is_file():
            raise InputError(f"--export {asked.name}: upscaler {export.upscaler}: not found at "
                             f"{folder} (no model_index.json)")


def check_backends(
    storyboard: Storyboard, profile: RenderProfile | None = None, *, models: bool = True
) -> None:
    """The first of :func:`backend_problems`, raised (InputError, one line)."""
    for problem in backend_problems(storyboard, profile, models=models):
        raise InputError(problem)


def backend_problems(
    storyboard: Storyboard, profile: RenderProfile | None = None, *, models: bool = True
) -> Iterator[str]:
    """Every shot against what its video backend declares it can do, one line per problem
    naming the shot and the backend, every one listed: a last frame, the length of one window
    when the backend has no long-video method, its size multiple when it does not snap,
    reference images, audio; then whether it is wired, and (`models`) whether the run has a
    model for it.

    `profile`: the run's (its backend is the default, its model is for that backend); None
    (`reelflow validate`): the default profile's backend, and models are not checked.
    """
    default = (profile or PROFILES["full"]).video_backend
    chosen = [(shot, shot_video(storyboard, shot, default)) for shot in storyboard.shots]
    for shot, video in chosen:  # what no version of the backend will do comes first
        assert video.backend is not None
        caps = capabilities(video.backend)
        name = f"shot {shot.id}: backend {caps.name}"
        if shot.first_frame or shot.last_frame:  # the clip ends on a given frame
            if not caps.last_frame:
                yield (
                    f"{name} cannot end a clip on a given frame (this shot is a first+last-frame "
                    f"transition); backends that can: {backends_with('last_frame')}"
                )
        window = caps.window_seconds(storyboard.fps)
        if window is not None and shot.duration > window and caps.long_video == "none":
            yield (
                f"{name} renders at most {window:g} s in one window ({caps.max_frames} frames) "
                f"and has no long-video method; this shot is {shot.duration:g} s"
            )
        m = caps.size_multiple
        if not caps.snaps_size and (storyboard.width % m or storyboard.height % m):
            yield (
                f"{name} needs a size that is a multiple of {m} and does not snap it; the film "
                f"is {storyboard.width}x{storyboard.height}"
            )
        for ask, field in (("reference images", "reference_images"), ("audio", "audio")):
            if getattr(video, field) and not getattr(caps, field):
                yield (
                    f"{name} takes no {ask} (video.{field}); backends that do: "
                    f"{backends_with(field)}"
                )
        if video.reference_images and caps.reference_images and not shot.characters:
            yield (
                f"{name} is asked for reference images (video.reference_images) but the shot "
                "names no character; they are its characters' library references"
            )
    for shot, video in chosen:  # then what this version and this run can render
        assert video.backend is not None
        caps = capabilities(video.backend)
        name = f"shot {shot.id}: backend {caps.name}"
        if not caps.available:
            yield f"{name} is {caps.unavailable_reason}"
        if models and profile is not None and caps.needs_model:
            if not backend_video_options(profile, video.backend).get("model"):
                yield (
                    f"{name} needs a model and the run has none for it (the run's video "
                    f"backend is {profile.video_backend}); name one in a video-model block"
                )


def read_checked_storyboard(
    source: str, store: ArtifactStore | None
) -> tuple[Storyboard, Path | None]:
    """The storyboard at `source` (path, s3:// URI or inline text), parsed and checked once."""
    from reelflow.store.artifacts import ObjectNotFound
    from reelflow.store.uris import is_s3_uri
    from reelflow.storyboard.sources import read_storyboard

    if is_s3_uri(source) and store is None:
        raise InputError(f"storyboard {source}: reading from the bucket needs the store")
    try:
        return read_storyboard(source, store)
    except ObjectNotFound:
        raise InputError(f"storyboard {source}: no such object") from None


def source_key(source: str) -> str:
    """The same storyboard named by a relative or an absolute path is one source."""
    from reelflow.store.uris import is_s3_uri
    from reelflow.storyboard.sources import is_inline

    if is_s3_uri(source) or is_inline(source):
        return source
    return str(Path(source).resolve())


def check_inputs(
    storyboard: str,
    *,
    approval: str = "manual",
    profile: str = "full",
    exports: list[Any] | None = None,
    quality_threshold: float = 0.3,
    identity_threshold: float = IDENTITY_THRESHOLD,
    identity_retries: int = 2,
    image_model: str | None = None,
    video_model: str | None = None,
    llm_endpoint: str | None = None,
    store: ArtifactStore | None = None,
    keep_for_run: bool = False,
) -> RunInputs:
    """Check everything a render is given before it starts; raise InputError (or a
    StoryboardError / CharacterNotFound, both InputErrors) with one line naming the field.

    `store`: reads an s3:// storyboard and resolves the cast against the character library
    (without it the cast is not checked). `keep_for_run`: the run this process starts next for
    the same storyboard takes these inputs instead of parsing it again (the CLI's case);
    a run that finds kept inputs takes them (once) and re-checks only its parameters.
    """
    render_profile, checked_exports = check_parameters(
        approval=approval,
        profile=profile,
        exports=exports,
        quality_threshold=quality_threshold,
        identity_threshold=identity_threshold,
        identity_retries=identity_retries,
        image_model=image_model,
        video_model=video_model,
        llm_endpoint=llm_endpoint,
    )
    key = source_key(storyboard)
    with _kept_lock:
        kept = None if keep_for_run else _kept.pop(key, None)
    if kept is not None:
        board, base_dir, cast = kept.storyboard, kept.base_dir, kept.cast
        resolved = kept.cast_resolved
    else:
        board, base_dir = read_checked_storyboard(storyboard, store)
        cast, resolved = {}, False
    if store is not None and not resolved:
        from reelflow.storyboard.characters import resolve_cast

        board, cast = resolve_cast(board, store)
        resolved = True
    check_models(board, render_profile, base_dir)
    # A video-model block (applied by the flow after this check) may give the run its model:
    # then the flow checks the models once the block is applied.
    check_backends(board, render_profile, models=video_model is None)
    from reelflow.sound.check import check_export_languages, check_lines
    from reelflow.sound.lines import voiced_languages

    check_export_languages(board, checked_exports or [])  # `lang=`: lines in that language
    # the speech sources, and a line longer than its shot (when refused), in every language the
    # run's versions speak
    check_lines(board, base_dir, voiced_languages(board, [e.lang for e in checked_exports or []]))
    from reelflow.sound.music_model import check_music_model

    check_music_model(board)  # a bed generated from a prompt: its model folder is there
    check_upscalers(board, render_profile, checked_exports)
    inputs = RunInputs(
        storyboard=board,
        base_dir=base_dir,
        profile=render_profile,
        exports=checked_exports,
        cast=cast,
        cast_resolved=resolved,
    )
    if keep_for_run:
        with _kept_lock:
            _kept[key] = inputs
    return inputs
