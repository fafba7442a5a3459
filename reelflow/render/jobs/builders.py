"""Builders: (storyboard, profile, the run's facts, reviewer notes) -> jobs. The flow,
render-shot and the benchmark's plain loop call these, so every caller computes the same keys."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from reelflow.render.jobs.exports import Delivery, ExportSpec
from reelflow.render.jobs.resolve import (
    MODELS_PREFIX,
    PREVIZ,
    RunFacts,
    identify_weights,
    resolve_model_path,
    resolve_run_facts,
    weight_hash,
)
from reelflow.render.jobs.specs import (
    CaptionCue,
    ClipJob,
    CoverJob,
    EditClip,
    EditJob,
    FrameJob,
    HiresJob,
    ImageJob,
    IPAdapterChoice,
    MasterJob,
    MusicBedJob,
    MusicJob,
    PanelSpec,
    RenderPlan,
    RetouchJob,
    SpeechJob,
    SpokenLine,
    StillPlan,
    UpscalerChoice,
    VersionJob,
)
from reelflow.render.profiles import RenderProfile
from reelflow.storyboard import FrameRef, LoraRef, Shot, Storyboard, Transition, VideoChoice
from reelflow.storyboard.prompts import compose_prompt, motion_phrase

if TYPE_CHECKING:
    from reelflow.sound.sources import Take


def run_facts(
    storyboard: Storyboard, profile: RenderProfile, base_dir: Path | None, facts: RunFacts | None
) -> RunFacts:
    """The run's facts when the caller resolved them (once per run; their `base_dir` then
    stands), else resolved now (a single job built on its own)."""
    if facts is None:
        return resolve_run_facts(storyboard, profile, base_dir)
    if facts.profile != profile:
        raise ValueError("run facts were resolved for another profile")
    return facts


def shot_seed(storyboard: Storyboard, shot: Shot) -> int:
    """Stable per shot: reordering or adding shots does not change another shot's seed."""
    if shot.seed is not None:
        return shot.seed
    return (storyboard.style.base_seed + zlib.crc32(shot.id.encode()) % 1_000_000) % 2**32


def shot_loras(storyboard: Storyboard, shot: Shot) -> list[LoraRef]:
    """Style LoRAs, then the characters', then the shot's own (scene/detail), without repeats."""
    refs: dict[str, LoraRef] = {}
    for ref in storyboard.style.loras:
        refs[ref.name] = ref
    for name in shot.characters:
        character = storyboard.character(name)
        if character.lora is not None:
            refs[character.lora.name] = character.lora
    for ref in shot.loras:
        refs[ref.name] = ref
    return list(refs.values())


def lora_names(storyboard: Storyboard) -> list[str]:
    """Every LoRA the storyboard uses: its shots' stacks and its restyled frames' (the tiny
    profiles build one tiny LoRA per name)."""
    names = {lora.name for shot in storyboard.shots for lora in shot_loras(storyboard, shot)}
    names |= {
        lora.name
        for shot in storyboard.shots
        for ref in (shot.first_frame, shot.last_frame)
        if ref
        for lora in ref.loras
    }
    return sorted(names)


#: the latent stride each family's sizes must be a multiple of (Flux packs 2x2 latents)
SIZE_MULTIPLE = {"sd15": 8, "sdxl": 8, "flux": 16}


def generation_size(
    storyboard: Storyboard, profile: RenderProfile, family: str = "sd15"
) -> tuple[int, int]:
    """The stills' size: the profile's (or the style's) pixel budget in the film's aspect.

    A profile or style size of another shape (the demo's 128x72 on a 9:16 board, the default
    1536x864 on a vertical film) keeps its number of pixels and takes the storyboard's shape,
    so a vertical film is previewed from portrait stills, not crops of landscape ones.
    """
    width = profile.image_width or storyboard.style.width
    height = profile.image_height or storyboard.style.height
    a, b = (int(v) for v in storyboard.aspect.split(":"))
    ratio = a / b
    multiple = SIZE_MULTIPLE.get(family, 8)
    if abs(width / height - ratio) > 0.02 * ratio:
        budget = width * height
        width, height = (budget * ratio) ** 0.5, (budget / ratio) ** 0.5
    return (
        max(multiple, round(width / multiple) * multiple),
        max(multiple, round(height / multiple) * multiple),
    )


