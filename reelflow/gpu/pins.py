"""Memory choices a profile or model block pins, and the plan a worker loads a model with.

A pinned choice that changes pixels (fp8 storage of the denoiser, VAE tiling, a GGUF-quantized
transformer) is part of the job: it is in the job's key and lineage, so a picture made with fp8
weights is never served for one asked without. A choice that does not (offloading) moves the
same weights around: it reaches the worker inside the job but is left out of the key
(`weights.identity_view`), and each rendered object's sidecar records it (`runtime_lineage`).

Unpinned, a CUDA worker plans on its own with the pixel-changing options held off, so the
pixels never depend on which card the job landed on; a model that then does not fit says so and
names the pin that would make it fit.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:  # torch is imported only where a model is loaded
    from reelflow.gpu.memory import MemoryPlan

log = logging.getLogger(__name__)

PinnedOffload = Literal["auto", "none", "text_encoders", "model", "group"]
#: the shorthand a profile or block may write instead of a mapping (`memory: model-offload`)
SHORTHANDS: dict[str, dict[str, Any]] = {
    "auto": {},
    "resident": {"offload": "none"},
    "text-encoders-offload": {"offload": "text_encoders"},
    "model-offload": {"offload": "model"},
    "group-offload": {"offload": "group"},
    "fp8": {"fp8": True},
    "vae-tiling": {"vae_tiling": True},
}
#: the keys of a model's `memory` mapping that change pixels: in the job's key
PIXEL_KEYS = ("fp8", "vae_tiling", "gguf")
#: the keys that do not: in the job (the worker needs them), not in its key
RUNTIME_KEYS = ("offload",)


class MemoryPins(BaseModel):
    """What a profile or block insists on; None/`auto` leaves the choice to the plan."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    offload: PinnedOffload = "auto"
    fp8: bool | None = Field(None, description="fp8 storage of the denoiser's weights")
    vae_tiling: bool | None = None
    gguf: str | None = Field(
        None, description="a GGUF-quantized transformer file (@models/... or a path) loaded in "
        "place of the model's own transformer"
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value not in SHORTHANDS:
                raise ValueError(f"memory: {value!r} is not one of {', '.join(SHORTHANDS)}")
            return SHORTHANDS[value]
        return value

    def job_options(self) -> dict[str, Any]:
        """The pinned choices as the job carries them (`ModelChoice.memory`): set ones only, so
        a profile pinning nothing keeps every key as it was."""
        out: dict[str, Any] = {}
        if self.offload != "auto":
            out["offload"] = self.offload
        for name in PIXEL_KEYS:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


def pixel_view(memory: dict[str, Any]) -> dict[str, Any]:
    """The part of a job's `memory` mapping that belongs in its key (a GGUF file by its content
    hash when known, like every other weight)."""
    out = {k: v for k, v in memory.items()
           if k in (*PIXEL_KEYS, "gguf_sha256") and v not in (None, False)}
    if out.get("gguf_sha256"):
        out.pop("gguf", None)
    return out


def plan_for(
    device: str, where: str, dtype: str, memory: dict[str, Any] | None = None,
    *, model: str = "",
) -> MemoryPlan:
    """The plan a worker loads `where` with on `device` under the job's pinned `memory`.

    Pinned options are taken as they are (on a CPU too, where diffusers runs them all). With
    nothing pinned: resident on a CPU (the weights are in RAM anyway); on CUDA the first plan
    that fits the free memory among those that keep the pixels (no fp8, no tiling)."""
    from reelflow.gpu.memory import (
        FP8,
        MemoryPlanError,
        architecture_from_dir,
        device_budget,
        plan_memory,
        resident_plan,
    )

    memory = dict(memory or {})
    name = model or Path(where).name
    pinned_offload = memory.get("offload", "auto")
    if device.startswith("cuda") and pinned_offload == "auto" and Path(where).is_dir():
        try:
            arch = architecture_from_dir(where)
        except MemoryPlanError:
            arch = None
        if arch is not None:
            arch = arch.model_copy(update={"dtype": dtype, "name": name})
            pin = {"fp8": bool(memory.get("fp8")), "vae_tiling": bool(memory.get("vae_tiling"))}
            plan = plan_memory(arch, budget=device_budget(device), device=device, pin=pin)
            if not plan.fits and not pin["fp8"]:
                raise MemoryPlanError(
                    f"model {name}: {plan.reason}; pin `memory: {{fp8: true}}` or "
                    "`{vae_tiling: true}` (they change pixels) in the profile or the model's "
                    "block (image-model, or a video-model's options), or use a smaller model"
                )
            return plan
    plan = resident_plan(device, name, dtype)
    update: dict[str, Any] = {}
    if pinned_offload != "auto":
        update["offload"] = pinned_offload
    if memory.get("fp8"):
        update["storage_dtype"] = FP8
    if memory.get("vae_tiling"):
        update |= {"vae_tiling": True, "vae_slicing": True}
    return plan.model_copy(update=update)


def runtime_lineage(memory: dict[str, Any], device: str) -> dict[str, Any]:
    """The sidecar's record of the memory choices a job ran with: the pinned ones as pinned,
    offloading (which the key leaves out) included."""
    record = {"offload": memory.get("offload", "auto"), "device": device}
    record |= {k: memory[k] for k in PIXEL_KEYS if k in memory}
    return record


def memory_json(memory: dict[str, Any] | None) -> str:
    return json.dumps(memory or {}, sort_keys=True)


def parse_pins(value: Any, where: str) -> dict[str, Any]:
    """`value` (a shorthand or a mapping) as the job carries it (`MemoryPins.job_options`);
    InputError in one line naming `where` when it is not a memory pin."""
    from pydantic import ValidationError

    from reelflow.errors import InputError

    if value is None:
        return {}
    try:
        return MemoryPins.model_validate(value).job_options()
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ").removeprefix("memory: ")
        raise InputError(f"{where}{'.' + field if field else ''}: {message}") from None


def video_pins(value: Any, where: str = "video options memory") -> dict[str, Any]:
    """A video model's pinned memory choices (`memory:` in its options) as a clip job carries
    them. A GGUF transformer is an image-model choice for now (a video pipeline may have two
    transformers, and the clip key would need the file's hash): refused in one line."""
    pins = parse_pins(value, where)
    if pins.get("gguf"):
        from reelflow.errors import InputError

        raise InputError(f"{where}.gguf: a GGUF transformer is pinned on the image model only; "
                         "a video model pins offload, fp8 or vae_tiling")
    return pins


def with_video_pins(options: dict[str, Any], where: str = "video options") -> dict[str, Any]:
    """A video model's options with `memory` as the job carries it, so a shorthand and its
    mapping key the same clip (`fp8` = `{fp8: true}`), and nothing pinned leaves no entry
    (the keys of every other clip stay what they were)."""
    if "memory" not in options:
        return options
    out = dict(options)
    pins = video_pins(out.pop("memory"), f"{where} memory")
    if pins:
        out["memory"] = pins
    return out
