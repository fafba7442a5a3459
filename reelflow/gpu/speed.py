"""Speed options with a quality guard: one of diffusers' caches on the transformer, and
regional compilation of its repeated blocks.

A cache skips parts of the denoiser's forward passes when they would change little; how little
depends on the model, the prompt and the step count, so no setting is safe for every run. The
guard renders the run's first clip with and without the cache and keeps the cache only when the
picture stays close (PSNR at or above `guard_psnr` dB); otherwise it is off for the whole run.
Both figures go into every clip's lineage and the clips review.

Compilation (`compile_repeated_blocks`) compiles one transformer block and reuses it for the
others: minutes saved on a long run on CUDA, nothing but compile time on a CPU, where it is
skipped and the reason recorded.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

CacheKind = Literal["first-block", "taylorseer", "pab"]


class CacheGuard(BaseModel):
    """What the guard measured on the run's first clip, and what it decided."""

    model_config = ConfigDict(frozen=True)

    shot: str  # the clip it was measured on
    psnr: float  # dB, the cached render against the plain one (IDENTICAL_PSNR: identical)
    threshold: float  # guard_psnr: at or above it the cache is kept
    kept: bool
    seconds_plain: float
    seconds_cached: float
    reason: str = ""  # why the cache could not run at all (a model without its hooks)

    def line(self) -> str:
        """One line for the review."""
        if self.reason:
            return f"cache guard on shot {self.shot}: cache turned OFF for the run: {self.reason}"
        psnr = "identical" if self.psnr >= IDENTICAL_PSNR else f"PSNR {self.psnr:.1f} dB"
        verdict = "kept for the run" if self.kept else "turned OFF for the run"
        return (f"cache guard on shot {self.shot}: {psnr} against the plain render "
                f"(threshold {self.threshold:g} dB): cache {verdict}; "
                f"{self.seconds_cached:.1f} s cached vs {self.seconds_plain:.1f} s plain")


class SpeedOptions(BaseModel):
    """A profile's or video-model block's `speed` option (inside its backend options)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cache: CacheKind | None = None
    cache_threshold: float = Field(0.05, gt=0, description="first-block: residual change "
                                   "under which the other blocks are skipped")
    guard_psnr: float = Field(30.0, description="dB; the cache is kept at or above it")
    compile: bool = False
    guard: CacheGuard | None = None  # filled by the guard before the run's clips are keyed

    def cache_active(self) -> bool:
        """The cache runs only once the guard has kept it."""
        return self.cache is not None and self.guard is not None and self.guard.kept


#: the PSNR of identical pictures (JSON has no infinity; 100 dB is beyond any 8-bit difference)
IDENTICAL_PSNR = 100.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 pictures (or frame stacks), in dB, at most
    `IDENTICAL_PSNR` (equal pictures)."""
    if a.shape != b.shape:
        raise ValueError(f"PSNR of different shapes: {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return IDENTICAL_PSNR if mse == 0 else min(IDENTICAL_PSNR, 10 * math.log10(255.0**2 / mse))


def supports_cache(transformer: Any) -> bool:
    """The denoiser has diffusers' cache hooks (Flux, LTX, LTX-2, Wan...; not the SD UNet)."""
    return callable(getattr(transformer, "enable_cache", None))


def cache_config(options: SpeedOptions, pipe: Any) -> Any:
    """diffusers' config object for the option's cache."""
    from diffusers import (
        FirstBlockCacheConfig,
        PyramidAttentionBroadcastConfig,
        TaylorSeerCacheConfig,
    )

    if options.cache == "first-block":
        return FirstBlockCacheConfig(threshold=options.cache_threshold)
    if options.cache == "taylorseer":
        return TaylorSeerCacheConfig()
    if options.cache == "pab":
        return PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=2,
            current_timestep_callback=lambda: pipe.current_timestep,
        )
    raise ValueError(f"speed.cache: {options.cache!r} is not a known cache")


_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _lock(transformer: Any) -> threading.RLock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(transformer, threading.RLock())


@contextmanager
def cache_state(pipe: Any, options: SpeedOptions | None, *, force: bool | None = None
                ) -> Iterator[bool]:
    """The pipeline's transformer with the cache on (when the options' guard kept it, or
    `force`) or off, for the duration of the block; yields whether it is on. The transformer is
    shared by every job of the process, so the state is held under its lock."""
    transformer = getattr(pipe, "transformer", None)
    wanted = options is not None and options.cache is not None and (
        options.cache_active() if force is None else force)
    if transformer is None or not supports_cache(transformer):
        if wanted:
            raise ValueError(f"speed.cache: {type(transformer).__name__} has no cache hooks")
        yield False
        return
    with _lock(transformer):
        if transformer.is_cache_enabled:
            transformer.disable_cache()
        if wanted:
            assert options is not None
            transformer.enable_cache(cache_config(options, pipe))
        try:
            yield wanted
        finally:
            if transformer.is_cache_enabled:
                transformer.disable_cache()


_COMPILED: weakref.WeakSet[Any] = weakref.WeakSet()


def compile_blocks(pipe: Any, options: SpeedOptions | None, device: str) -> str | None:
    """Compile the transformer's repeated blocks once per process; returns what happened (for
    the lineage), None when not asked."""
    if options is None or not options.compile:
        return None
    transformer = getattr(pipe, "transformer", None)
    if transformer is None or not getattr(transformer, "_repeated_blocks", None):
        return f"skipped: {type(transformer).__name__} declares no repeated blocks"
    if not device.startswith("cuda"):
        return f"skipped on {device}: compiling pays off only on a CUDA device"
    with _lock(transformer):
        if transformer not in _COMPILED:
            transformer.compile_repeated_blocks(fullgraph=True)
            _COMPILED.add(transformer)
    return "compiled repeated blocks"