def image_job(
    storyboard: Storyboard,
    shot: Shot,
    profile: RenderProfile,
    *,
    base_dir: Path | None = Path("."),
    notes: list[str] | None = None,
    round_: int = 0,
    facts: RunFacts | None = None,
) -> ImageJob:
    """A shot's variants. `facts`: the run's (resolve_run_facts), else resolved here."""
    style = storyboard.style
    facts = run_facts(storyboard, profile, base_dir, facts)
    model = facts.model
    composed = compose_prompt(
        storyboard, shot, family=model.family, notes=notes, count=facts.count
    )
    width, height = generation_size(storyboard, profile, model.family)
    panel = None
    if model.source == PREVIZ:  # a new take shows the notes it was drawn again for
        panel = panel_spec(storyboard, shot, notes=notes, take=round_)
    job = ImageJob(
        project=storyboard.project,
        shot=shot.id,
        prompt=composed.prompt,
        negative_prompt=composed.negative_prompt,
        seed=shot_seed(storyboard, shot) + 1000 * round_,
        width=width,
        height=height,
        steps=profile.steps or style.steps,
        guidance=style.guidance,
        sampler=style.sampler,
        model=model,
        # previz draws panels: LoRA files are not read (nor need to exist)
        loras=[] if panel else facts.lora_choices(shot_loras(storyboard, shot)),
        variants=profile.variants or style.variants,
        panel=panel,
        **shot_characters(storyboard, shot),
        ip_adapter=ip_adapter_choice(storyboard, shot, profile),
        speed={} if panel else dict(profile.image_speed),  # previz: no model to speed up
    )
    return identify_weights(job, facts)


def panel_spec(
    storyboard: Storyboard,
    shot: Shot,
    *,
    notes: list[str] | None = None,
    take: int = 0,
    restyle: str | None = None,
) -> PanelSpec:
    """The previz panel of a shot: its description, framing, the palette, and the first
    character's reference image when the library has one (an object key under characters/);
    a panel drawn again carries the reviewer's notes and its take, a transition's restyled
    frame the restyle it asks for."""
    reference = next(
        (
            ref
            for name in shot.characters
            for ref in storyboard.character(name).reference_images
            if ref.startswith("characters/")
        ),
        None,
    )
    return PanelSpec(
        description=shot.description,
        size=shot.camera.size,
        angle=shot.camera.angle,
        movement=shot.camera.movement,
        palette=list(storyboard.style.palette),
        reference=reference,
        notes=list(notes or []),
        take=take,
        restyle=restyle,
    )


def ip_adapter_choice(
    storyboard: Storyboard, shot: Shot, profile: RenderProfile
) -> IPAdapterChoice | None:
    """The shot's first character with reference images locks its features through the
    profile's IP-Adapter (its first reference, at the character's scale); None without one."""
    if not profile.ip_adapter:
        return None
    path = f"{MODELS_PREFIX}tiny-ip-adapter" if profile.ip_adapter == "tiny" else profile.ip_adapter
    for name in shot.characters:
        character = storyboard.character(name)
        if character.reference_images and character.ip_adapter_scale > 0:
            return IPAdapterChoice(
                path=path,
                scale=character.ip_adapter_scale,
                image=character.reference_images[0],
                character=name,
            )
    return None


def shot_characters(storyboard: Storyboard, shot: Shot) -> dict[str, Any]:
    """The ImageJob fields naming the shot's characters: versions (set when the storyboard was
    resolved against the library) and reference image keys."""
    cast = [storyboard.character(name) for name in shot.characters]
    return {
        "characters": {c.name: c.version for c in cast if c.version},
        "character_refs": {c.name: list(c.reference_images) for c in cast if c.reference_images},
    }


def hires_job(job: ImageJob, variant_key: str, variant: int, profile: RenderProfile) -> HiresJob:
    return HiresJob(
        image=job,
        variant_key=variant_key,
        seed=job.seed + variant,
        scale=profile.hires_scale,
        strength=profile.hires_strength,
    )


def retouch_job(job: ImageJob, shot: Shot, source_key: str) -> RetouchJob | None:
    if not shot.inpaint and shot.outpaint is None:
        return None
    return RetouchJob(
        image=job,
        source_key=source_key,
        inpaint=[region.model_dump(mode="json") for region in shot.inpaint],
        outpaint=shot.outpaint.model_dump(mode="json") if shot.outpaint else None,
    )


