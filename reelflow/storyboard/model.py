"""The storyboard: the contract between the director and the pipeline.

Everything downstream is a pure function of (storyboard, approvals, model configs, seeds), so the
models here are strict: unknown keys are errors, ids are slugs, and cross-references (characters,
frame references) are checked before anything expensive runs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]
HexColor = Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")]

ShotSize = Literal[
    "extreme-wide", "wide", "full", "medium", "medium-close-up", "close-up", "extreme-close-up"
]
Angle = Literal["eye-level", "low", "high", "overhead", "aerial", "dutch"]
Movement = Literal[
    "static",
    "push-in",
    "pull-out",
    "pan-left",
    "pan-right",
    "tilt-up",
    "tilt-down",
    "orbit",
    "tracking",
]
Transition = Literal[
    "cut", "crossfade", "dip-to-black", "wipe-left", "wipe-right", "slide-left", "slide-right"
]
Sampler = Literal["euler", "euler-a", "dpm++", "ddim"]
Aspect = Literal["16:9", "9:16", "1:1", "4:3", "21:9"]

MAX_SHOTS = 500
MAX_TOTAL_SECONDS = 3600.0
ASPECT_TOLERANCE = 0.10
"""width/height may differ from the declared aspect by this fraction (160x96 is "16:9")."""


class RefError(ValueError):
    """A cross-field problem that knows where it is: `loc` is the field path under the model,
    so the loader points at the shot's line rather than the storyboard's first line."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        self.loc = loc
        super().__init__(message)


