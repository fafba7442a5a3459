"""Resident diffusers pipelines: one load per model per worker process.

Loading a real checkpoint takes tens of seconds and several GB, so a worker keeps each base
pipeline in memory, keyed by (model, dtype, device), and derives the img2img, inpaint and ControlNet
variants from it with `from_pipe`, which shares the weights instead of loading them again. LoRA
stacks are switched on the resident model with `load_lora_weights` (once per file) and
`set_adapters`, so changing the stack between shots never reloads the base model.

Prefect runs tasks in threads, so each base model has a lock: hold `cache.lock(source)` around
"apply LoRAs, then call the pipeline", or two shots can switch adapters under each other.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch

from reelflow.gpu.memory import MemoryPlan, apply_memory_plan
from reelflow.gpu.pins import memory_json, plan_for
from reelflow.imaging.models import (
    LoraError,
    LoraSpec,
    ModelLoadError,
    ModelNotFoundError,
    ModelSource,
)
from reelflow.progress import step

log = logging.getLogger(__name__)

Task = Literal["text2image", "img2img", "inpaint", "controlnet"]

# The diffusers classes for each family and task; `controlnet_model` is the ControlNet itself.
PIPELINE_CLASSES: dict[str, dict[str, str]] = {
    "sd15": {
        "text2image": "StableDiffusionPipeline",
        "img2img": "StableDiffusionImg2ImgPipeline",
        "inpaint": "StableDiffusionInpaintPipeline",
        "controlnet": "StableDiffusionControlNetPipeline",
        "controlnet_model": "ControlNetModel",
    },
    "sdxl": {
        "text2image": "StableDiffusionXLPipeline",
        "img2img": "StableDiffusionXLImg2ImgPipeline",
        "inpaint": "StableDiffusionXLInpaintPipeline",
        "controlnet": "StableDiffusionXLControlNetPipeline",
        "controlnet_model": "ControlNetModel",
    },
    "flux": {
        "text2image": "FluxPipeline",
        "img2img": "FluxImg2ImgPipeline",
        "inpaint": "FluxInpaintPipeline",
        "controlnet": "FluxControlNetPipeline",
        "controlnet_model": "FluxControlNetModel",
    },
}

# family, location, config, dtype, device, stat fingerprint of the files, pinned memory choices
CacheKey = tuple[str, str, str | None, str, str, str, str]


def _fingerprint(where: str) -> str:
    """Sizes and mtimes of a model's files: a folder or checkpoint overwritten in place (a
    retrained model) is loaded again instead of served from memory under its new hash."""
    path = Path(where)
    if not path.exists():  # a hub id: its snapshot folder is immutable
        return ""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stats = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return hashlib.sha1(repr(stats).encode()).hexdigest()[:16]


def _diffusers_class(name: str) -> Any:
    import diffusers

    return getattr(diffusers, name)


def _first_line(error: BaseException) -> str:
    """One line for an error: its first line, plus the first detail line when that is a header."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    text = lines[0]
    if text.endswith(":") and len(lines) > 1:
        text = f"{text} {lines[1]}"
    return text if len(text) <= 240 else text[:237] + "..."


def euler_scheduler(pipe: Any) -> Any:
    """A fresh Euler scheduler from the pipeline's own config (SD/SDXL; Flux keeps flow-match).

    Each derived pipeline gets its own scheduler object: schedulers keep per-run state
    (timesteps, step index), so sharing one across pipelines is a race waiting to happen.
    """
    from diffusers import EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler

    if isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler):
        return FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    return EulerDiscreteScheduler.from_config(pipe.scheduler.config)


