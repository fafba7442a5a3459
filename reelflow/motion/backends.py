"""The video-backend contract: one request model, one protocol, a registry.

Tasks turn a storyboard shot into a :class:`ClipRequest` and hand it to whichever backend the
run is configured with (``get_backend(name)``); they never care whether frames come from a
diffusion model on a GPU or from the CPU animatic. Every registered backend declares its
:class:`~reelflow.motion.capabilities.BackendCapabilities` (what it can be asked for, checked
before a run), and a loaded one states its :class:`BackendConstraints` (size multiple,
frame-count rule, frames per call) so the chunking logic can adapt a request instead of failing
deep inside a pipeline.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from reelflow.media.probe import VideoInfo
from reelflow.motion.animatic import DEFAULT_STRENGTH, MOVEMENTS, render_camera_move
from reelflow.motion.capabilities import (
    ANIMATIC,
    BackendCapabilities,
    capabilities,
    declare,
    declared_backends,
)
from reelflow.motion.common import EASINGS, frame_count
from reelflow.motion.morph import render_morph

__all__ = [
    "AnimaticBackend",
    "BackendCapabilities",
    "BackendConstraints",
    "BackendNotWired",
    "ClipRequest",
    "VideoBackend",
    "available_backends",
    "capabilities",
    "get_backend",
    "register_backend",
]


@dataclass(frozen=True)
class BackendConstraints:
    """What sizes and frame counts a backend can produce in one call.

    Frame counts must be ``frame_step * k + frame_offset`` (LTX-Video: 8k+1, so step 8,
    offset 1); width and height must be multiples of ``size_multiple`` (LTX: 32).
    ``max_frames`` is the most one call can make; longer shots are rendered in chunks, each
    continuing from the previous chunk's last frame. ``native_fps`` is the rate the model was
    trained at (None: renders any rate directly); output is resampled to the requested fps.
    """

    size_multiple: int = 2
    frame_step: int = 1
    frame_offset: int = 0
    max_frames: int | None = None
    native_fps: float | None = None

    def fit_size(self, width: int, height: int) -> tuple[int, int]:
        """Nearest valid (width, height), each at least one multiple."""
        m = self.size_multiple
        return (max(m, round(width / m) * m), max(m, round(height / m) * m))

    def valid_frames(self, n: int) -> bool:
        """Whether a single call may produce exactly ``n`` frames."""
        if n < max(1, self.frame_offset):
            return False
        if self.max_frames is not None and n > self.max_frames:
            return False
        return (n - self.frame_offset) % self.frame_step == 0

    def fit_frames(self, n: int) -> int:
        """Smallest valid single-call frame count >= ``n``, capped at ``max_frames``.

        Over-generating then trimming keeps the requested timing exact; under-generating
        would need time-stretching.
        """
        n = max(1, n)
        k = max(0, math.ceil((n - self.frame_offset) / self.frame_step))
        fitted = self.frame_step * k + self.frame_offset
        if fitted < 1:
            fitted += self.frame_step
        if self.max_frames is not None and fitted > self.max_frames:
            k = (self.max_frames - self.frame_offset) // self.frame_step
            fitted = self.frame_step * k + self.frame_offset
        return fitted

    def chunks(self, n: int) -> list[int]:
        """Split ``n`` wanted frames into valid per-call counts.

        Each chunk after the first starts from the previous chunk's last frame, which is
        therefore generated twice and dropped once: chunk counts overlap by one frame. The
        returned counts are per call; their useful total (minus overlaps) is at least ``n``.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if self.max_frames is None or n <= self.max_frames:
            return [self.fit_frames(n)]
        per_call = self.fit_frames(self.max_frames)
        if per_call < 2:
            raise ValueError("max_frames must allow at least 2 frames per call to chunk")
        out: list[int] = []
        remaining = n
        while remaining > 0:
            # The first call contributes all its frames; later calls lose the shared first one.
            usable = per_call if not out else per_call - 1
            if remaining <= usable:
                need = remaining if not out else remaining + 1
                out.append(self.fit_frames(max(need, 2 if out else 1)))
                break
            out.append(per_call)
            remaining -= usable
        return out


class ClipRequest(BaseModel):
    """What to render: the spec a clip's hash is made from. Where it goes (``out``) is passed
    separately, so the same request always describes the same clip wherever it is written.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    images: list[Path] = Field(
        min_length=1,
        description="source stills; images[0] is the still a shot animates (transitions take "
        "their first and last frames as explicit arguments)",
    )
    motion_prompt: str = Field("", description="what moves, for generative backends")
    negative_prompt: str = ""
    movement: str = "static"
    easing: str = "ease-in-out"
    strength: float = Field(DEFAULT_STRENGTH, ge=0.0, le=1.0)
    duration: float = Field(gt=0, le=600)
    fps: int = Field(24, gt=0, le=120)
    width: int = Field(gt=0, le=7680)
    height: int = Field(gt=0, le=4320)
    seed: int = Field(0, ge=0, lt=2**32)
    steps: int | None = Field(None, ge=1, description="denoising steps (generative backends)")
    guidance_scale: float | None = Field(None, ge=0)
    reference_images: list[Path] = Field(
        default_factory=list,
        description="the shot's characters' reference images, for a backend that takes them "
        "(wan-vace: the clip keeps their identity)",
    )

    @field_validator("movement")
    @classmethod
    def _known_movement(cls, v: str) -> str:
        if v not in MOVEMENTS:
            raise ValueError(f"unknown movement {v!r}; choose from {list(MOVEMENTS)}")
        return v

    @field_validator("easing")
    @classmethod
    def _known_easing(cls, v: str) -> str:
        if v not in EASINGS:
            raise ValueError(f"unknown easing {v!r}; choose from {sorted(EASINGS)}")
        return v

    @model_validator(mode="after")
    def _even_size(self) -> ClipRequest:
        if self.width % 2 or self.height % 2:
            raise ValueError(f"width and height must be even (yuv420p): {self.width}x{self.height}")
        return self

    @property
    def image(self) -> Path:
        """The still a shot animates (``images[0]``)."""
        return self.images[0]

    @property
    def n_frames(self) -> int:
        """Exact output frame count, ``round(duration * fps)``."""
        return frame_count(self.duration, self.fps)


@runtime_checkable
class VideoBackend(Protocol):
    """A way to turn stills into clips. Implementations must write exactly
    ``request.n_frames`` frames at ``request.fps`` and ``request.width x request.height``,
    whatever their internal constraints, so the edit's timing never depends on the backend.
    """

    name: str
    constraints: BackendConstraints

    @property
    def identity(self) -> dict[str, str]:
        """What goes into a clip's spec-hash: backend, model and code version."""
        ...

    def render_shot(self, request: ClipRequest, out: Path) -> VideoInfo:
        """Animate ``request.image`` into an MP4 at ``out``."""
        ...

    def render_transition(
        self, first: Path, last: Path, request: ClipRequest, out: Path
    ) -> VideoInfo:
        """A clip at ``out`` that starts on ``first`` and ends on ``last``."""
        ...


