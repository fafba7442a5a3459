"""Delivered versions: the `--export` grammar (`ExportSpec`, `parse_export`), the default
version, each version's delivery size, and the cut plans (storyboard, fast, slow) an edit is
assembled from.

Delivery sizes: platforms take 1080x1920 (9:16, 720x1280 at least), 1920x1080 (16:9) and
1080x1080 (1:1); a 1280x720 film reframed to 9:16 is only 404x720. So a version without a
size of its own is delivered at its platform preset's size (:data:`DELIVERY_SIZES`): the film
is reframed (the subject-following crop) and then upscaled. A film bigger than the preset is
never scaled down, and `size=720p` (or `WIDTHxHEIGHT`) asks for another size. The upscale is
a filter unless the version names a learned upscaler (`upscaler=@models/NAME`, see
reelflow/editing/upscaler.py); its folder's content hash is then in the version's key.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from reelflow.errors import InputError
from reelflow.storyboard import Storyboard, Transition

EXPORT_MAX_SIDE = 7680
EXPORT_MAX_PIXELS = 7680 * 4320
EXPORT_FPS = (1, 120)

#: The size each platform preset is delivered at when a version names none.
DELIVERY_SIZES: dict[str, tuple[int, int]] = {
    "9:16": (1080, 1920), "16:9": (1920, 1080), "1:1": (1080, 1080),
}  # fmt: skip
#: Named sizes by their short side: `9:16,size=720p` is 720x1280, `16:9,size=4k` 3840x2160.
NAMED_SIZES: dict[str, int] = {"720p": 720, "1080p": 1080, "1440p": 1440, "2160p": 2160, "4k": 2160}
#: How a version without a size is delivered: at its platform preset's size (reframed, then
#: upscaled), or at the reframed film's own size (the `test` profile: small pictures).
Delivery = Literal["platform", "film"]


def named_size(aspect: str, name: str) -> tuple[int, int]:
    """`720p` at `aspect`: the short side is 720, the long side follows the aspect (even)."""
    short = NAMED_SIZES[name.lower()]
    a, b = (int(part) for part in aspect.split(":"))
    long = round(short * max(a, b) / min(a, b) / 2) * 2
    return (short, long) if a < b else (long, short) if a > b else (short, short)


class ExportSpec(BaseModel):
    """One delivered version of the film: framing, codec, frame rate, size, captions."""

    model_config = ConfigDict(extra="forbid")

    aspect: Literal["16:9", "9:16", "1:1"] = "16:9"
    codec: Literal["h264", "h265", "av1"] = "h264"
    fps: int | None = Field(None, ge=EXPORT_FPS[0], le=EXPORT_FPS[1],
                            description="interpolate to this frame rate (e.g. 60)")
    size: tuple[int, int] | None = Field(
        None,
        description="delivered (width, height); a name (720p, 1080p, 1440p, 4k) sets the "
        "short side; default: the platform preset's size (DELIVERY_SIZES)",
    )
    denoise: Literal["hqdn3d", "nlmeans"] | None = None
    captions: Literal["burn", "soft", "none"] = "burn"
    cut: Literal["storyboard", "fast", "slow"] = Field(
        "storyboard",
        description="fast: shots trimmed to 60% with hard cuts; slow: long dissolves between shots",
    )
    lang: Literal["zh", "en"] | None = Field(
        None,
        description="the voice-over's and the captions' language (captions in it alone); "
        "default: the storyboard's (sound.language), captions in both",
    )
    lufs: float | None = Field(
        None, ge=-40, le=-5,
        description="integrated loudness of the mix (default: sound.loudness_lufs, -14)",
    )  # fmt: skip
    upscaler: str | None = Field(
        None, min_length=1,
        description="a learned upscaler (a StableDiffusionUpscalePipeline folder, "
        "`@models/NAME`) for the step from the reframed film to the delivery size; "
        "default: a filter (Lanczos + unsharp)",
    )  # fmt: skip
    upscale_steps: int | None = Field(
        None, ge=1, le=200,
        description="the upscaler's denoising steps per frame (default 20)",
    )  # fmt: skip

    @model_serializer(mode="wrap")
    def _unset_sound_options(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """`lang` and `lufs` left out while unset: a version without them keeps the key (the
        hash of its job) it had before versions had a language."""
        data = handler(self)
        for name in ("lang", "lufs", "upscaler", "upscale_steps"):
            if data.get(name) is None:
                data.pop(name, None)
        return data

    @model_validator(mode="before")
    @classmethod
    def _named_size(cls, data: Any) -> Any:
        """`size: 720p` (a preset name) or `size: 720x1280` (text) become (width, height)."""
        if isinstance(data, dict) and isinstance(data.get("size"), str):
            text, aspect = data["size"].strip().lower(), data.get("aspect", "16:9")
            if text in NAMED_SIZES and aspect in DELIVERY_SIZES:
                return {**data, "size": named_size(aspect, text)}
            width, x, height = text.partition("x")
            if x and width.isdigit() and height.isdigit():
                return {**data, "size": (int(width), int(height))}
        return data

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

    def delivery_size(
        self, film: tuple[int, int], delivery: Delivery = "platform"
    ) -> tuple[int, int] | None:
        """The delivered (width, height) of this version of a `film`-sized picture: its own
        size, else the platform preset's (never smaller than the reframed film), else (the
        `film` delivery) None: the reframed film's own size."""
        if self.size is not None:
            return self.size
        if delivery == "film":
            return None
        a, b = (int(part) for part in self.aspect.split(":"))
        # the reframed film: the largest a:b window inside it
        framed_w = min(film[0], film[1] * a / b)
        preset = DELIVERY_SIZES[self.aspect]
        if framed_w > preset[0]:
            return round(framed_w / 2) * 2, round(framed_w * b / a / 2) * 2
        return preset

    @property
    def name(self) -> str:
        """Every field that differs from its default, so two different versions never share a
        name (a file name, a bucket key, a manifest entry): `9x16-h264-soft-captions`; a size
        other than the platform preset's is named (`9x16-h264-720x1280`)."""
        parts = [self.aspect.replace(":", "x"), self.codec]
        if self.cut != "storyboard":
            parts.append(self.cut)
        if self.fps:
            parts.append(f"{self.fps}fps")
        if self.size and self.size != DELIVERY_SIZES[self.aspect]:  # the preset is the default
            parts.append(f"{self.size[0]}x{self.size[1]}")
        if self.denoise:
            parts.append(self.denoise)
        if self.captions != "burn":
            parts.append({"soft": "soft-captions", "none": "no-captions"}[self.captions])
        if self.lang:
            parts.append(self.lang)
        if self.lufs is not None:
            parts.append(f"lufs{self.lufs:g}")
        if self.upscaler:
            folder = self.upscaler.rstrip("/").rsplit("/", 1)[-1]
            parts.append("up-" + "".join(c if c.isalnum() or c in "._-" else "_" for c in folder))
        if self.upscale_steps:
            parts.append(f"{self.upscale_steps}steps")
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


def parse_export(text: str) -> ExportSpec:
    """`9:16`, `9:16,size=720p`, `16:9,codec=h265`, `16:9,fps=60`,
    `16:9,size=3840x2160,captions=soft`, `9:16,lang=zh,lufs=-16`,
    `9:16,upscaler=@models/x4-upscaler,upscale_steps=20`: the `--export` option;
    InputError naming the option for anything else."""
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
            if value.lower() in NAMED_SIZES:
                fields["size"] = value.lower()
            elif not (x and width.isdigit() and height.isdigit()):
                raise InputError(f"{where}: size must be WIDTHxHEIGHT in pixels or one of "
                                 f"{', '.join(NAMED_SIZES)}, got {value!r}")
            else:
                fields["size"] = (int(width), int(height))
        elif name == "upscale_steps":
            if not value.isdigit():
                raise InputError(f"{where}: upscale_steps must be a whole number, got {value!r}")
            fields[name] = int(value)
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


def default_export(storyboard: Storyboard) -> ExportSpec:
    """Without --export: one version at the storyboard's own framing, captions burned in."""
    aspect = storyboard.aspect if storyboard.aspect in ("9:16", "1:1") else "16:9"
    return ExportSpec(aspect=aspect)
