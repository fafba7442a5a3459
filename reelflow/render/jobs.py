"""Planning: turn (storyboard, profile, reviewer notes) into small, hashable jobs.

A job holds everything that decides its output and nothing else, so its hash is the object key of
what it makes and the cache key of the task that makes it. Changing one shot's prompt changes that
shot's jobs only; every other shot's jobs, and so their keys and cache entries, stay the same.
"""

from __future__ import annotations

import os
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from reelflow.errors import InputError
from reelflow.render import weights
from reelflow.render.profiles import RenderProfile
from reelflow.store import keys
from reelflow.store.keys import spec_hash
from reelflow.storyboard import FrameRef, LoraRef, Shot, Storyboard, Transition
from reelflow.storyboard.prompts import TokenCounter, compose_prompt, motion_phrase

MODELS_PREFIX = "@models/"
#: image model source of the model-free storyboard-panel backend (reelflow/imaging/previz.py)
PREVIZ = "previz"


def models_dir() -> Path:
    """Where built and downloaded-by-hand models live (tiny demo models are built here)."""
    home = Path(os.environ.get("REELFLOW_HOME", ".reelflow"))
    return Path(os.environ.get("REELFLOW_MODELS", home / "models")).resolve()


def resolve_model_path(source: str) -> str:
    """`@models/x` names a file in this machine's models folder; jobs keep the short form so
    that their hashes (and object keys) are the same on every machine."""
    if source.startswith(MODELS_PREFIX):
        return str(models_dir() / source.removeprefix(MODELS_PREFIX))
    return source


class Job(BaseModel):
    """A unit of work whose hash names its output: `output_key()` is where the step writes it,
    the one formula every caller (flow, render-shot, benchmarks) uses."""

    def spec_hash(self) -> str:
        """Of the job without the paths of weights whose content hash it carries."""
        return spec_hash(weights.identity_view(self.model_dump(mode="json")))

    def output_key(self) -> str:
        raise NotImplementedError


class ModelChoice(BaseModel):
    family: Literal["sd15", "sdxl", "flux"] = "sd15"
    source: str  # a local directory, a single .safetensors file, a cached hub id, or "tiny"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    device: str = "auto"
    sha256: str | None = None  # content hash of the weights (identify_weights); keys use it


class LoraChoice(BaseModel):
    name: str
    path: str
    weight: float
    sha256: str | None = None  # content hash of the LoRA file (identify_weights)


class PanelSpec(BaseModel):
    """What the model-free previz backend draws for a shot (see reelflow/imaging/previz.py)."""

    description: str
    size: str
    angle: str
    movement: str
    palette: list[str]
    reference: str | None = None  # object key of the character's library reference image
    # the panel's layout; bumped when the drawing changes, so stored panels are redrawn
    # (2: text inside the region the camera move keeps in view)
    layout: int = 2


class IPAdapterChoice(BaseModel):
    """Feature lock: `image` (a character's reference, an object key) conditions the shot
    through the IP-Adapter at `path` (`@models/...` or a local path) at `scale`."""

    path: str
    scale: float
    image: str
    character: str
    sha256: str | None = None  # content of the adapter (and its image encoder): in the key


class ImageJob(Job):
    """K variants of one shot's still."""

    project: str
    shot: str
    prompt: str
    negative_prompt: str
    seed: int
    width: int
    height: int
    steps: int
    guidance: float
    sampler: str
    model: ModelChoice
    loras: list[LoraChoice]
    variants: int
    reference: str | None = None  # object key of a reference image ("keep this composition")
    reference_strength: float = 0.6
    panel: PanelSpec | None = None  # previz backend only: the panel drawn instead of a model
    # library characters in the shot: name -> version (a changed character re-renders exactly
    # its shots) and name -> reference image keys (identity checks, IP-Adapter)
    characters: dict[str, str] = {}
    character_refs: dict[str, list[str]] = {}
    ip_adapter: IPAdapterChoice | None = None

    def variant_keys(self) -> list[str]:
        """Variant i (seed + i) of this job, in variant order."""
        base = self.spec_hash()
        return [
            keys.image_key(self.project, self.shot, f"{base}-v{i}") for i in range(self.variants)
        ]

    def output_key(self) -> str:
        return self.variant_keys()[0]


