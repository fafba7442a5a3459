"""Sampled latents kept before the decode, and a decode that streams.

The failure users of local video models report most is the VAE decode of a long clip running
out of memory after all the sampling is done, and the sampling lost with it. So a backend that
can (``saves_latents``) samples each window with ``output_type="latent"``, hands the latents to
a :class:`LatentCache` (the clip step stores them in the bucket, keyed by the clip's job) and
only then decodes. A clip whose decode failed or was killed finds its windows' latents there
and decodes them without sampling again.

The decode itself goes through :func:`decode_in_chunks`: a few latent frames at a time (with the
VAE's own spatial tiling where enabled), each chunk's frames handed on to the encoder before the
next is decoded, so memory holds one chunk, never the clip.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "FAIL_DECODE_ENV",
    "DecodeSettings",
    "FolderLatents",
    "LatentCache",
    "decode_in_chunks",
    "injected_decode_failure",
    "read_latents",
    "write_latents",
]

#: Test hook: a path. The first decode that finds no file there creates it and fails, as a
#: decode that runs out of memory would; the next one runs (used by the resume tests).
FAIL_DECODE_ENV = "REELFLOW_FAIL_DECODE_ONCE"


class DecodeSettings(BaseModel):
    """How a clip's latents were decoded: recorded in its lineage and shown in the review."""

    model_config = ConfigDict(frozen=True)

    tiled: bool = Field(description="the VAE's spatial tiling (vae.enable_tiling())")
    temporal_chunk: int = Field(ge=1, description="latent frames decoded at once")
    context: int = Field(ge=0, description="latent frames decoded before a chunk, then dropped")
    streamed: bool = Field(True, description="frames go to the encoder chunk by chunk")

    def describe(self) -> str:
        tiles = "tiled" if self.tiled else "untiled"
        return (f"{tiles}, {self.temporal_chunk} latent frames at a time "
                f"(+{self.context} context), streamed")  # fmt: skip


class LatentCache(Protocol):
    """Where a clip's sampled latents are kept between sampling and decoding, per window."""

    def load(self, window: int) -> dict[str, Any] | None:
        """The tensors saved for ``window``, or None when it was never sampled."""
        ...

    def save(self, window: int, tensors: dict[str, Any], meta: dict[str, str]) -> None:
        """Keep ``window``'s tensors (before its decode starts)."""
        ...


def write_latents(path: Path, tensors: dict[str, Any], meta: dict[str, str]) -> Path:
    """``tensors`` as a safetensors file (CPU, contiguous) with ``meta`` in its header."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path),
              metadata=meta)  # fmt: skip
    return path


def read_latents(path: Path) -> dict[str, Any]:
    """The tensors of a file :func:`write_latents` made."""
    from safetensors.torch import load_file

    return load_file(str(path))


class FolderLatents:
    """A :class:`LatentCache` in a local folder (``window-<n>.safetensors``): for a backend
    used without a bucket, and for tests."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, window: int) -> Path:
        return self.folder / f"window-{window}.safetensors"

    def load(self, window: int) -> dict[str, Any] | None:
        path = self._path(window)
        return read_latents(path) if path.is_file() else None

    def save(self, window: int, tensors: dict[str, Any], meta: dict[str, str]) -> None:
        tmp = self._path(window).with_suffix(".part")
        write_latents(tmp, tensors, meta).replace(self._path(window))


def injected_decode_failure() -> None:
    """Fail once where :data:`FAIL_DECODE_ENV` names a marker that does not exist yet."""
    marker = os.environ.get(FAIL_DECODE_ENV)
    if marker and not Path(marker).exists():
        Path(marker).touch()
        raise RuntimeError(f"decode failed (injected by {FAIL_DECODE_ENV})")


def decode_in_chunks(
    decode: Callable[[Any], np.ndarray],
    latents: Any,
    *,
    temporal_ratio: int,
    chunk: int,
    context: int = 1,
) -> Iterator[np.ndarray]:
    """Frames of ``latents`` ([B, C, F, H, W]) decoded ``chunk`` latent frames at a time.

    ``decode`` turns a latent slice into its uint8 frames; a causal video VAE turns ``n``
    latent frames into ``1 + (n - 1) * temporal_ratio`` frames (the first latent frame is one
    picture, every later one ``temporal_ratio``). A chunk after the first also decodes the
    latent frame before it and ``context`` more, so the decoder sees what precedes the chunk,
    and drops their frames: the frames come out once each, ``1 + (F - 1) * temporal_ratio``
    in all, one chunk in memory at a time.
    """
    total = int(latents.shape[2])
    start = 0
    while start < total:
        end = min(total, start + chunk)
        lo = 0 if start == 0 else max(0, start - 1 - context)
        frames = decode(latents[:, :, lo:end])
        expected = 1 + (end - 1 - lo) * temporal_ratio
        if frames.shape[0] != expected:
            raise RuntimeError(f"the VAE decoded {frames.shape[0]} frames from latent frames "
                               f"{lo}..{end - 1}, not {expected}")  # fmt: skip
        drop = 0 if start == 0 else (start - 1 - lo) * temporal_ratio + 1
        yield from frames[drop:]
        del frames
        injected_decode_failure()
        start = end
