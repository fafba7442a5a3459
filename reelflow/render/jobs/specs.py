"""Job types: each holds everything that decides its output and nothing else, so its hash is
the object key of what it makes (`output_key()`) and the cache key of the task that makes it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from reelflow.editing.upscaler import UpscalerChoice
from reelflow.render import weights
from reelflow.render.jobs.exports import ExportSpec
from reelflow.sound.speech import SentenceTiming
from reelflow.store import keys
from reelflow.store.keys import spec_hash
from reelflow.storyboard import Transition


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
    # pinned memory choices (reelflow/gpu/pins.py): fp8/vae_tiling/gguf change pixels and are
    # in the key; offload is not (weights.identity_view). Empty: not in the dump (old keys).
    memory: dict[str, Any] = Field(default_factory=dict, exclude_if=lambda value: not value)


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
    notes: list[str] = []  # the reviewer's, on a panel drawn again: shown on its card
    take: int = 0  # how many times the shot was drawn again (a new take moves the subject)
    restyle: str | None = None  # a transition's restyled frame: what the restyle asks for
    composition_of: str | None = None  # ... and the shot whose composition it keeps
    # the panel's layout; bumped when the drawing changes, so stored panels are redrawn
    # (2: text inside the region the camera move keeps in view; 3: nothing crosses the card,
    # its text is never cut, notes/take/restyle shown)
    layout: int = 3


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
    # speed options (reelflow/gpu/speed.py: cache, guard...), the guard's decision once made;
    # in the key only as the cache once kept (weights.identity_view). Empty: not in the dump.
    speed: dict[str, Any] = Field(default_factory=dict, exclude_if=lambda value: not value)

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
    # previz: the frame is the shot's own panel (a restyled end of a transition), drawn at the
    # source frame's size, not the source frame as it is; left out of the spec when None, so
    # the keys of generated frames stay what they were
    panel: PanelSpec | None = Field(default=None, exclude_if=lambda value: value is None)

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
    # a backend that takes reference images (wan-vace): the shot's library characters, name ->
    # version (a changed reference re-renders exactly its shots, as for stills), and the
    # reference image keys the clip is conditioned on. Left out of the spec when empty, so the
    # keys of every other clip stay what they were.
    characters: dict[str, str] = Field(default_factory=dict, exclude_if=lambda value: not value)
    reference_keys: list[str] = Field(default_factory=list, exclude_if=lambda value: not value)
    # content hash of backend_options["upsampler"] (LTX-2's latent upsampler given as its own
    # folder; the model's own `latent_upsampler` is inside model_sha256). Left out when unset.
    upsampler_sha256: str | None = Field(None, exclude_if=lambda value: value is None)

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
    size: tuple[int, int] | None = None  # the version's delivered size (None: the crop's own)

    def output_key(self) -> str:
        return keys.cover_key(self.project, self.spec_hash())


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


class MusicBedJob(Job):
    """A music bed generated from the storyboard's prompt for the film's length: its key is
    the prompt, seed, model (by content hash), length and sampler settings, nothing else."""

    project: str
    prompt: str
    seed: int
    seconds: float  # the film's length, rounded up to a whole second
    steps: int
    guidance: float
    model_sha256: str  # content hash of the model folder (weights.content_hash)
    model: str  # where it lies (@models/NAME), outside the hash: a moved folder keeps the bed

    def spec_hash(self) -> str:
        return spec_hash(self.model_dump(mode="json", exclude={"model"}))

    def output_key(self) -> str:
        return keys.music_key(self.project, self.spec_hash())


class SpeechJob(Job):
    """One shot's voice-over line in the film's language: its key changes with the text, the
    voice, the speed and the engine (and its version), and with nothing else."""

    project: str
    shot: str
    language: Literal["zh", "en"]
    text: str
    voice: str
    speed: float
    engine: str  # espeak, endpoint, vits, or recorded (a take of the line)
    engine_version: str  # endpoint: its model and URL; vits: the folder's hash; recorded: sha256
    # where the speech comes from, outside the hash (its content is in engine_version): the
    # recorded take's object key, the VITS folder (@models/...), the endpoint block's name
    source: str | None = None
    endpoint: str | None = None

    def spec_hash(self) -> str:
        """Of what is spoken and how (text, voice, speed, engine and its version): a renamed
        block, a moved model folder or a re-uploaded take keep the line."""
        return spec_hash(self.model_dump(mode="json", exclude={"source", "endpoint"}))

    def output_key(self) -> str:
        return keys.speech_key(self.project, self.shot, self.spec_hash())


class SpokenLine(BaseModel):
    """A synthesised line: where its audio is, how long it lasts, when each sentence is said."""

    shot: str
    key: str
    duration: float
    sentences: list[SentenceTiming]


class VoiceClip(BaseModel):
    """A line placed on the film's timeline."""

    shot: str
    key: str
    start: float
    duration: float