class HiresJob(Job):
    """The chosen variant, upscaled and refined with the same seed."""

    image: ImageJob
    variant_key: str
    seed: int
    scale: float
    strength: float

    def output_key(self) -> str:
        return keys.image_key(self.image.project, self.image.shot, self.spec_hash())


class RetouchJob(Job):
    """Inpaint regions and/or outpaint the chosen image, as the storyboard's shot asks."""

    image: ImageJob
    source_key: str
    inpaint: list[dict[str, Any]]  # InpaintRegion dumps: box, prompt, strength
    outpaint: dict[str, Any] | None

    def output_key(self) -> str:
        return keys.image_key(self.image.project, self.image.shot, f"{self.spec_hash()}-retouch")


class FrameJob(Job):
    """A frame taken from another shot's clip, optionally restyled through ControlNet Canny."""

    project: str
    shot: str  # the shot that needs the frame
    source_shot: str
    clip_key: str  # the source shot's clip the frame is taken from
    frame: Literal["first", "last"]
    restyle_prompt: str | None
    negative_prompt: str
    seed: int
    steps: int
    guidance: float
    model: ModelChoice
    controlnet: str | None
    loras: list[LoraChoice]
    controlnet_sha256: str | None = None  # (identify_weights)

    def output_key(self) -> str:
        return keys.image_key(self.project, self.shot, f"{self.spec_hash()}-frame")


class ClipJob(Job):
    project: str
    shot: str
    duration: float
    fps: int
    width: int
    height: int
    movement: str
    motion_prompt: str
    backend: str
    backend_options: dict[str, Any] = {}  # model (as @models/... or a path), steps, max_area
    seed: int
    image_key: str | None = None  # the approved still
    first_frame_key: str | None = None  # for first+last-frame transitions
    last_frame_key: str | None = None
    model_sha256: str | None = None  # content hash of backend_options["model"] (identify_weights)

    def output_key(self) -> str:
        return keys.clip_key(self.project, self.shot, self.spec_hash())


class EditClip(BaseModel):
    shot: str
    key: str
    duration: float
    transition: Transition
    transition_duration: float
    trim_waste: bool = True  # the shot's `trim_waste`: cut black/frozen heads and tails


class EditJob(Job):
    """The edit: approved clips cut to their durations and joined by their transitions."""

    project: str
    clips: list[EditClip]
    width: int
    height: int
    fps: int
    crf: int

    def output_key(self) -> str:
        return keys.edit_key(self.project, self.spec_hash())


class CoverJob(Job):
    """A version's cover, drawn from the clean master (never from a captioned version), cropped
    to ``aspect`` around the subject, the title away from the subject and the caption band."""

    project: str
    source_key: str  # the master (or the edit, without music): no captions burned in
    title: str
    width: int
    height: int
    aspect: str = "16:9"  # the version's framing: a 9:16 version gets a 9:16 cover

    def output_key(self) -> str:
        return keys.cover_key(self.project, self.spec_hash())


EXPORT_MAX_SIDE = 7680
EXPORT_MAX_PIXELS = 7680 * 4320
EXPORT_FPS = (1, 120)


