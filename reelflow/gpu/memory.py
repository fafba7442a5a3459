"""A memory plan per model and device: what is resident, what is offloaded, what is cast.

The models creators name do not fit the cards they own as they are (Flux-dev in bf16 with its
T5 needs ~33 GB; Wan 2.2 A14B and LTX-2 far more). diffusers ships the parts (model and group
offloading, fp8 storage, VAE tiling); this module chooses them. It sizes every component from
the model's own configuration on the meta device (no weights read), predicts the peak of each
candidate plan, and takes the first that fits, in this order of preference:

1. everything resident;
2. text encoders offloaded after encoding (the denoiser and VAE stay);
3. model CPU offload (one component on the device at a time);
4. group offloading (the denoiser streamed block by block, with CUDA streams where they exist);

first with exact pixels, then with VAE tiling, then with fp8 storage of the denoiser's weights
(`enable_layerwise_casting`), then both. Tiling and fp8 change pixels, so they are the plan's
`pixel_options()` (a job's key and lineage); offloading and slicing do not, so they are
`runtime_options()` (the sidecar only).

The activation figures are estimates (documented constants below); the GPU benchmark records
the measured peak beside each prediction so the constants can be checked on real cards.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from reelflow.errors import ConfigError
from reelflow.gpu.architectures import (
    ARCHITECTURES,
    Architecture,
    ComponentSpec,
    Workload,
)

log = logging.getLogger(__name__)

GiB = 2**30
Offload = Literal["none", "text_encoders", "model", "group"]
OFFLOADS: tuple[Offload, ...] = ("none", "text_encoders", "model", "group")

#: live activations of one denoiser forward, in copies of its token stream (the widest moment
#: of a transformer block: the feed-forward's 4x expansion and its activation, q/k/v, residual)
ACTIVATION_COPIES = 12
#: what the process holds beyond tensors: the CUDA context, cuBLAS workspaces, fragmentation
RESERVE_BYTES = 3 * GiB // 4
FP8 = "float8_e4m3fn"

_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, FP8: 1}
_CASTABLE = (
    torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d,
    torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d,
)
#: diffusers' DEFAULT_SKIP_MODULES_PATTERN for layerwise casting (hooks/layerwise_casting.py)
_DEFAULT_SKIP = ("pos_embed", "patch_embed", "norm", "^proj_in$", "^proj_out$")


class MemoryPlanError(ConfigError, ValueError):
    """A memory size or model that cannot be planned for (one line, names the value)."""


def parse_memory(value: str | int | float) -> int:
    """`24GB`, `24 GiB`, `16g`, `800MB` or a byte count -> bytes. GB means GiB: a card sold as
    24 GB has 24 GiB (nvidia-smi shows 24564 MiB)."""
    if isinstance(value, int | float):
        return int(value)
    match = re.fullmatch(r"\s*([\d.]+)\s*([kmgt]?)i?b?\s*", value.lower())
    if not match:
        raise MemoryPlanError(f"memory size {value!r}: write it like 24GB, 16GiB or 800MB")
    number, unit = float(match.group(1)), match.group(2)
    return int(number * 1024 ** " kmgt".index(unit or " "))


def format_bytes(n: int | float) -> str:
    return f"{n / GiB:.1f} GB"


# --- component sizes -----------------------------------------------------------------------


class ComponentSize(BaseModel):
    """A component's tensors, counted on the meta device: enough to size it at any dtype and
    under each kind of offloading."""

    model_config = ConfigDict(frozen=True)

    name: str
    role: str
    class_name: str
    float_numel: int  # floating parameters and buffers: stored at the model's dtype
    fixed_bytes: int  # integer buffers (position ids...): kept as they are
    fp8_numel: int  # the part `enable_layerwise_casting` stores in fp8
    unblocked_numel: int  # block-level offload: what is outside the top-level block lists
    largest_block_numel: int  # block-level offload: the largest block
    largest_leaf_numel: int  # leaf-level offload: the largest single layer

    def bytes(self, dtype: str, storage: str | None = None) -> int:
        """Parameter + buffer bytes at `dtype`; with `storage` (fp8) for the castable layers."""
        if storage is None:
            return self.float_numel * _BYTES[dtype] + self.fixed_bytes
        rest = self.float_numel - self.fp8_numel
        return self.fp8_numel * _BYTES[storage] + rest * _BYTES[dtype] + self.fixed_bytes

    def block_peak(self, dtype: str, stream: bool) -> int:
        """On the device under block-level group offloading: the unblocked part plus one block
        (two with a stream: the next block is copied while the current one runs)."""
        blocks = self.largest_block_numel * (2 if stream else 1)
        return (self.unblocked_numel + blocks) * _BYTES[dtype] + self.fixed_bytes

    def leaf_peak(self, dtype: str, stream: bool) -> int:
        return self.largest_leaf_numel * (2 if stream else 1) * _BYTES[dtype]


def _numel(tensors: Any) -> tuple[int, int]:
    """(floating element count, bytes of the others)."""
    floating = fixed = 0
    for t in tensors:
        if t.is_floating_point():
            floating += t.numel()
        else:
            fixed += t.numel() * t.element_size()
    return floating, fixed


def measure_module(module: torch.nn.Module, name: str, role: str) -> ComponentSize:
    """Count a module's tensors (meta or real) the way diffusers' hooks will group them."""
    floating, fixed = _numel([*module.parameters(), *module.buffers()])
    skip = _DEFAULT_SKIP + tuple(getattr(module, "_skip_layerwise_casting_patterns", None) or ())
    fp8 = 0
    for sub_name, sub in module.named_modules():
        if isinstance(sub, _CASTABLE) and not any(re.search(p, sub_name) for p in skip):
            fp8 += sum(p.numel() for p in sub.parameters(recurse=False))
    # diffusers' block level: each entry of a top-level ModuleList/Sequential is a block; the
    # other children and the root's own tensors are one group onloaded with the first block
    blocks: list[int] = []
    unblocked = 0
    for child in module.children():
        if isinstance(child, torch.nn.ModuleList | torch.nn.Sequential):
            blocks += [_numel([*b.parameters(), *b.buffers()])[0] for b in child]
        else:
            unblocked += _numel([*child.parameters(), *child.buffers()])[0]
    unblocked += _numel([*module.parameters(recurse=False), *module.buffers(recurse=False)])[0]
    leaves = [
        _numel([*m.parameters(recurse=False), *m.buffers(recurse=False)])[0]
        for m in module.modules()
    ]
    return ComponentSize(
        name=name, role=role, class_name=type(module).__name__, float_numel=floating,
        fixed_bytes=fixed, fp8_numel=fp8, unblocked_numel=unblocked,
        largest_block_numel=max(blocks, default=0), largest_leaf_numel=max(leaves, default=0),
    )


def diffusers_class(name: str) -> Any:
    """A diffusers class by name: exported at the top, or a pipeline's own model (LTX-2's text
    connectors and vocoder live in `diffusers.pipelines.ltx2`)."""
    import importlib

    import diffusers

    if hasattr(diffusers, name):
        return getattr(diffusers, name)
    for package in ("ltx2",):
        module = importlib.import_module(f"diffusers.pipelines.{package}")
        if hasattr(module, name):
            return getattr(module, name)
    raise MemoryPlanError(f"diffusers {diffusers.__version__} has no class {name}")


def build_component(spec: ComponentSpec, device: str = "meta") -> torch.nn.Module:
    """The component from its config with random weights on `device`; on "meta" (the default)
    every tensor is a shape only: no memory, no file. The GPU benchmark builds full-size models
    directly on the GPU this way."""
    from accelerate import init_empty_weights

    place = init_empty_weights(include_buffers=True) if device == "meta" else torch.device(device)
    with place:
        if spec.library == "diffusers":
            return diffusers_class(spec.class_name).from_config(spec.config)
        import transformers

        config_cls = getattr(transformers, spec.config_class or "AutoConfig")
        config = config_cls(**spec.config)
        return getattr(transformers, spec.class_name)(config)


def build_on_meta(spec: ComponentSpec) -> torch.nn.Module:
    return build_component(spec, "meta")


@lru_cache(maxsize=64)
def _sizes_cached(arch_json: str) -> tuple[ComponentSize, ...]:
    arch = Architecture.model_validate_json(arch_json)
    sizes = []
    for spec in arch.components:
        module = build_on_meta(spec)
        sizes.append(measure_module(module, spec.name, spec.role))
        del module
    return tuple(sizes)


def component_sizes(arch: Architecture) -> list[ComponentSize]:
    """Every component of `arch`, built on meta and counted (cached per architecture)."""
    return list(_sizes_cached(arch.model_dump_json()))


# --- architectures of pipelines on disk ----------------------------------------------------

_ROLES = {"text_encoder": "text_encoder", "text_encoder_2": "text_encoder",
          "text_encoder_3": "text_encoder", "unet": "denoiser", "transformer": "denoiser",
          "transformer_2": "denoiser", "vae": "vae"}
_LIKE = {"StableDiffusionPipeline": "sd15", "StableDiffusionXLPipeline": "sdxl-base-1.0",
         "FluxPipeline": "flux1-dev", "WanPipeline": "wan2.2-i2v-a14b",
         "WanImageToVideoPipeline": "wan2.2-i2v-a14b", "LTX2Pipeline": "ltx-2",
         "LTXConditionPipeline": "ltx-2", "LTXPipeline": "ltx-2",
         "LTX2ConditionPipeline": "ltx-2", "LTX2ImageToVideoPipeline": "ltx-2",
         "WanVACEPipeline": "wan2.2-i2v-a14b"}


def architecture_from_dir(path: str | Path) -> Architecture:
    """A saved pipeline (`save_pretrained` layout) as an Architecture: each component's class
    from `model_index.json` and its config from its folder. Nothing but configs is read."""
    root = Path(path)
    index_file = root / "model_index.json"
    if not index_file.is_file():
        raise MemoryPlanError(f"{root}: no model_index.json (not a diffusers pipeline folder)")
    index = json.loads(index_file.read_text())
    components = []
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or entry[0] is None:
            continue
        library, class_name = entry
        config_file = root / name / "config.json"
        if library is None or not config_file.is_file():
            continue  # schedulers, tokenizers, processors: no weights
        if library != "transformers":
            library = "diffusers"  # diffusers, or one of its pipeline packages (ltx2)
        config = json.loads(config_file.read_text())
        config_class = None
        if library == "transformers":
            import transformers

            config_class = type(transformers.AutoConfig.for_model(config["model_type"])).__name__
            config = {k: v for k, v in config.items() if k not in ("architectures", "dtype")}
        components.append(ComponentSpec(
            name=name, role=_ROLES.get(name, "other"), library=library, class_name=class_name,
            config_class=config_class, config=config,
        ))
    like = ARCHITECTURES.get(_LIKE.get(index.get("_class_name", ""), ""), ARCHITECTURES["sd15"])
    return like.model_copy(update={
        "name": root.name, "pipeline_class": index.get("_class_name", ""),
        "components": components,
    })


# --- plans ---------------------------------------------------------------------------------


class Placement(BaseModel):
    """Where one component lives under a plan, and its bytes there."""

    name: str
    role: str
    bytes: int
    where: str


class MemoryPlan(BaseModel):
    """The chosen memory options for one model on one device, and the peak they predict."""

    model_config = ConfigDict(frozen=True)

    model: str
    device: str = "cpu"
    dtype: str = "bfloat16"
    budget_bytes: int | None = None  # device memory available (None: unlimited, e.g. CPU)
    host_budget_bytes: int | None = None  # RAM for offloaded weights (None: unlimited)
    offload: Offload = "none"
    use_stream: bool = False
    storage_dtype: str | None = None  # fp8 storage of the denoisers' weights
    vae_tiling: bool = False
    vae_slicing: bool = False
    peak_bytes: int = 0
    host_bytes: int = 0
    fits: bool = True
    reason: str = ""
    placements: list[Placement] = Field(default_factory=list)

    def pixel_options(self) -> dict[str, Any]:
        """Options that change the pixels: they belong in the job's key and lineage."""
        options: dict[str, Any] = {}
        if self.storage_dtype:
            options["storage_dtype"] = self.storage_dtype
        if self.vae_tiling:
            options["vae_tiling"] = True
        return options

    def runtime_options(self) -> dict[str, Any]:
        """Options that do not change the pixels: recorded in the sidecar only."""
        return {"offload": self.offload, "use_stream": self.use_stream,
                "vae_slicing": self.vae_slicing, "device": self.device}

    def summary(self) -> str:
        """One line: the options, the predicted peak against the budget."""
        parts = [{"none": "everything resident", "text_encoders": "text encoders offloaded",
                  "model": "model CPU offload", "group": "group offload (block level"
                  + (", streams)" if self.use_stream else ")")}[self.offload]]
        if self.storage_dtype:
            parts.append(f"{self.storage_dtype} storage")
        if self.vae_tiling:
            parts.append("VAE tiling")
        budget = "no limit" if self.budget_bytes is None else format_bytes(self.budget_bytes)
        verdict = "fits" if self.fits else "DOES NOT FIT"
        return (f"{self.model}: {' + '.join(parts)}; peak {format_bytes(self.peak_bytes)} "
                f"of {budget}: {verdict}")

    def describe(self) -> str:
        lines = [self.summary()]
        lines += [f"  {p.name:<15} {format_bytes(p.bytes):>9}  {p.where}" for p in self.placements]
        if self.reason:
            lines.append(f"  {self.reason}")
        return "\n".join(lines)