class MasterJob(Job):
    """The edit with its sound: the voice-over lines at their places over the music bed, the
    music ducked while the voice speaks, loudness-normalised. The picture is stream-copied."""

    project: str
    edit_key: str
    music_key: str | None = None
    target_lufs: float = -14.0
    fade_out: float = 2.0
    voice: list[VoiceClip] = []
    voice_level_db: float = 0.0
    music_level_db: float = -8.0
    duck_db: float = 12.0
    clip_sound_key: str | None = None  # the clips' own sound on this cut (ClipStemJob)
    clip_level_db: float = -10.0

    def spec_hash(self) -> str:
        """Without the clip-sound fields when there is no clip sound: masters made before the
        clips' stems joined the mix keep their keys."""
        data = self.model_dump(mode="json")
        if self.clip_sound_key is None:
            del data["clip_sound_key"], data["clip_level_db"]
        return spec_hash(weights.identity_view(data))

    def output_key(self) -> str:
        return keys.edit_key(self.project, f"{self.spec_hash()}-master")

    def mix_key(self) -> str:
        """The mixed audio alone, an object of its own (a voiced master only)."""
        return keys.edit_key(self.project, f"{self.spec_hash()}-mix", ext="m4a")


class ClipSoundJob(Job):
    """The master of a film without music whose clips carry their own sound (LTX-2): the edit
    with each shot's audio stem laid under its picture."""

    project: str
    edit_key: str
    clips: list[EditClip]  # the edit's clips, for their stems and timing
    fps: int

    def output_key(self) -> str:
        return keys.edit_key(self.project, f"{self.spec_hash()}-sound")


class ClipStemJob(ClipSoundJob):
    """The clips' own sound alone on a cut's timeline: a WAV stem for the mix, beside the voice
    and the music (shared by every language and loudness of the cut)."""

    def output_key(self) -> str:
        return keys.edit_key(self.project, f"{self.spec_hash()}-clip-sound", ext="wav")


class VersionJob(Job):
    """One delivered version of the master: framing, enhancement, captions."""

    project: str
    master_key: str
    source_aspect: str  # the master's framing; the version reframes when it differs
    export: ExportSpec
    captions: list[CaptionCue]
    title: str
    size: tuple[int, int] | None = None  # delivered (width, height); None: the reframed master's
    # the learned upscaler from the reframed film to `size` (its folder's content hash in the
    # key, not its path); None: a filter. Left out while unset (the keys versions had before).
    upscaler: UpscalerChoice | None = Field(None, exclude_if=lambda value: value is None)

    def output_key(self) -> str:
        return keys.edit_key(self.project, f"{self.spec_hash()}-{self.export.name}")


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


class RenderPlan(BaseModel):
    """Everything known before the first image exists: used by the flow, `reelflow plan` and the
    benchmarks. Clips and frames depend on approved stills, so they are built later, from the
    same builders, once their inputs exist."""

    project: str
    images: list[ImageJob]
    truncated_prompts: dict[str, list[str]]