class AnimaticBackend:
    """Model-free backend: OpenCV camera moves, and an optical-flow morph for first+last shots.

    Always available (CPU only, deterministic: ``seed`` is ignored), so it is the offline
    default and the preview a director times the edit with.
    """

    name = "animatic"
    capabilities = ANIMATIC
    constraints = BackendConstraints()
    version = "1"

    def __init__(self, *, crf: int = 18, preset: str = "medium") -> None:
        self.crf = crf
        self.preset = preset

    @property
    def identity(self) -> dict[str, str]:
        return {"backend": self.name, "version": self.version}

    def render_shot(self, request: ClipRequest, out: Path) -> VideoInfo:
        return render_camera_move(
            request.image,
            out,
            duration=request.duration,
            fps=request.fps,
            width=request.width,
            height=request.height,
            movement=request.movement,
            easing=request.easing,
            strength=request.strength,
            crf=self.crf,
            preset=self.preset,
        )

    def render_transition(
        self, first: Path, last: Path, request: ClipRequest, out: Path
    ) -> VideoInfo:
        return render_morph(
            first,
            last,
            out,
            duration=request.duration,
            fps=request.fps,
            width=request.width,
            height=request.height,
            easing=request.easing,
            crf=self.crf,
            preset=self.preset,
        )


BackendFactory = Callable[..., VideoBackend]


class BackendNotWired(LookupError):
    """A backend whose capabilities are declared but whose render function is not written."""


_REGISTRY: dict[str, BackendFactory | str] = {
    "animatic": AnimaticBackend,
    # Generative backends import torch/diffusers; they load only when asked for.
    "ltx": "reelflow.motion.diffusion:LTXBackend",
    "wan": "reelflow.motion.diffusion:WanBackend",
    "ltx2": "reelflow.motion.ltx2:LTX2Backend",
    "wan22": "reelflow.motion.wan22:Wan22Backend",
    "wan22-ti2v": "reelflow.motion.wan22:Wan22TI2VBackend",
    "wan-vace": "reelflow.motion.vace:WanVACEBackend",
    "skyreels-v2-df": "reelflow.motion.skyreels:SkyReelsDFBackend",
}


def register_backend(
    name: str, factory: BackendFactory | str, declared: BackendCapabilities | None = None
) -> None:
    """Register ``factory`` (a callable, or ``"module:attr"`` imported lazily) as ``name``.

    ``declared``: what it can do; by default the factory's ``capabilities`` attribute (a class
    that subclasses a backend inherits its parent's), renamed to ``name``. A backend that
    declares nothing is refused: the storyboard check could not tell what it may be asked.
    """
    declared = declared or getattr(factory, "capabilities", None)
    if not isinstance(declared, BackendCapabilities):
        raise TypeError(f"backend {name!r} must declare its capabilities (BackendCapabilities)")
    declare(declared.model_copy(update={"name": name, "available": True,
                                        "unavailable_reason": ""}))  # fmt: skip
    _REGISTRY[name] = factory


def available_backends() -> list[str]:
    """Declared backends, wired or not (lazy ones included, even if their deps are missing);
    `capabilities(name).available` tells which can render."""
    return declared_backends()


def get_backend(name: str, **options: Any) -> VideoBackend:
    """Instantiate the backend registered as ``name`` with ``options``."""
    declared = capabilities(name)  # KeyError naming the known backends
    factory = _REGISTRY.get(name)
    if factory is None or not declared.available:
        raise BackendNotWired(f"backend {name} is {declared.unavailable_reason or 'not wired'}")
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
        _REGISTRY[name] = factory
    backend = factory(**options)
    if not _implements(backend):
        raise TypeError(f"backend {name!r} does not implement VideoBackend")
    return backend


def _implements(obj: object) -> bool:
    """Structural check without touching attribute values.

    ``isinstance(obj, VideoBackend)`` would evaluate properties, and a generative backend's
    ``constraints`` loads its model; looking the names up statically keeps construction cheap.
    """
    for attr in ("name", "constraints", "identity", "render_shot", "render_transition"):
        try:
            inspect.getattr_static(obj, attr)
        except AttributeError:
            return False
    return callable(getattr(obj, "render_shot", None)) and callable(
        getattr(obj, "render_transition", None)
    )