class ExportSpec(BaseModel):
    """One delivered version of the film: framing, codec, frame rate, size, captions."""

    model_config = ConfigDict(extra="forbid")

    aspect: Literal["16:9", "9:16", "1:1"] = "16:9"
    codec: Literal["h264", "h265", "av1"] = "h264"
    fps: int | None = Field(None, ge=EXPORT_FPS[0], le=EXPORT_FPS[1],
                            description="interpolate to this frame rate (e.g. 60)")
    size: tuple[int, int] | None = Field(None, description="upscale to (width, height)")
    denoise: Literal["hqdn3d", "nlmeans"] | None = None
    captions: Literal["burn", "soft", "none"] = "burn"
    cut: Literal["storyboard", "fast", "slow"] = Field(
        "storyboard",
        description="fast: shots trimmed to 60% with hard cuts; slow: long dissolves between shots",
    )

    @field_validator("size")
    @classmethod
    def _size(cls, size: tuple[int, int] | None) -> tuple[int, int] | None:
        if size is None:
            return None
        width, height = size
        for side in (width, height):
            if not 64 <= side <= EXPORT_MAX_SIDE:
                raise ValueError(f"{width}x{height}: each side must be 64..{EXPORT_MAX_SIDE}")
            if side % 2:
                raise ValueError(f"{width}x{height}: sides must be even (H.264 needs even sizes)")
        if width * height > EXPORT_MAX_PIXELS:
            raise ValueError(f"{width}x{height}: more than {EXPORT_MAX_PIXELS} pixels (8K)")
        return size

    @model_validator(mode="after")
    def _size_fits_aspect(self) -> ExportSpec:
        if self.size is not None:
            a, b = (int(part) for part in self.aspect.split(":"))
            if abs(self.size[0] / self.size[1] - a / b) / (a / b) > 0.02:
                raise ValueError(f"size {self.size[0]}x{self.size[1]} is not {self.aspect}")
        return self

    @property
    def name(self) -> str:
        """Every field that differs from its default, so two different versions never share a
        name (a file name, a bucket key, a manifest entry): `9x16-h264-soft-captions`."""
        parts = [self.aspect.replace(":", "x"), self.codec]
        if self.cut != "storyboard":
            parts.append(self.cut)
        if self.fps:
            parts.append(f"{self.fps}fps")
        if self.size:
            parts.append(f"{self.size[0]}x{self.size[1]}")
        if self.denoise:
            parts.append(self.denoise)
        if self.captions != "burn":
            parts.append({"soft": "soft-captions", "none": "no-captions"}[self.captions])
        return "-".join(parts)


def cut_plan(
    storyboard: Storyboard,
    cut: str,
    durations: list[float] | None = None,
    *,
    min_shot: float = 1.0,
) -> list[tuple[float, Transition, float]]:
    """(duration, transition in, transition length) per shot for a style of cut.

    `durations` are the clips' lengths (the storyboard's, or snapped to the music); no cut asks
    a clip for more than it has. The second seed's "many style versions": `fast` keeps 60% of
    each shot (never under `min_shot`) joined by hard cuts; `slow` keeps every frame and
    dissolves between shots over 40% of the shorter neighbour (at most 1.5 s). Clips are never
    re-rendered for either.
    """
    shots = storyboard.shots
    lengths = durations or [shot.duration for shot in shots]
    if cut == "fast":
        return [(max(min(min_shot, d), round(0.6 * d, 3)), "cut", 0.0) for d in lengths]
    if cut == "slow":
        plan: list[tuple[float, Transition, float]] = [(lengths[0], "cut", 0.0)]
        for index in range(1, len(shots)):
            length = min(1.5, 0.4 * min(lengths[index], lengths[index - 1]))
            plan.append((lengths[index], "crossfade", round(length, 3)))
        return plan
    return [
        (d, s.transition_in, s.transition_duration) for s, d in zip(shots, lengths, strict=True)
    ]


class CaptionCue(BaseModel):
    duration: float
    zh: str = ""
    en: str = ""


class MusicJob(Job):
    """Beats of the storyboard's music and the shot durations snapped to them."""

    project: str
    music_key: str
    durations: list[float]
    min_shot: float
    tolerance: float
    fps: int


class MasterJob(Job):
    """The edit with its music bed: faded out and loudness-normalised."""

    project: str
    edit_key: str
    music_key: str
    target_lufs: float = -14.0
    fade_out: float = 2.0

    def output_key(self) -> str:
        return keys.edit_key(self.project, f"{self.spec_hash()}-master")


class VersionJob(Job):
    """One delivered version of the master: framing, enhancement, captions."""

    project: str
    master_key: str
    source_aspect: str  # the master's framing; the version reframes when it differs
    export: ExportSpec
    captions: list[CaptionCue]
    title: str

    def output_key(self) -> str:
        return keys.edit_key(self.project, f"{self.spec_hash()}-{self.export.name}")