def resident_plan(device: str = "cpu", model: str = "", dtype: str = "float32") -> MemoryPlan:
    """Everything on `device`: what reelflow has always done, and the default on CPU."""
    return MemoryPlan(model=model, device=device, dtype=dtype)


@dataclass(frozen=True)
class _Candidate:
    offload: Offload
    tiling: bool
    fp8: bool


def _activation_bytes(arch: Architecture, work: Workload, dtype: str) -> int:
    tokens = arch.latent_tokens(work) + arch.text_tokens
    return arch.cfg_batch * tokens * arch.hidden * _BYTES[dtype] * ACTIVATION_COPIES


def _decode_bytes(arch: Architecture, work: Workload, tiling: bool) -> int:
    dtype = arch.vae_dtype or arch.dtype
    frames = work.frames if arch.vae_frames_at_once is None else arch.vae_frames_at_once
    width, height = work.width, work.height
    if tiling:
        side, length = arch.tile
        width, height, frames = min(width, side), min(height, side), min(frames, length)
    return min(frames, work.frames) * width * height * arch.vae_bytes_per_pixel * _BYTES[dtype]


def _evaluate(
    arch: Architecture,
    sizes: list[ComponentSize],
    work: Workload,
    cand: _Candidate,
    stream: bool,
) -> tuple[int, int, list[Placement]]:
    """(device peak, host bytes, placements) of one candidate."""
    dtype = arch.dtype

    def weight(c: ComponentSize) -> int:
        at = (arch.vae_dtype or dtype) if c.role == "vae" else dtype
        fp8 = FP8 if (cand.fp8 and c.role == "denoiser") else None
        return c.bytes(at, fp8)

    act = _activation_bytes(arch, work, dtype)
    decode = _decode_bytes(arch, work, cand.tiling)
    work_of = {"denoiser": act, "vae": decode}
    placements: list[Placement] = []
    host = 0
    if cand.offload in ("none", "text_encoders"):
        offloaded = [c for c in sizes if cand.offload == "text_encoders"
                     and c.role == "text_encoder"]
        resident = [c for c in sizes if c not in offloaded]
        base = sum(weight(c) for c in resident)
        peak = base + max([act, decode, *(weight(c) for c in offloaded)])
        host = sum(weight(c) for c in offloaded)
        for c in sizes:
            where = "cpu, on the device while encoding" if c in offloaded else "device"
            placements.append(Placement(name=c.name, role=c.role, bytes=weight(c), where=where))
    elif cand.offload == "model":
        peak = max(weight(c) + work_of.get(c.role, 0) for c in sizes)
        host = sum(weight(c) for c in sizes)
        placements = [Placement(name=c.name, role=c.role, bytes=weight(c),
                                where="cpu, on the device while it runs") for c in sizes]
    else:  # group: denoisers block by block, text encoders layer by layer, the rest whole
        phases = []
        for c in sizes:
            fp8_ratio = weight(c) / max(1, c.bytes(dtype))
            if c.role == "denoiser":
                on = int(c.block_peak(dtype, stream) * fp8_ratio)
                where = "cpu, streamed to the device block by block"
            elif c.role == "text_encoder":
                on = c.leaf_peak(dtype, stream)
                where = "cpu, streamed to the device layer by layer"
            else:
                on = weight(c)
                where = "cpu, on the device while it runs"
            phases.append(on + work_of.get(c.role, 0))
            placements.append(Placement(name=c.name, role=c.role, bytes=weight(c), where=where))
        peak = max(phases)
        host = sum(weight(c) for c in sizes)
    return peak + RESERVE_BYTES, host, placements