class RefErrors(ValueError):
    """Every cross-field problem of a storyboard, each a :class:`RefError`: all are listed (two
    shots with the same problem are two lines), not only the first found."""

    def __init__(self, problems: list[RefError]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class Strict(BaseModel):
    """Base for every storyboard model: a typo in a key is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=False)


class LoraRef(Strict):
    """A LoRA applied with a weight; `path` is a local file, relative to the storyboard's folder."""

    name: Slug
    path: str
    weight: StrictFloat = Field(1.0, ge=-4.0, le=4.0)
    trigger_words: list[str] = []
    role: Literal["subject", "scene", "detail", "style"] = "detail"


class Camera(Strict):
    """Camera language from fixed vocabularies, so rules and models can reason about it."""

    size: ShotSize = "wide"
    angle: Angle = "eye-level"
    movement: Movement = "static"


class VideoChoice(Strict):
    """Which video backend renders the film (`style.video`) or one shot (`shot.video`), and what
    the clip asks of it. A shot's fields override the style's; an unset backend is the run's
    (its profile or `video-model` block), which also says where the model is."""

    backend: str | None = Field(
        None, description="a declared video backend: animatic, ltx, wan, ltx2, wan22, "
        "wan22-ti2v, wan-vace, skyreels-v2-df (`reelflow validate` refuses what it cannot do)",
    )
    reference_images: bool | None = Field(
        None, description="condition the clip on its characters' reference images (wan-vace)"
    )
    audio: bool | None = Field(None, description="keep the clip's own generated sound (ltx2)")

    @field_validator("backend")
    @classmethod
    def _declared(cls, value: str | None) -> str | None:
        from reelflow.motion.capabilities import declared_backends

        if value is not None and value not in declared_backends():
            raise ValueError(
                f"unknown video backend '{value}' (choose from {', '.join(declared_backends())})"
            )
        return value


class StyleLock(Strict):
    """The look every shot shares; changing it changes every image's spec hash."""

    palette: list[HexColor] = []
    visual_style: str = ""
    lighting: str = ""
    quality_tags: list[str] = []
    negative_prompt: str = ""
    model: str = "tiny-sd"
    loras: list[LoraRef] = []
    sampler: Sampler = "euler"
    steps: StrictInt = Field(30, gt=0, le=200)
    guidance: StrictFloat = Field(7.0, ge=0.0, le=30.0)
    width: StrictInt = Field(1536, ge=64, le=4096)
    height: StrictInt = Field(864, ge=64, le=4096)
    base_seed: StrictInt = Field(0, ge=0, lt=2**32)
    variants: StrictInt = Field(3, ge=1, le=16)
    video: VideoChoice | None = None


class Character(Strict):
    """A recurring subject; its trigger words and LoRA keep it consistent across shots.

    A library character may be named with nothing else (`- name: su7`): the run fills the rest
    from `characters/{name}/` in the bucket and sets `version` (a hash of the record and its
    reference images' bytes), which goes into the jobs of every shot the character is in.
    """

    name: Slug
    description: str = ""
    trigger_words: list[str] = []
    lora: LoraRef | None = None
    reference_images: list[str] = Field(
        [], description="object keys in the bucket (characters/{name}/...) of reference images"
    )
    ip_adapter_scale: float = Field(
        0.6, ge=0.0, le=2.0,
        description="how strongly its first reference image conditions its shots (IP-Adapter)",
    )
    version: str = Field("", description="set by the run from the library; not written by hand")


class FrameRef(Strict):
    """A frame of another shot, e.g. the last frame of the winter shot restyled to spring."""

    shot: Slug
    frame: Literal["first", "last"] = "last"
    restyle: str | None = Field(None, description="prompt for a ControlNet restyle of that frame")
    loras: list[LoraRef] = []


class Reference(Strict):
    """"Keep this composition": variants start from this image (img2img at `strength`)."""

    image: str = Field(description="path relative to the storyboard's folder")
    strength: StrictFloat = Field(0.6, gt=0, le=1)


class InpaintRegion(Strict):
    """Repaint a box of the chosen image (fractions of width and height) from a prompt."""

    box: tuple[StrictFloat, StrictFloat, StrictFloat, StrictFloat] = Field(
        description="x0, y0, x1, y1 in 0..1"
    )
    prompt: str = Field(min_length=1)
    strength: StrictFloat = Field(1.0, gt=0, le=1)

    @field_validator("box")
    @classmethod
    def _box(cls, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = box
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise ValueError("must be x0 < x1 and y0 < y1, all within 0..1")
        return box


class Outpaint(Strict):
    """Widen the chosen image: to an aspect ratio, or by a fraction in one direction."""

    target_aspect: StrictFloat | None = Field(None, gt=0.2, lt=5, description="e.g. 2.33 for 21:9")
    direction: Literal["left", "right", "up", "down"] | None = None
    expand: StrictFloat = Field(
        0.25, gt=0, le=1, description="fraction of the side, with direction"
    )

    @model_validator(mode="after")
    def _one(self) -> Outpaint:
        if (self.target_aspect is None) == (self.direction is None):
            raise ValueError("give either target_aspect or direction")
        return self


class Caption(Strict):
    zh: str = ""
    en: str = ""


SpeechEngineName = Literal["espeak", "endpoint", "vits"]
"""Speech engines: eSpeak NG (offline, in a wheel), an OpenAI-compatible speech endpoint (a
`sound.endpoint` block), a VITS model from a local folder (`sound.model`)."""


class Recording(Strict):
    """Recorded takes of a voice-over line: an audio file per language, relative to the
    storyboard's folder (or a key under the project for a storyboard from the bucket)."""

    zh: str | None = None
    en: str | None = None

    @model_validator(mode="after")
    def _some_file(self) -> Recording:
        if not (self.zh or self.en):
            raise ValueError("give a zh and/or en file")
        return self


class VoiceOver(Strict):
    """The line spoken over a shot, in Chinese and/or English; the film speaks one language
    (`sound.language`), and its captions then follow the voice sentence by sentence."""

    zh: str = ""
    en: str = ""
    voice: str | None = Field(None, description="the engine's voice; default: sound.voice_zh/en")
    speed: StrictFloat = Field(1.0, ge=0.5, le=2.0, description="1.0: the engine's usual pace")
    engine: SpeechEngineName | None = Field(None, description="this line's engine; default: "
                                            "sound.engine")
    recording: Recording | None = Field(
        None, description="a recorded take of the line (a human voice), per language; it is "
        "used instead of an engine for that language, and its text gives the captions")

    @model_validator(mode="after")
    def _some_text(self) -> VoiceOver:
        if not (self.zh.strip() or self.en.strip()):
            raise ValueError("give the line in zh and/or en")
        if self.recording is not None:
            for language in ("zh", "en"):
                if getattr(self.recording, language) and not getattr(self, language).strip():
                    raise ValueError(f"recording.{language} needs the {language} text (the "
                                     "captions are its sentences)")
        return self


class Sound(Strict):
    """How the film sounds: the speech engine and voices, the stems' levels, the music ducked
    under the voice, the delivered loudness, and what wins when a line outlasts its shot."""

    engine: SpeechEngineName = "espeak"
    endpoint: str | None = Field(
        None, description="speech-endpoint block name (engine endpoint): an OpenAI-compatible "
        "/v1/audio/speech server; its key stays in the block")
    model: str | dict[Literal["zh", "en"], str] | None = Field(
        None, description="VITS model folder (engine vits): @models/NAME, in the machine's "
        "models folder; or one per language, {zh: \"@models/mms-zh\", en: \"@models/mms-en\"}")
    language: Literal["zh", "en"] | None = Field(
        None, description="the language the voice-over speaks; default zh when a line has it"
    )
    voice_zh: str | None = None
    voice_en: str | None = None
    voice_level_db: StrictFloat = Field(0.0, ge=-30, le=10, description="voice stem vs target")
    music_level_db: StrictFloat = Field(-8.0, ge=-40, le=10, description="music stem vs target")
    duck_db: StrictFloat = Field(12.0, ge=0, le=40, description="music lowered while voice speaks")
    clip_level_db: StrictFloat = Field(
        -10.0, ge=-40, le=10, description="the clips' own sound (LTX-2) vs target, in the mix"
    )
    loudness_lufs: StrictFloat = Field(-14.0, ge=-40, le=-5)
    line_too_long: Literal["extend", "refuse"] = Field(
        "refuse",
        description="a line longer than its shot: refuse the storyboard, or extend the shot",
    )

    def model_for(self, language: str) -> str | None:
        """The VITS folder that speaks ``language``: the one folder, or that language's own."""
        return self.model.get(language) if isinstance(self.model, dict) else self.model  # type: ignore[call-overload]


class Shot(Strict):
    id: Slug
    description: str = Field(min_length=1)
    duration: StrictFloat = Field(gt=0, le=600)
    camera: Camera = Camera()
    characters: list[Slug] = []
    scene: str = ""
    prompt: str | None = Field(None, description="replaces the composed subject/scene part")
    motion_prompt: str | None = None
    loras: list[LoraRef] = []
    seed: StrictInt | None = Field(None, ge=0, lt=2**32)
    transition_in: Transition = "cut"
    transition_duration: StrictFloat = Field(0.5, ge=0, le=5)
    first_frame: FrameRef | None = None
    last_frame: FrameRef | None = None
    reference: Reference | None = None
    video: VideoChoice | None = None
    inpaint: list[InpaintRegion] = []
    outpaint: Outpaint | None = None
    caption: Caption | None = None
    dialogue: str | None = None
    voiceover: VoiceOver | None = None
    trim_waste: bool = Field(
        True, description="the edit trims black/frozen heads and tails of this shot's clip"
    )


class Music(Strict):
    """The film's music bed: a file (`path`), or a bed generated for the film's length from a
    `prompt` by a local text-to-music model (`model`, Stable Audio) with `seed`."""

    path: str | None = None
    prompt: str | None = Field(None, min_length=1, max_length=2000,
                               description="generate the bed from this text (any language)")
    model: str = Field("@models/stable-audio-open-1.0",
                       description="text-to-music model folder (prompt): @models/NAME")
    seed: StrictInt = Field(0, ge=0, lt=2**32)
    steps: StrictInt = Field(100, ge=1, le=1000, description="denoising steps (prompt)")
    guidance: StrictFloat = Field(7.0, ge=1, le=30, description="guidance scale (prompt)")
    bpm: StrictFloat | None = Field(None, gt=0)
    snap_cuts: bool = Field(True, description="cut on the music's beats; a generated bed "
                            "snaps only when asked (its beats move with its prompt)")

    @model_validator(mode="after")
    def _one_source(self) -> Music:
        """A file or a prompt, never both; the generator's settings only with a prompt."""
        if self.path is not None and self.prompt is not None:
            raise RefError(("prompt",), "give a music file (path) or a prompt to generate the "
                           "bed from, not both")
        if self.path is None and self.prompt is None:
            raise RefError(("path",), "give a music file (path) or a prompt to generate the "
                           "bed from")
        if self.prompt is not None and not self.prompt.strip():
            raise RefError(("prompt",), "is blank: describe the music to generate")
        generator = sorted({"model", "seed", "steps", "guidance"} & self.model_fields_set)
        if self.path is not None and generator:
            raise RefError((generator[0],), "only a generated bed (prompt) takes it")
        if self.prompt is not None and "snap_cuts" not in self.model_fields_set:
            self.snap_cuts = False
        return self


class Storyboard(Strict):
    title: str = Field(min_length=1)
    project: Slug
    logline: str = ""
    aspect: Aspect = "16:9"
    width: StrictInt = Field(1280, ge=64, le=7680)
    height: StrictInt = Field(720, ge=64, le=4320)
    fps: StrictInt = Field(24, ge=1, le=120)
    style: StyleLock = StyleLock()
    characters: list[Character] = []
    shots: list[Shot] = Field(min_length=1)
    music: Music | None = None
    sound: Sound | None = None

    @field_validator("width", "height")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("must be even (H.264 needs even sizes)")
        return value

    @model_validator(mode="after")
    def _cross_references(self) -> Storyboard:
        """Every cross-field problem, each listed (RefErrors), so `validate` shows them all."""
        problems: list[RefError] = []
        if len(self.shots) > MAX_SHOTS:
            problems.append(RefError(("shots",), f"{len(self.shots)} shots; the limit is "
                                     f"{MAX_SHOTS} shots"))
        total = sum(shot.duration for shot in self.shots)
        if total > MAX_TOTAL_SECONDS:
            problems.append(RefError(("shots",), f"total duration {total:g} s; the limit is "
                                     f"{MAX_TOTAL_SECONDS:g} s"))
        want_w, want_h = (int(part) for part in self.aspect.split(":"))
        ratio, want = self.width / self.height, want_w / want_h
        if abs(ratio - want) / want > ASPECT_TOLERANCE:
            problems.append(RefError(("aspect",), f"{self.aspect} does not match width x "
                                     f"height {self.width}x{self.height}; change the aspect or "
                                     "the size"))
        names = {c.name for c in self.characters}
        seen: set[str] = set()
        min_duration = 1.0 / self.fps
        for index, shot in enumerate(self.shots):
            if shot.id in seen:
                problems.append(RefError(("shots", index, "id"),
                                         f"duplicate shot id '{shot.id}'"))
            if shot.duration < min_duration:
                problems.append(RefError(
                    ("shots", index, "duration"), f"{shot.duration:g} s is shorter than one "
                    f"frame at {self.fps} fps (min {min_duration:.4g} s)"))
            for pos, name in enumerate(shot.characters):
                if name not in names:
                    problems.append(RefError(("shots", index, "characters", pos),
                                             f"unknown character '{name}' in shot {shot.id}"))
            for field in ("first_frame", "last_frame"):
                ref: FrameRef | None = getattr(shot, field)
                if ref is not None and ref.shot not in seen:
                    problems.append(RefError(
                        ("shots", index, field, "shot"),
                        f"shot '{ref.shot}' must come earlier than shot {shot.id}"))
            if index > 0 and shot.transition_in != "cut":
                previous = self.shots[index - 1]
                limit = min(shot.duration, previous.duration)
                if shot.transition_duration >= limit:
                    problems.append(RefError(
                        ("shots", index, "transition_duration"),
                        f"must be shorter than both neighbouring shots ({limit:g} s)"))
            seen.add(shot.id)
        language = self.voice_language
        sound = self.sound or Sound()
        engines = {sound.engine} | {shot.voiceover.engine for shot in self.shots
                                    if shot.voiceover is not None and shot.voiceover.engine}
        for engine, field in (("endpoint", "endpoint"), ("vits", "model")):
            if engine in engines and not getattr(sound, field):
                raise RefError(("sound", field), f"the {engine} speech engine needs "
                               f"sound.{field}")
        if "vits" in engines and isinstance(sound.model, dict) and language not in sound.model:
            raise RefError(("sound", "model"), f"no {language} folder, and the film speaks "
                           f"{language} with the vits engine (sound.model gives "
                           f"{', '.join(sound.model) or 'none'})")
        for index, shot in enumerate(self.shots):
            if shot.voiceover is not None and not getattr(shot.voiceover, language).strip():
                problems.append(RefError(("shots", index, "voiceover", language),
                                         f"shot {shot.id}: no {language} line, and the film "
                                         f"speaks {language} (sound.language)"))
        if problems:
            raise RefErrors(problems)
        return self

    # -- convenience -------------------------------------------------------------------------
    @property
    def voice_language(self) -> Literal["zh", "en"]:
        """The language the voice-over speaks: `sound.language`, else zh when a line has it."""
        if self.sound is not None and self.sound.language is not None:
            return self.sound.language
        lines = [shot.voiceover for shot in self.shots if shot.voiceover is not None]
        return "zh" if not lines or any(line.zh.strip() for line in lines) else "en"

    @property
    def duration(self) -> float:
        return sum(shot.duration for shot in self.shots)

    def shot(self, shot_id: str) -> Shot:
        for shot in self.shots:
            if shot.id == shot_id:
                return shot
        raise KeyError(f"no shot '{shot_id}' in storyboard '{self.project}'")

    def character(self, name: str) -> Character:
        for character in self.characters:
            if character.name == name:
                return character
        raise KeyError(f"no character '{name}' in storyboard '{self.project}'")

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def content_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(
            self.model_dump(mode="json", exclude_defaults=True), allow_unicode=True, sort_keys=False
        )