def parse_export(text: str) -> ExportSpec:
    """`9:16`, `16:9,codec=h265`, `16:9,fps=60`, `16:9,size=3840x2160,captions=soft`: the
    `--export` option; InputError naming the option for anything else."""
    where = f"--export {text[:80]!r}"
    aspect, *options = [part.strip() for part in text.split(",")]
    fields: dict[str, object] = {"aspect": aspect}
    for option in options:
        name, sep, value = option.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise InputError(f"{where}: expected NAME=VALUE, got {option!r}")
        if name not in ExportSpec.model_fields or name == "aspect":
            known = ", ".join(n for n in ExportSpec.model_fields if n != "aspect")
            raise InputError(f"{where}: unknown option {name!r} (known: {known})")
        if name in fields:
            raise InputError(f"{where}: option {name} given twice")
        if name == "size":
            width, x, height = value.lower().partition("x")
            if not (x and width.isdigit() and height.isdigit()):
                raise InputError(f"{where}: size must be WIDTHxHEIGHT in pixels, got {value!r}")
            fields["size"] = (int(width), int(height))
        elif name == "fps":
            if not value.isdigit():
                raise InputError(f"{where}: fps must be a whole number "
                                 f"{EXPORT_FPS[0]}..{EXPORT_FPS[1]}, got {value!r}")
            fields["fps"] = int(value)
        else:
            fields[name] = value
    try:
        return ExportSpec.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "size"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise InputError(f"{where}: {field}: {message}") from None


# -- building jobs ---------------------------------------------------------------------------

J = TypeVar("J", bound=Job)


def identify_weights(job: J) -> J:
    """Fill the content hash of every weight the job names (model, LoRAs, IP-Adapter,
    ControlNet, video model) that is on this machine; the spec hash then uses the hash
    instead of the path.
    Hashes already set are kept (a job built elsewhere names what it was keyed with)."""
    def known(source: str | None, current: str | None) -> str | None:
        return current or weights.try_content_hash(resolve_model_path(source) if source else None)

    updates: dict[str, Any] = {}
    model = getattr(job, "model", None)
    if isinstance(model, ModelChoice):
        updates["model"] = model.model_copy(update={"sha256": known(model.source, model.sha256)})
    if getattr(job, "loras", None):
        updates["loras"] = [
            lora.model_copy(update={"sha256": known(lora.path, lora.sha256)})
            for lora in job.loras  # type: ignore[attr-defined]
        ]
    ip_adapter = getattr(job, "ip_adapter", None)
    if isinstance(ip_adapter, IPAdapterChoice):
        updates["ip_adapter"] = ip_adapter.model_copy(
            update={"sha256": known(ip_adapter.path, ip_adapter.sha256)}
        )
    if isinstance(job, FrameJob) and job.controlnet:
        updates["controlnet_sha256"] = known(job.controlnet, job.controlnet_sha256)
    if isinstance(job, ClipJob) and isinstance(job.backend_options.get("model"), str):
        updates["model_sha256"] = known(job.backend_options["model"], job.model_sha256)
    return job.model_copy(update=updates)



def shot_seed(storyboard: Storyboard, shot: Shot) -> int:
    """Stable per shot: reordering or adding shots does not change another shot's seed."""
    if shot.seed is not None:
        return shot.seed
    return (storyboard.style.base_seed + zlib.crc32(shot.id.encode()) % 1_000_000) % 2**32


#: a tokenizer with fewer entries is a toy (the tiny test models' character-level one): its
#: counts say nothing about what a real encoder cuts, so the estimate is used instead
MIN_REAL_VOCAB = 1000


@lru_cache(maxsize=16)
def _tokenizer_counter(path: str, family: str) -> TokenCounter | None:
    folder = Path(path) / ("tokenizer_2" if family == "flux" else "tokenizer")
    if not folder.is_dir():
        return None
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception:  # noqa: BLE001 - no usable tokenizer: the estimate stands in
        return None
    if len(tokenizer) < MIN_REAL_VOCAB:
        return None

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])

    return count


def token_counter(model: ModelChoice) -> TokenCounter | None:
    """The model's own tokenizer as a token counter, when the model is a local diffusers folder
    with a real tokenizer; None (use the estimate) otherwise."""
    if model.source == PREVIZ:
        return None
    path = resolve_model_path(model.source)
    if not Path(path).is_dir():
        return None
    return _tokenizer_counter(path, model.family)