class _LazyCheckpoint(Mapping[str, torch.Tensor]):
    """A safetensors file as a mapping that reads a tensor only when asked.

    Used to detect a single-file checkpoint's default config without reading gigabytes twice.
    """

    def __init__(self, path: str) -> None:
        from safetensors import safe_open

        self._file = safe_open(path, framework="pt")
        self._keys = list(self._file.keys())
        self._key_set = set(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._key_set

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._key_set:
            raise KeyError(key)
        return self._file.get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def _single_file_config(source: ModelSource, path: str) -> str:
    """The diffusers config (directory or cached hub id) a single-file checkpoint is loaded with.

    `from_single_file` without a config fetches one from the hub, and with `local_files_only`
    and nothing cached it silently switches downloads back on; so the config is settled here.
    """
    if source.config:
        return source.config
    if not path.endswith(".safetensors"):
        raise ModelNotFoundError(f"model {source.source} needs config=<diffusers dir or hub id>")
    from diffusers.loaders.single_file_utils import fetch_diffusers_config

    from reelflow.imaging.models import _in_hub_cache

    repo = fetch_diffusers_config(_LazyCheckpoint(path))["pretrained_model_name_or_path"]
    if not _in_hub_cache(repo):
        raise ModelNotFoundError(
            f"model {source.source} needs config=<diffusers dir or cached hub id> "
            f"(its default config {repo} is not cached)"
        )
    return repo


# A diffusers pipeline class name tells the family: checked before loading, because a mismatch
# (an SDXL directory declared as sd15) otherwise loads with warnings and fails mid-generation.
_FAMILY_PREFIXES = {"sdxl": ("StableDiffusionXL",), "flux": ("Flux",), "sd15": ("StableDiffusion",)}


def _check_family(source: ModelSource, kind: str, where: str) -> None:
    if kind == "directory":
        index = Path(where) / "model_index.json"
    elif kind == "hub":
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(where, "model_index.json")
        index = Path(found) if isinstance(found, str) else Path("/nonexistent")
    else:
        return
    if not index.is_file():
        raise ModelLoadError(f"model {source.source} has no model_index.json (not a pipeline)")
    import json

    class_name = str(json.loads(index.read_text()).get("_class_name", ""))
    detected = next(
        (
            family
            for family, prefixes in _FAMILY_PREFIXES.items()
            if class_name.startswith(prefixes)
        ),
        None,
    )
    if detected != source.family:
        raise ModelLoadError(
            f"model {source.source} is a {class_name or 'unknown pipeline'}, "
            f"not family {source.family}"
        )


def _gguf_transformer(source: ModelSource, kind: str, where: str) -> dict[str, Any]:
    """`{"transformer": ...}` from the GGUF file the model's memory pins name, else nothing."""
    gguf = source.memory.get("gguf")
    if not gguf:
        return {}
    if kind != "directory":
        raise ModelLoadError(f"model {source.source}: memory.gguf needs the model as a "
                             "diffusers folder (its transformer config)")
    if not Path(gguf).is_file():
        raise ModelNotFoundError(f"memory.gguf: GGUF file not found: {gguf}")
    from reelflow.gpu.quantized import load_gguf_transformer

    return {"transformer": load_gguf_transformer(gguf, where, source.torch_dtype())}


class PipelineCache:
    """Base pipelines by (model, dtype, device) and the pipelines derived from them.

    `loads` counts real base-model loads; each one logs `loaded model X (load #N)`.
    """

    def __init__(self, memory_plan: MemoryPlan | None = None) -> None:
        #: applied to every base pipeline this cache loads; None: everything resident on the
        #: model's device (what a CPU worker and today's renders do)
        self.memory_plan = memory_plan
        self.loads = 0
        self._bases: dict[CacheKey, Any] = {}
        self._derived: dict[tuple[CacheKey, str, str], Any] = {}
        self._controlnets: dict[tuple[str, str, str, str], Any] = {}
        self._locks: dict[CacheKey, threading.RLock] = {}
        self._guard = threading.RLock()

    def key(self, source: ModelSource) -> CacheKey:
        _, where = source.locate()
        return (source.family, where, source.config, source.dtype, source.resolved_device(),
                _fingerprint(where), memory_json(source.memory))

    @contextmanager
    def lock(self, source: ModelSource) -> Iterator[None]:
        """Serialise use of one base model (and everything derived from it)."""
        key = self.key(source)
        with self._guard:
            lock = self._locks.setdefault(key, threading.RLock())
        with lock:
            yield

    def text2image(self, source: ModelSource) -> Any:
        """The resident base pipeline, loading it on first use."""
        key = self.key(source)
        with self._guard:
            if key not in self._bases:
                changed = [k for k in self._bases if k[:5] == key[:5] and k[6:] == key[6:]]
                for old in changed:  # changed on disk
                    del self._bases[old]
                    for derived in [d for d in self._derived if d[0] == old]:
                        del self._derived[derived]
                self._bases[key] = self._load(source)
            return self._bases[key]

    def adopt(self, source: ModelSource, pipe: Any) -> None:
        """Serve `pipe` as the base pipeline of `source` without loading it: the GPU benchmark
        builds full-size models with random weights in memory, and times reelflow's steps on
        them (`source` must name a folder with the pipeline's model_index.json)."""
        key = self.key(source)
        with self._guard:
            pipe.scheduler = euler_scheduler(pipe)
            pipe.set_progress_bar_config(disable=True)
            self._bases[key] = pipe

    def img2img(self, source: ModelSource) -> Any:
        return self._derive(source, "img2img")

    def inpaint(self, source: ModelSource) -> Any:
        return self._derive(source, "inpaint")

    def controlnet(self, source: ModelSource, controlnet_path: str | Path) -> Any:
        """The base model with a ControlNet attached; the ControlNet is loaded once per path."""
        return self._derive(source, "controlnet", str(Path(controlnet_path).resolve()))

    def clear(self) -> None:
        """Drop every resident pipeline (and free GPU memory); `loads` keeps counting."""
        with self._guard:
            self._bases.clear()
            self._derived.clear()
            self._controlnets.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _derive(self, source: ModelSource, task: Task, extra: str = "") -> Any:
        key = self.key(source)
        with self._guard:
            if (key, task, extra) in self._derived:
                return self._derived[(key, task, extra)]
            base = self.text2image(source)
            cls = _diffusers_class(PIPELINE_CLASSES[source.family][task])
            components: dict[str, Any] = {"scheduler": euler_scheduler(base)}
            if task == "controlnet":
                components["controlnet"] = self._load_controlnet(source, extra)
            # from_pipe casts every module to its dtype argument (float32 by default); the
            # modules are shared with the base pipeline, so pass the base's own dtype.
            from reelflow.gpu.quantized import derive_pipeline  # a GGUF transformer: no cast

            pipe = derive_pipeline(cls, base, source.torch_dtype(), **components)
            pipe.set_progress_bar_config(disable=True)
            self._derived[(key, task, extra)] = pipe
            return pipe

    def _load_controlnet(self, source: ModelSource, path: str) -> Any:
        ckey = (source.family, path, source.dtype, source.resolved_device(), _fingerprint(path))
        if ckey not in self._controlnets:
            if not Path(path).exists():
                raise ModelNotFoundError(f"ControlNet not found: {path}")
            cls = _diffusers_class(PIPELINE_CLASSES[source.family]["controlnet_model"])
            if Path(path).is_file():
                model = cls.from_single_file(path, dtype=source.torch_dtype())
            else:
                model = cls.from_pretrained(path, dtype=source.torch_dtype(), local_files_only=True)
            self._controlnets[ckey] = model.to(source.resolved_device())
            log.info("loaded ControlNet %s", path)
        return self._controlnets[ckey]

    def _load(self, source: ModelSource) -> Any:
        with step("loading model", source.source):  # tens of seconds for a real checkpoint
            return self._load_now(source)

    def _load_now(self, source: ModelSource) -> Any:
        kind, where = source.locate()
        _check_family(source, kind, where)
        cls = _diffusers_class(PIPELINE_CLASSES[source.family]["text2image"])
        dtype = source.torch_dtype()
        try:
            if kind == "single_file":
                pipe = cls.from_single_file(
                    where,
                    config=_single_file_config(source, where),
                    dtype=dtype,
                    local_files_only=True,
                )
            else:
                pipe = cls.from_pretrained(where, dtype=dtype, local_files_only=True,
                                           **_gguf_transformer(source, kind, where))
        except (ModelNotFoundError, ModelLoadError):
            raise
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as error:
            raise ModelLoadError(
                f"model {source.source} could not be loaded as {source.family}: "
                f"{_first_line(error)}"
            ) from error
        pipe.scheduler = euler_scheduler(pipe)
        pipe.set_progress_bar_config(disable=True)
        plan = self.memory_plan or plan_for(
            source.resolved_device(), where, source.dtype, source.memory, model=source.source)
        apply_memory_plan(pipe, plan)
        self.loads += 1
        log.info("loaded model %s (load #%d)", source.source, self.loads)
        return pipe


_CACHE = PipelineCache()


def get_pipeline_cache() -> PipelineCache:
    """The process-wide cache: a render worker keeps its models for its whole life."""
    return _CACHE


# --- LoRA stacks ---------------------------------------------------------------------------

# Adapters live on the denoiser, which `from_pipe` shares between the base pipeline and its
# derivatives; tracking them by module means an adapter loaded through one is known to all.
_LOADED: weakref.WeakKeyDictionary[torch.nn.Module, dict[str, Path]] = weakref.WeakKeyDictionary()
# The stat of each loaded LoRA file: a file overwritten with new weights (a retrained LoRA) is
# reloaded, so a long-lived worker never renders the old weights under the new content hash.
_STATS: weakref.WeakKeyDictionary[torch.nn.Module, dict[str, tuple[int, ...]]] = (
    weakref.WeakKeyDictionary()
)


def _stat(path: Path) -> tuple[int, ...]:
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _denoiser(pipe: Any) -> torch.nn.Module:
    return pipe.transformer if getattr(pipe, "transformer", None) is not None else pipe.unet


def _adapter_names(pipe: Any) -> set[str]:
    return {name for names in pipe.get_list_adapters().values() for name in names}


def loaded_loras(pipe: Any) -> dict[str, Path]:
    """Adapter name -> LoRA file, for the adapters loaded into this pipeline's model."""
    return dict(_LOADED.get(_denoiser(pipe), {}))


def apply_loras(pipe: Any, loras: Sequence[LoraSpec]) -> None:
    """Make exactly `loras` (with their weights) active on `pipe`; an empty list disables LoRA.

    Each file is read once (`load_lora_weights`); later stacks only call `set_adapters`, which
    re-weights the already injected layers, so switching costs milliseconds, not a model load.
    Errors are one line naming the file: missing, or not fitting the model.
    """
    loaded = _LOADED.setdefault(_denoiser(pipe), {})
    stats = _STATS.setdefault(_denoiser(pipe), {})
    for spec in loras:
        path = spec.checked_path()
        name = spec.adapter_name()
        if name in loaded and loaded[name] == path and stats.get(name) != _stat(path):
            pipe.delete_adapters(name)  # the file changed since it was loaded
            del loaded[name]
            log.info("LoRA %s changed on disk: reloading adapter %s", path, name)
        if name in loaded:
            if loaded[name] != path:
                raise LoraError(
                    f"LoRA adapter name {name!r} is already used by {loaded[name]}: {spec.path}"
                )
            continue
        try:
            pipe.load_lora_weights(str(path), adapter_name=name)
        except Exception as error:  # peft/diffusers raise many types for a mismatched file
            if name in _adapter_names(pipe):
                pipe.delete_adapters(name)
            raise LoraError(
                f"LoRA does not fit the model: {spec.path} ({_first_line(error)})"
            ) from error
        if name not in _adapter_names(pipe):
            raise LoraError(f"LoRA does not fit the model: {spec.path} (no layer matched)")
        loaded[name] = path
        stats[name] = _stat(path)
        log.info("loaded LoRA %s as adapter %s", path, name)

    if not loras:
        if loaded:
            pipe.disable_lora()
        return
    pipe.enable_lora()
    pipe.set_adapters(
        [spec.adapter_name() for spec in loras],
        adapter_weights=[spec.weight for spec in loras],
    )