def plan_memory(
    arch: Architecture | str,
    *,
    budget: int | str | None = None,
    host_budget: int | str | None = None,
    device: str = "cuda",
    work: Workload | None = None,
    pin: dict[str, Any] | None = None,
) -> MemoryPlan:
    """The most preferred plan whose predicted peak fits `budget` (device memory free) and whose
    offloaded weights fit `host_budget` (RAM). None of them fitting gives the smallest-peak plan
    with `fits=False` and the reason. `pin` fixes choices a profile insists on: `offload`,
    `fp8` (bool), `vae_tiling` (bool)."""
    if isinstance(arch, str):
        if arch not in ARCHITECTURES:
            raise MemoryPlanError(f"unknown architecture {arch!r} (known: {sorted(ARCHITECTURES)})")
        arch = ARCHITECTURES[arch]
    work = work or arch.default_workload
    budget_bytes = None if budget is None else parse_memory(budget)
    host_bytes = None if host_budget is None else parse_memory(host_budget)
    stream = device.startswith("cuda")
    sizes = component_sizes(arch)
    pin = pin or {}
    # on a CPU the weights are in RAM already: offloading moves nothing
    offloads = OFFLOADS if device != "cpu" else ("none",)
    candidates = [
        _Candidate(offload, tiling, fp8)
        for fp8, tiling in ((False, False), (False, True), (True, False), (True, True))
        for offload in offloads
        if pin.get("offload", offload) == offload
        and pin.get("fp8", fp8) == fp8
        and pin.get("vae_tiling", tiling) == tiling
    ]
    if not candidates:
        raise MemoryPlanError(f"pinned memory options {pin} name no plan")
    evaluated = []
    for cand in candidates:
        peak, host, placements = _evaluate(arch, sizes, work, cand, stream)
        fits = (budget_bytes is None or peak <= budget_bytes) and (
            host_bytes is None or host <= host_bytes)
        evaluated.append((cand, peak, host, placements, fits))
        if fits:
            break
    cand, peak, host, placements, fits = (
        evaluated[-1] if evaluated[-1][4] else min(evaluated, key=lambda e: e[1]))
    reason = ""
    if not fits:
        need = []
        if budget_bytes is not None and peak > budget_bytes:
            need.append(f"device memory: the smallest plan peaks at {format_bytes(peak)}, "
                        f"{format_bytes(budget_bytes)} available")
        if host_bytes is not None and host > host_bytes:
            need.append(f"RAM: offloaded weights need {format_bytes(host)}, "
                        f"{format_bytes(host_bytes)} available")
        reason = "does not fit: " + "; ".join(need)
    return MemoryPlan(
        model=arch.name, device=device, dtype=arch.dtype, budget_bytes=budget_bytes,
        host_budget_bytes=host_bytes, offload=cand.offload,
        use_stream=stream and cand.offload == "group",
        storage_dtype=FP8 if cand.fp8 else None, vae_tiling=cand.tiling,
        vae_slicing=cand.tiling, peak_bytes=peak, host_bytes=host, fits=fits, reason=reason,
        placements=placements,
    )