def frame_job(
    storyboard: Storyboard,
    shot: Shot,
    ref: FrameRef,
    profile: RenderProfile,
    clip_key: str,
    *,
    base_dir: Path | None = Path("."),
    facts: RunFacts | None = None,
) -> FrameJob:
    """The frame `shot` takes from `ref.shot`'s clip (`clip_key`), restyled if the ref asks.

    Previz draws no restyle: the restyled frame is the shot's own panel instead (its card, with
    the restyle's words), so a transition moves from the frame it continues to a panel of its
    own rather than holding a copy of the other shot (see `draws_own_panel`)."""
    style = storyboard.style
    controlnet = profile.controlnet
    if controlnet == "tiny":
        controlnet = f"{MODELS_PREFIX}tiny-controlnet"
    facts = run_facts(storyboard, profile, base_dir, facts)
    model = facts.model
    previz = model.source == PREVIZ
    panel = None
    if previz and draws_own_panel(shot, ref):
        panel = panel_spec(storyboard, shot, restyle=ref.restyle).model_copy(
            update={"composition_of": ref.shot}
        )
    prompt = None
    if ref.restyle:
        composed = compose_prompt(storyboard, shot, family=model.family, count=facts.count)
        prompt = f"{ref.restyle}, {composed.prompt}"
    job = FrameJob(
        project=storyboard.project,
        shot=shot.id,
        source_shot=ref.shot,
        clip_key=clip_key,
        frame=ref.frame,
        restyle_prompt=prompt,
        negative_prompt=style.negative_prompt,
        seed=shot_seed(storyboard, shot),
        steps=profile.steps or style.steps,
        guidance=style.guidance,
        model=model,
        # previz draws panels: no LoRA or ControlNet file is read (nor needs to exist)
        controlnet=None if previz else controlnet,
        loras=[] if previz else facts.lora_choices([*style.loras, *ref.loras]),
        panel=panel,
    )
    return identify_weights(job, facts)


def draws_own_panel(shot: Shot, ref: FrameRef) -> bool:
    """Previz: whether the frame `shot` takes through `ref` is the shot's own panel. A restyled
    frame is (previz cannot restyle a picture; the panel says what the restyle asks for); so is
    the last frame when both ends name the very same frame, which would otherwise hold a still."""
    if ref.restyle:
        return True
    first = shot.first_frame
    return (
        ref is shot.last_frame
        and first is not None
        and not first.restyle
        and (first.shot, first.frame) == (ref.shot, ref.frame)
    )


def shot_video(storyboard: Storyboard, shot: Shot, default_backend: str) -> VideoChoice:
    """What the shot asks of the video stage, every field set: the shot's own choice over the
    style's, over the run's backend (`default_backend`: the profile's or video-model block's)."""
    merged: dict[str, Any] = {"backend": default_backend, "reference_images": False,
                              "audio": False}  # fmt: skip
    for choice in (storyboard.style.video, shot.video):
        if choice is not None:
            merged |= choice.model_dump(exclude_none=True)
    return VideoChoice(**merged)


def video_options(profile: RenderProfile) -> dict[str, Any]:
    """The generative backend's options, with its model named machine-independently."""
    options = dict(profile.video_options)
    if profile.video_model:
        model = profile.video_model
        options["model"] = f"{MODELS_PREFIX}{model}" if model.startswith("tiny-") else model
    return options


def backend_video_options(profile: RenderProfile, backend: str) -> dict[str, Any]:
    """The options (model included) of `backend` in this run: the run's own backend's, or those
    the profile (a video-model block) gives another backend a storyboard may choose
    (`profile.video_models`); none: the backend's defaults (refused at the check when it needs
    a model)."""
    from reelflow.gpu.pins import with_video_pins

    if backend == profile.video_backend:
        return with_video_pins(video_options(profile))
    options = dict(profile.video_models.get(backend, {}))
    model = options.get("model")
    if isinstance(model, str) and model.startswith("tiny-"):
        options["model"] = f"{MODELS_PREFIX}{model}"
    return with_video_pins(options, f"video_models.{backend}")


def clip_references(storyboard: Storyboard, shot: Shot, backend: str) -> dict[str, Any]:
    """The ClipJob fields that condition a clip on its characters' library references: on a
    backend that takes reference images (wan-vace), unless the storyboard says
    `video.reference_images: false`, the shot's characters' versions and reference keys."""
    from reelflow.motion.capabilities import capabilities

    asked = [c.reference_images for c in (shot.video, storyboard.style.video) if c is not None]
    wanted = next((value for value in asked if value is not None), True)
    if not wanted or not capabilities(backend).reference_images:
        return {}
    cast = [storyboard.character(name) for name in shot.characters]
    references = [
        key for c in cast for key in c.reference_images if key.startswith("characters/")
    ]
    if not references:
        return {}
    return {
        "characters": {c.name: c.version for c in cast if c.version},
        "reference_keys": references,
    }


