"""Which image model to run, and where its weights come from.

A `ModelSource` names a model the way people have it on disk: a diffusers directory, a single
`.safetensors` checkpoint (what model sites distribute), or a hub id already in the local Hugging
Face cache. Loading never downloads: render workers run offline and a silent multi-GB download in
the middle of a batch is worse than a clear error.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from reelflow.errors import ConfigError

log = logging.getLogger(__name__)

Family = Literal["sd15", "sdxl", "flux"]
DType = Literal["float32", "float16", "bfloat16"]
SourceKind = Literal["directory", "single_file", "hub"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
_DEVICE = re.compile(r"^(cpu|cuda|cuda:\d+|mps|auto)$")


class ModelNotFoundError(ConfigError, FileNotFoundError):
    """A model source that is neither a directory, a file, nor a cached hub id."""


class ModelLoadError(ConfigError, ValueError):
    """A model that exists but cannot be loaded as the family it was declared as."""


class LoraError(ConfigError, ValueError):
    """A LoRA file that is missing or does not fit the model it is applied to."""


class ModelSource(BaseModel):
    """A base model: family, where it lives, and how to run it.

    `family` picks the pipeline classes (SD 1.5, SDXL, Flux); `source` is detected by `locate()`.
    `config` is for single-file checkpoints only: the diffusers directory (or cached hub id) whose
    component configs the checkpoint is loaded with, so loading stays offline.
    `device` is where it runs; it is left out of the spec hash (see `identity()`), because asking
    for the same image on another GPU is the same request.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    family: Family = "sd15"
    source: str = Field(min_length=1)
    dtype: DType = "float32"
    device: str = "auto"
    config: str | None = None
    #: pinned memory choices (reelflow/gpu/pins.py); empty: the worker's own plan
    memory: dict[str, Any] = Field(default_factory=dict)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"device must be cpu, cuda, cuda:N, mps or auto, not {value!r}")
        return value

    def locate(self) -> tuple[SourceKind, str]:
        """Detect what `source` is, without touching the network.

        Raises `ModelNotFoundError` with a one-line message when it is none of the three.
        """
        path = Path(self.source).expanduser()
        if path.is_dir():
            return "directory", str(path.resolve())
        if path.is_file() and path.suffix in _SINGLE_FILE_SUFFIXES:
            return "single_file", str(path.resolve())
        if _HUB_ID.match(self.source) and not path.exists() and _in_hub_cache(self.source):
            return "hub", self.source
        raise ModelNotFoundError(
            f"model not found: {self.source} (not a directory, file or cached hub id)"
        )

    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def resolved_device(self) -> str:
        """`auto` means the first CUDA GPU when there is one (a worker sees only its own GPU)."""
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device



def _in_hub_cache(repo_id: str) -> bool:
    """A hub id counts only if its pipeline index is already in the local cache."""
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model_index.json", "config.json"):
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return True
    return False


class LoraSpec(BaseModel):
    """A LoRA file applied with a weight; `name` is the adapter name (defaults to the file stem)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1)
    name: str | None = None
    weight: float = Field(1.0, ge=-4.0, le=4.0)

    def adapter_name(self) -> str:
        """peft adapter names end up as module keys, so only `[A-Za-z0-9_]` survives."""
        raw = self.name or Path(self.path).stem
        cleaned = re.sub(r"\W", "_", raw)
        return cleaned if cleaned[:1].isalpha() else f"lora_{cleaned}"

    def checked_path(self) -> Path:
        """The LoRA file, or a one-line `LoraError` naming it."""
        path = Path(self.path).expanduser()
        if not path.is_file():
            raise LoraError(f"LoRA file not found: {self.path}")
        return path.resolve()