def model_choice(
    storyboard: Storyboard, profile: RenderProfile, base_dir: Path | None = Path(".")
) -> ModelChoice:
    """The base model of a job. A storyboard's model *path* resolves as `validate` checked it:
    against the storyboard's folder (`base_dir`), not the worker's cwd; from the bucket
    (`base_dir` None), inside the machine's models folder. Hub ids and names pass as they are."""
    source = profile.image_model or model_source(storyboard.style.model, base_dir)
    if source == "tiny":
        source = f"{MODELS_PREFIX}tiny-sd"
    return ModelChoice(
        family=profile.image_family or _guess_family(storyboard.style.model),
        source=source,
        dtype=profile.dtype,
        device=profile.device,
    )


def model_source(value: str, base_dir: Path | None) -> str:
    """`style.model` as the renderer loads it (see model_choice); InputError when it leaves the
    storyboard's folder or the models folder."""
    from reelflow.errors import InputError
    from reelflow.storyboard.files import _looks_like_path, in_models_folder, resolve_local

    if value.startswith(MODELS_PREFIX) or not _looks_like_path(value):
        return value
    try:
        if base_dir is None:
            return in_models_folder(value)
        return str(resolve_local(value, base_dir, must_exist=False))
    except ValueError as exc:
        raise InputError(f"style.model: {exc}") from None


def _guess_family(model: str) -> Literal["sd15", "sdxl", "flux"]:
    lowered = model.lower()
    if "flux" in lowered:
        return "flux"
    if "xl" in lowered:
        return "sdxl"
    return "sd15"


def lora_choices(
    refs: list[LoraRef], profile: RenderProfile, base_dir: Path | None
) -> list[LoraChoice]:
    """LoRA files for a job; a storyboard's own paths stay inside its folder (see
    storyboard/files.py); a storyboard from the bucket (`base_dir` None) names files in the
    renderer's models folder."""
    from reelflow.errors import InputError
    from reelflow.storyboard.files import in_models_folder, resolve_local

    out: list[LoraChoice] = []
    for ref in refs:
        try:
            if profile.tiny_loras:
                path = f"{MODELS_PREFIX}loras/{ref.name}.safetensors"
            elif base_dir is None:  # a storyboard from the bucket: the models folder only
                path = in_models_folder(ref.path)
            else:
                path = str(resolve_local(ref.path, base_dir, must_exist=False))
        except ValueError as exc:
            raise InputError(f"lora {ref.name}: {exc}") from None
        out.append(LoraChoice(name=ref.name, path=path, weight=ref.weight))
    return out


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
) -> ImageJob:
    style = storyboard.style
    model = model_choice(storyboard, profile, base_dir)
    composed = compose_prompt(
        storyboard, shot, family=model.family, notes=notes, count=token_counter(model)
    )
    width, height = generation_size(storyboard, profile, model.family)
    panel = panel_spec(storyboard, shot) if model.source == PREVIZ else None
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
        loras=[] if panel else lora_choices(shot_loras(storyboard, shot), profile, base_dir),
        variants=profile.variants or style.variants,
        panel=panel,
        **shot_characters(storyboard, shot),
        ip_adapter=ip_adapter_choice(storyboard, shot, profile),
    )
    return identify_weights(job)


def panel_spec(storyboard: Storyboard, shot: Shot) -> PanelSpec:
    """The previz panel of a shot: its description, framing, the palette, and the first
    character's reference image when the library has one (an object key under characters/)."""
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
) -> FrameJob:
    """The frame `shot` takes from `ref.shot`'s clip (`clip_key`), restyled if the ref asks."""
    style = storyboard.style
    controlnet = profile.controlnet
    if controlnet == "tiny":
        controlnet = f"{MODELS_PREFIX}tiny-controlnet"
    model = model_choice(storyboard, profile, base_dir)
    prompt = None
    if ref.restyle:
        composed = compose_prompt(
            storyboard, shot, family=model.family, count=token_counter(model)
        )
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
        controlnet=controlnet,
        loras=lora_choices([*style.loras, *ref.loras], profile, base_dir),
    )
    return identify_weights(job)