def clip_job(
    storyboard: Storyboard,
    shot: Shot,
    profile: RenderProfile,
    *,
    still_key: str | None = None,
    first_frame_key: str | None = None,
    last_frame_key: str | None = None,
    duration: float | None = None,
    notes: list[str] | None = None,
    seed: int | None = None,
    facts: RunFacts | None = None,
) -> ClipJob:
    """A shot's clip from everything it depends on: its approved still (or the frames of a
    transition), its duration (the storyboard's, or snapped to the music), the reviewer's notes
    for a regeneration, and a new seed when one was asked for."""
    motion = motion_phrase(shot)
    if notes:
        motion = ", ".join([motion, *notes])
    backend = shot_video(storyboard, shot, profile.video_backend).backend
    assert backend is not None
    # The run's model and options belong to the run's backend; another one chosen by the
    # storyboard takes its defaults (a generative one without a model is refused at the check).
    options = backend_video_options(profile, backend)
    job = ClipJob(
        **clip_references(storyboard, shot, backend),
        backend_options=options,
        project=storyboard.project,
        shot=shot.id,
        duration=shot.duration if duration is None else duration,
        fps=storyboard.fps,
        width=storyboard.width,
        height=storyboard.height,
        movement=shot.camera.movement,
        motion_prompt=motion,
        backend=backend,
        seed=shot_seed(storyboard, shot) if seed is None else seed,
        image_key=still_key if needs_image(shot) else None,
        first_frame_key=first_frame_key,
        last_frame_key=last_frame_key,
    )
    return identify_weights(job, facts)


def still_plan(
    job: ImageJob, shot: Shot, variant_key: str, variant: int, profile: RenderProfile
) -> StillPlan:
    plan = StillPlan(variant_key=variant_key)
    if profile.hires_fix:
        plan.hires = hires_job(job, variant_key, variant, profile)
    plan.retouch = retouch_job(job, shot, plan.final_key())
    return plan


def frame_refs(shot: Shot) -> list[tuple[str, FrameRef]]:
    """The frames a shot takes from other shots' clips, by the ClipJob field each one fills."""
    ends = (("first_frame_key", shot.first_frame), ("last_frame_key", shot.last_frame))
    return [(field, ref) for field, ref in ends if ref is not None]


def needs_image(shot: Shot) -> bool:
    """A transition built from two referenced frames has no still of its own to generate."""
    return not (shot.first_frame and shot.last_frame)


def plan_render(
    storyboard: Storyboard,
    profile: RenderProfile,
    *,
    base_dir: Path | None = Path("."),
    facts: RunFacts | None = None,
) -> RenderPlan:
    images, truncated = [], {}
    facts = run_facts(storyboard, profile, base_dir, facts)
    for shot in storyboard.shots:
        composed = compose_prompt(storyboard, shot, family=facts.model.family, count=facts.count)
        if composed.truncated:
            truncated[shot.id] = composed.truncated
        if needs_image(shot):
            images.append(image_job(storyboard, shot, profile, base_dir=base_dir, facts=facts))
    return RenderPlan(project=storyboard.project, images=images, truncated_prompts=truncated)


# -- edit and delivery ---------------------------------------------------------------------------


def edit_job(
    storyboard: Storyboard,
    clips: dict[str, str],
    cut: list[tuple[float, Transition, float]],
    crf: int,
) -> EditJob:
    """The edit of a style of cut: each shot's clip at its planned duration and transition."""
    return EditJob(
        project=storyboard.project,
        clips=[
            EditClip(
                shot=shot.id,
                key=clips[shot.id],
                duration=duration,
                transition=transition,
                transition_duration=length,
                trim_waste=shot.trim_waste,
            )
            for shot, (duration, transition, length) in zip(storyboard.shots, cut, strict=True)
        ],
        width=storyboard.width,
        height=storyboard.height,
        fps=storyboard.fps,
        crf=crf,
    )