def device_budget(device: str, given: int | str | None = None) -> int | None:
    """Free memory of `device`: what CUDA reports where it exists, else `given` (None: no
    limit, as on a CPU where the model sits in RAM anyway)."""
    if given is not None:
        return parse_memory(given)
    if device.startswith("cuda") and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    return None


def host_budget(given: int | str | None = None) -> int | None:
    if given is not None:
        return parse_memory(given)
    import psutil

    return int(psutil.virtual_memory().available)


# --- applying a plan -----------------------------------------------------------------------

_TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")
_DENOISERS = ("unet", "transformer", "transformer_2")


def _module(pipe: Any, name: str) -> torch.nn.Module | None:
    module = getattr(pipe, name, None)
    return module if isinstance(module, torch.nn.Module) else None


def _group_offload(module: torch.nn.Module, device: torch.device, kind: str, stream: bool) -> None:
    from diffusers.hooks import apply_group_offloading

    kwargs: dict[str, Any] = {"onload_device": device, "offload_device": torch.device("cpu"),
                              "offload_type": kind, "use_stream": stream}
    if kind == "block_level":
        kwargs["num_blocks_per_group"] = 1
    apply_group_offloading(module, **kwargs)


def apply_memory_plan(pipe: Any, plan: MemoryPlan) -> Any:
    """Put `plan` into effect on a freshly loaded diffusers pipeline; returns the pipeline.

    fp8 storage first (the hooks cast each layer's weights to the compute dtype as it runs),
    then placement, then the VAE's tiling and slicing."""
    device = torch.device(plan.device)
    if plan.storage_dtype:
        for name in _DENOISERS:
            module = _module(pipe, name)
            if module is not None:
                module.enable_layerwise_casting(
                    storage_dtype=getattr(torch, plan.storage_dtype), compute_dtype=module.dtype)
    if plan.offload == "none":
        pipe.to(device)
    elif plan.offload == "text_encoders":
        for name, component in pipe.components.items():
            if not isinstance(component, torch.nn.Module):
                continue
            if name in _TEXT_ENCODERS:
                # block level on a text encoder = the whole model onloaded for its forward and
                # offloaded after it (its layers sit below the top level)
                _group_offload(component, device, "block_level", stream=False)
            else:
                component.to(device)
    elif plan.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    else:
        for name, component in pipe.components.items():
            if not isinstance(component, torch.nn.Module):
                continue
            kind = "leaf_level" if name in _TEXT_ENCODERS else "block_level"
            _group_offload(component, device, kind, stream=plan.use_stream)
    vae = _module(pipe, "vae")
    if vae is not None:
        if plan.vae_tiling and hasattr(vae, "enable_tiling"):
            vae.enable_tiling()
        if plan.vae_slicing and hasattr(vae, "enable_slicing"):
            vae.enable_slicing()
    log_plan_once(plan)
    return pipe


_LOGGED: set[str] = set()
_LOGGED_LOCK = threading.Lock()


def log_plan_once(plan: MemoryPlan) -> bool:
    """Log a plan the first time this process applies it: a worker's log names its plan once,
    not once per shot (pipelines are loaded once per process). True when this call logged."""
    line = plan.summary()
    with _LOGGED_LOCK:
        if line in _LOGGED:
            return False
        _LOGGED.add(line)
    log.info("memory plan: %s", line)
    return True