def video_options(profile: RenderProfile) -> dict[str, Any]:
    """The generative backend's options, with its model named machine-independently."""
    options = dict(profile.video_options)
    if profile.video_model:
        model = profile.video_model
        options["model"] = f"{MODELS_PREFIX}{model}" if model.startswith("tiny-") else model
    return options


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
) -> ClipJob:
    """A shot's clip from everything it depends on: its approved still (or the frames of a
    transition), its duration (the storyboard's, or snapped to the music), the reviewer's notes
    for a regeneration, and a new seed when one was asked for."""
    motion = motion_phrase(shot)
    if notes:
        motion = ", ".join([motion, *notes])
    job = ClipJob(
        backend_options=video_options(profile),
        project=storyboard.project,
        shot=shot.id,
        duration=shot.duration if duration is None else duration,
        fps=storyboard.fps,
        width=storyboard.width,
        height=storyboard.height,
        movement=shot.camera.movement,
        motion_prompt=motion,
        backend=profile.video_backend,
        seed=shot_seed(storyboard, shot) if seed is None else seed,
        image_key=still_key if needs_image(shot) else None,
        first_frame_key=first_frame_key,
        last_frame_key=last_frame_key,
    )
    return identify_weights(job)


class StillPlan(BaseModel):
    """From the chosen variant to the approved still: hi-res fix and retouch, as the profile and
    the shot ask. Built before anything runs, since every job knows its output key."""

    variant_key: str
    hires: HiresJob | None = None
    retouch: RetouchJob | None = None

    def final_key(self) -> str:
        if self.retouch is not None:
            return self.retouch.output_key()
        if self.hires is not None:
            return self.hires.output_key()
        return self.variant_key


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


class RenderPlan(BaseModel):
    """Everything known before the first image exists: used by the flow, `reelflow plan` and the
    benchmarks. Clips and frames depend on approved stills, so they are built later, from the
    same builders, once their inputs exist."""

    project: str
    images: list[ImageJob]
    truncated_prompts: dict[str, list[str]]


def plan_render(
    storyboard: Storyboard, profile: RenderProfile, *, base_dir: Path | None = Path(".")
) -> RenderPlan:
    images, truncated = [], {}
    model = model_choice(storyboard, profile, base_dir)
    count = token_counter(model)
    for shot in storyboard.shots:
        composed = compose_prompt(storyboard, shot, family=model.family, count=count)
        if composed.truncated:
            truncated[shot.id] = composed.truncated
        if needs_image(shot):
            images.append(image_job(storyboard, shot, profile, base_dir=base_dir))
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


def caption_cues(storyboard: Storyboard, durations: list[float]) -> list[CaptionCue]:
    """One caption per shot, timed by the shot's duration in this cut."""
    return [
        CaptionCue(
            duration=duration,
            zh=shot.caption.zh if shot.caption else "",
            en=shot.caption.en if shot.caption else "",
        )
        for shot, duration in zip(storyboard.shots, durations, strict=True)
    ]


def default_export(storyboard: Storyboard) -> ExportSpec:
    """Without --export: one version at the storyboard's own framing, captions burned in."""
    aspect = storyboard.aspect if storyboard.aspect in ("9:16", "1:1") else "16:9"
    return ExportSpec(aspect=aspect)


def version_job(
    storyboard: Storyboard, master_key: str, export: ExportSpec, durations: list[float]
) -> VersionJob:
    return VersionJob(
        project=storyboard.project,
        master_key=master_key,
        source_aspect=storyboard.aspect,
        export=export,
        captions=caption_cues(storyboard, durations),
        title=storyboard.title,
    )


def cover_job(storyboard: Storyboard, master_key: str, aspect: str = "16:9") -> CoverJob:
    """A cover drawn from the clean master at a version's framing."""
    return CoverJob(
        project=storyboard.project,
        source_key=master_key,
        title=storyboard.title,
        width=storyboard.width,
        height=storyboard.height,
        aspect=aspect,
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