def caption_cues(
    storyboard: Storyboard,
    durations: list[float],
    lines: dict[str, SpokenLine] | None = None,
    language: Literal["zh", "en"] | None = None,
) -> list[CaptionCue]:
    """One caption per shot, timed by the shot's duration in this cut; with voice-over lines,
    one per spoken sentence, where it is spoken (`reelflow.sound.lines.voiced_cues`).
    ``language``: a version delivered in that language alone (its lines are ``lines``)."""
    if lines:
        from reelflow.sound.lines import voiced_cues

        return voiced_cues(storyboard, durations, lines, language, only=language is not None)
    return [
        CaptionCue(
            duration=duration,
            zh=shot.caption.zh if shot.caption and language in (None, "zh") else "",
            en=shot.caption.en if shot.caption and language in (None, "en") else "",
        )
        for shot, duration in zip(storyboard.shots, durations, strict=True)
    ]


def version_job(
    storyboard: Storyboard,
    master_key: str,
    export: ExportSpec,
    durations: list[float],
    delivery: Delivery = "platform",
    lines: dict[str, SpokenLine] | None = None,
) -> VersionJob:
    """A version of the master at its delivery size (the platform preset's, unless the export
    names one or the profile delivers at the film's size). ``lines``: the ones its master
    speaks (in ``export.lang`` when it names one: then its captions are in that language)."""
    size = export.delivery_size((storyboard.width, storyboard.height), delivery)
    return VersionJob(
        project=storyboard.project,
        master_key=master_key,
        source_aspect=storyboard.aspect,
        export=export,
        captions=caption_cues(storyboard, durations, lines, export.lang),
        title=storyboard.title,
        size=size,
        upscaler=upscaler_choice(export, (storyboard.width, storyboard.height), size),
    )


def profile_upscaler(export: ExportSpec, profile: RenderProfile) -> ExportSpec:
    """``export`` with the profile's learned upscaler (and steps) when it names none itself."""
    if export.upscaler or not profile.upscaler:
        return export
    return export.model_copy(update={"upscaler": profile.upscaler,
                                     "upscale_steps": export.upscale_steps
                                     or profile.upscale_steps})  # fmt: skip


def upscales(export: ExportSpec, film: tuple[int, int], size: tuple[int, int] | None) -> bool:
    """Whether the version's delivery (``size``) is wider than the film reframed to its
    aspect: only then does a learned upscaler run."""
    a, b = (int(part) for part in export.aspect.split(":"))
    framed_w = min(film[0], film[1] * a / b)  # the reframed film's width (as delivery_size)
    return size is not None and size[0] > framed_w


def upscaler_choice(
    export: ExportSpec, film: tuple[int, int], size: tuple[int, int] | None
) -> UpscalerChoice | None:
    """The learned upscaler a version runs: the one it names, keyed by its folder's content;
    None when it names none or nothing is upscaled (the delivery size is no wider than the
    reframed film). InputError naming the export when the folder is not on this machine."""
    if not export.upscaler or not upscales(export, film, size):
        return None
    from reelflow.errors import InputError

    sha256 = weight_hash(export.upscaler)
    if sha256 is None:
        raise InputError(f"--export {export.name}: upscaler {export.upscaler}: not found at "
                         f"{resolve_model_path(export.upscaler)}")  # fmt: skip
    steps = {"steps": export.upscale_steps} if export.upscale_steps else {}
    return UpscalerChoice(path=export.upscaler, sha256=sha256, **steps)


def cover_job(
    storyboard: Storyboard,
    master_key: str,
    aspect: str = "16:9",
    size: tuple[int, int] | None = None,
) -> CoverJob:
    """A cover drawn from the clean master at a version's framing and delivered size."""
    return CoverJob(
        project=storyboard.project,
        source_key=master_key,
        title=storyboard.title,
        width=storyboard.width,
        height=storyboard.height,
        aspect=aspect,
        size=size,
    )


def music_job(storyboard: Storyboard, music_key: str, durations: list[float]) -> MusicJob:
    """Snap the cuts to the music's beats: within 0.25 s, never a shot under 1 s."""
    return MusicJob(
        project=storyboard.project,
        music_key=music_key,
        durations=durations,
        min_shot=min(1.0, min(durations)),
        tolerance=0.25,
        fps=storyboard.fps,
    )


def music_bed_job(storyboard: Storyboard, durations: list[float]) -> MusicBedJob:
    """The bed the storyboard's `music.prompt` asks for, as long as the film (``durations``,
    rounded up to a whole second, so a cut moved by a frame keeps the bed). The model folder
    must exist: its content hash is part of the key."""
    import math

    from reelflow.render.weights import content_hash
    from reelflow.sound.music_model import music_model_folder

    music = storyboard.music
    if music is None or music.prompt is None:
        raise ValueError("the storyboard's music is not generated from a prompt")
    folder = music_model_folder(music.model)
    return MusicBedJob(
        project=storyboard.project,
        prompt=music.prompt,
        seed=music.seed,
        seconds=float(max(1, math.ceil(sum(durations) - 1e-6))),
        steps=music.steps,
        guidance=music.guidance,
        model_sha256=content_hash(str(folder)),
        model=music.model,
    )


# -- sound ---------------------------------------------------------------------------------------


def speech_jobs(
    storyboard: Storyboard,
    language: Literal["zh", "en"] | None = None,
    *,
    endpoint: str | None = None,
    takes: dict[str, Take] | None = None,
    partial: bool = False,
) -> list[SpeechJob]:
    """One job per voiced shot, in ``language`` (default: the one the film speaks), from the
    line's source (`reelflow.sound.sources.line_engine`). ``endpoint``: the speech endpoint's
    identity (its model and URL, from its block); ``takes``: the recorded lines (in
    ``language``) stored in the bucket, by shot. A line whose source is not given is an error,
    or left out when ``partial``."""
    from reelflow.sound.lines import line_text, sound_of
    from reelflow.sound.sources import line_engine, speaker
    from reelflow.sound.speech import SpeechError

    sound = sound_of(storyboard)
    language = language or storyboard.voice_language
    film_voice = sound.voice_zh if language == "zh" else sound.voice_en
    engines: dict[str, tuple[str, Any]] = {}  # name -> (version, engine)
    jobs = []
    for shot in storyboard.shots:
        text = line_text(storyboard, shot, language)
        if not text or shot.voiceover is None:
            continue
        name = line_engine(storyboard, shot, language)
        default_voice = film_voice if name == sound.engine else None
        source, block = None, None
        if name == "recorded":
            take = (takes or {}).get(shot.id)
            if take is None:
                if partial:
                    continue
                raise SpeechError(f"shot {shot.id}: its recorded line is not stored")
            version, voice, source = take.sha256, "recorded", take.key
        elif name == "endpoint":
            if endpoint is None:
                if partial:
                    continue
                raise SpeechError(f"shot {shot.id}: the speech endpoint is not resolved")
            from reelflow.sound.endpoint import DEFAULT_VOICE

            version, block = endpoint, sound.endpoint
            voice = shot.voiceover.voice or default_voice or DEFAULT_VOICE
        else:
            if name not in engines:  # a VITS folder per language: this language's
                found = speaker(name, storyboard, language=language)
                engines[name] = (found.version(), found)
            version, found = engines[name]
            voice = found.voice_for(language, shot.voiceover.voice or default_voice)
            source = sound.model_for(language) if name == "vits" else None
        jobs.append(SpeechJob(
            project=storyboard.project, shot=shot.id, language=language, text=text,
            voice=voice, speed=shot.voiceover.speed, engine=name, engine_version=version,
            source=source, endpoint=block,
        ))  # fmt: skip
    return jobs


def master_job(
    storyboard: Storyboard,
    edit_key: str,
    music_key: str | None,
    durations: list[float],
    lines: dict[str, SpokenLine],
    *,
    target_lufs: float | None = None,
    clip_sound_key: str | None = None,
) -> MasterJob | None:
    """The edit's sound: music, the lines placed on this cut, the clips' own sound (the stem
    track `clip_sound_key`, when the backend made sound); None when it has none of them.
    ``target_lufs``: the version's loudness (`--export ...,lufs=`), else the storyboard's."""
    from reelflow.sound.lines import place_lines, sound_of

    if music_key is None and not lines and clip_sound_key is None:
        return None
    sound = sound_of(storyboard)
    if not lines and clip_sound_key is None:  # the music bed alone, as before voice-over
        return MasterJob(project=storyboard.project, edit_key=edit_key, music_key=music_key,
                         target_lufs=-14.0 if target_lufs is None else target_lufs)  # fmt: skip
    return MasterJob(
        project=storyboard.project,
        edit_key=edit_key,
        music_key=music_key,
        target_lufs=sound.loudness_lufs if target_lufs is None else target_lufs,
        voice=place_lines(storyboard, durations, lines),
        voice_level_db=sound.voice_level_db,
        music_level_db=sound.music_level_db,
        duck_db=sound.duck_db,
        clip_sound_key=clip_sound_key,
        clip_level_db=sound.clip_level_db,
    )
