"""Speed options with a quality guard: one of diffusers' caches on the transformer, and
regional compilation of its repeated blocks.

A cache skips parts of the denoiser's forward passes when they would change little; how little
depends on the model, the prompt and the step count, so no setting is safe for every run. The
guard renders the run's first clip (or image) with and without the cache and keeps the cache
only when the picture stays close (PSNR at or above `guard_psnr` dB); otherwise it is off for
the whole run. On a shot that shows a library character the identity score decides instead (the
identity gate's scorer: the cached render must still look like the character, at or above
`guard_identity`), the PSNR recorded beside it. The figures go into every clip's or image's
lineage and the review; the key holds only what changes pixels (the cache, once kept).

Which caches apply (diffusers 0.42.1): every one on a transformer with cache hooks
(`enable_cache`: Flux, LTX, LTX-2, Wan, SkyReels-V2...); on the SD 1.5 / SDXL UNet, which has
none, Pyramid Attention Broadcast only (its hook wraps any diffusers attention layer, here the
self-attention of the UNet's transformer blocks); First Block Cache and TaylorSeer need a
transformer's block list, so on a UNet the guard turns them off and says why.

Compilation (`compile_repeated_blocks`) compiles one transformer block and reuses it for the
others: minutes saved on a long run on CUDA, nothing but compile time on a CPU, where it is
skipped and the reason recorded.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

CacheKind = Literal["first-block", "taylorseer", "pab"]


class CacheGuard(BaseModel):
    """What the guard measured on the run's first clip or image, and what it decided."""

    model_config = ConfigDict(frozen=True)

    shot: str  # the clip or image it was measured on
    psnr: float  # dB, the cached render against the plain one (IDENTICAL_PSNR: identical)
    threshold: float  # guard_psnr: at or above it the cache is kept (when the PSNR decides)
    kept: bool
    seconds_plain: float
    seconds_cached: float
    reason: str = ""  # why the cache could not run at all (a model without its hooks)
    #: what decided: the PSNR, or on a shot with library characters their identity score
    measure: Literal["psnr", "identity"] = "psnr"
    identity_plain: float | None = None  # 0..1, the weakest character's, plain render
    identity_cached: float | None = None  # ... and cached render
    identity_threshold: float | None = None  # the cached render's score must reach it

    def line(self) -> str:
        """One line for the review."""
        if self.reason:
            return f"cache guard on shot {self.shot}: cache turned OFF for the run: {self.reason}"
        psnr = "identical" if self.psnr >= IDENTICAL_PSNR else f"PSNR {self.psnr:.1f} dB"
        verdict = "kept for the run" if self.kept else "turned OFF for the run"
        timing = f"{self.seconds_cached:.1f} s cached vs {self.seconds_plain:.1f} s plain"
        if self.measure == "identity":
            return (f"cache guard on shot {self.shot} (library character: the identity score "
                    f"decides): identity {self.identity_cached:.2f} cached vs "
                    f"{self.identity_plain:.2f} plain (threshold {self.identity_threshold:.2f}), "
                    f"{psnr} against the plain render: cache {verdict}; {timing}")
        return (f"cache guard on shot {self.shot} (the PSNR decides): {psnr} against the plain "
                f"render (threshold {self.threshold:g} dB): cache {verdict}; {timing}")


class SpeedOptions(BaseModel):
    """A profile's or video-model block's `speed` option (inside its backend options)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cache: CacheKind | None = None
    cache_threshold: float = Field(0.05, gt=0, description="first-block: residual change "
                                   "under which the other blocks are skipped")
    guard_psnr: float = Field(30.0, description="dB; the cache is kept at or above it")
    guard_identity: float | None = Field(
        None, description="a shot with library characters: the cached render's identity score "
        "(0..1) must reach it; unset: the run's identity threshold")
    compile: bool = False
    guard: CacheGuard | None = None  # filled by the guard before the run's clips are keyed

    def cache_active(self) -> bool:
        """The cache runs only once the guard has kept it."""
        return self.cache is not None and self.guard is not None and self.guard.kept


#: the identity gate's default threshold (reelflow.render.identity.IDENTITY_THRESHOLD), for a
#: guard called without the run's
IDENTITY_GATE_THRESHOLD = 0.35

#: the PSNR of identical pictures (JSON has no infinity; 100 dB is beyond any 8-bit difference)
IDENTICAL_PSNR = 100.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 pictures (or frame stacks), in dB, at most
    `IDENTICAL_PSNR` (equal pictures)."""
    if a.shape != b.shape:
        raise ValueError(f"PSNR of different shapes: {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return IDENTICAL_PSNR if mse == 0 else min(IDENTICAL_PSNR, 10 * math.log10(255.0**2 / mse))


def denoiser(pipe: Any) -> Any:
    """The pipeline's transformer, else its UNet (SD 1.5, SDXL); None for neither."""
    transformer = getattr(pipe, "transformer", None)
    return transformer if transformer is not None else getattr(pipe, "unet", None)


def supports_cache(model: Any, kind: CacheKind | None = None) -> bool:
    """The denoiser takes the cache: any of them on a model with diffusers' cache hooks (Flux,
    LTX, LTX-2, Wan...); Pyramid Attention Broadcast on the SD UNet too (module docstring)."""
    if callable(getattr(model, "enable_cache", None)):
        return True
    return kind == "pab" and type(model).__name__.startswith("UNet")


def _timestep(pipe: Any) -> Callable[[], Any]:
    """The current denoising timestep, as Pyramid Attention Broadcast asks for it. A pipeline
    that keeps none (SD, SDXL) is read through its scheduler: before the first step of a call
    it answers a timestep outside every skip range, so each call computes its first step and
    never reuses attention kept from another call."""
    if hasattr(type(pipe), "current_timestep"):
        return lambda: pipe.current_timestep

    def from_scheduler() -> float:
        scheduler = pipe.scheduler
        index = getattr(scheduler, "step_index", None)
        if index is None or index >= len(scheduler.timesteps):
            return math.inf
        return float(scheduler.timesteps[index])

    return from_scheduler


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
            current_timestep_callback=_timestep(pipe),
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
    """The pipeline's denoiser with the cache on (when the options' guard kept it, or
    `force`) or off, for the duration of the block; yields whether it is on. The denoiser is
    shared by every job of the process, so the state is held under its lock."""
    model = denoiser(pipe)
    kind = options.cache if options is not None else None
    wanted = options is not None and options.cache is not None and (
        options.cache_active() if force is None else force)
    if model is None or not supports_cache(model, kind):
        if wanted:
            what = "no cache hooks" if kind == "pab" else f"no hooks for the {kind} cache"
            raise ValueError(f"speed.cache: {type(model).__name__} has {what} in diffusers")
        yield False
        return
    with _lock(model):
        _cache_off(model)
        if wanted:
            assert options is not None
            if callable(getattr(model, "enable_cache", None)):
                model.enable_cache(cache_config(options, pipe))
            else:  # the SD UNet: the attention hook itself
                from diffusers.hooks import apply_pyramid_attention_broadcast

                apply_pyramid_attention_broadcast(model, cache_config(options, pipe))
        try:
            yield wanted
        finally:
            _cache_off(model)


def _cache_off(model: Any) -> None:
    """Remove whatever cache the denoiser has on."""
    if callable(getattr(model, "enable_cache", None)):
        if model.is_cache_enabled:
            model.disable_cache()
        return
    if not any(hasattr(module, "_diffusers_hook") for module in model.modules()):
        return
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.pyramid_attention_broadcast import _PYRAMID_ATTENTION_BROADCAST_HOOK

    registry = HookRegistry.check_if_exists_or_initialize(model)
    registry.remove_hook(_PYRAMID_ATTENTION_BROADCAST_HOOK, recurse=True)
    registry.invalidate_child_registries_cache()


_COMPILED: weakref.WeakSet[Any] = weakref.WeakSet()


def compile_blocks(pipe: Any, options: SpeedOptions | None, device: str) -> str | None:
    """Compile the transformer's repeated blocks once per process; returns what happened (for
    the lineage), None when not asked."""
    if options is None or not options.compile:
        return None
    model = denoiser(pipe)
    if model is None or not getattr(model, "_repeated_blocks", None):
        return f"skipped: {type(model).__name__} declares no repeated blocks"
    if not device.startswith("cuda"):
        return f"skipped on {device}: compiling pays off only on a CUDA device"
    with _lock(model):
        if model not in _COMPILED:
            model.compile_repeated_blocks(fullgraph=True)
            _COMPILED.add(model)
    return "compiled repeated blocks"


def run_guard(
    shot: str,
    options: SpeedOptions,
    render: Callable[[bool], np.ndarray],
    *,
    identity: Callable[[np.ndarray], float] | None = None,
    identity_threshold: float | None = None,
) -> CacheGuard:
    """The guard's two renders and its decision. `render(cached)` makes the picture (uint8; a
    clip's frames stacked) without, then with, the cache. `identity`, on a shot with library
    characters, scores a picture against them (the weakest character's score): the cached
    render's score then decides, at or above `options.guard_identity` (else
    `identity_threshold`: the run's identity gate), the PSNR recorded beside it."""
    if options.cache is None:
        raise ValueError(f"shot {shot}: no speed.cache to guard")
    start = time.perf_counter()
    plain = render(False)
    seconds_plain = time.perf_counter() - start
    start = time.perf_counter()
    try:
        cached = render(True)
    except (ValueError, IndexError) as error:  # the model has no (or too few) blocks
        return CacheGuard(shot=shot, psnr=0.0, threshold=options.guard_psnr, kept=False,
                          seconds_plain=seconds_plain, seconds_cached=0.0,
                          reason=f"{options.cache} cache does not apply to this model "
                          f"({type(error).__name__}: {error})")
    seconds_cached = time.perf_counter() - start
    score = psnr(plain, cached)
    figures: dict[str, Any] = {"kept": score >= options.guard_psnr}
    if identity is not None:
        threshold = options.guard_identity
        if threshold is None:
            threshold = (identity_threshold if identity_threshold is not None
                         else IDENTITY_GATE_THRESHOLD)
        before, after = round(identity(plain), 4), round(identity(cached), 4)
        figures = {"kept": after >= threshold, "measure": "identity", "identity_plain": before,
                   "identity_cached": after, "identity_threshold": threshold}
    return CacheGuard(shot=shot, psnr=score, threshold=options.guard_psnr,
                      seconds_plain=seconds_plain, seconds_cached=seconds_cached, **figures)


def lineage(options: SpeedOptions | None, compiled: str | None = None) -> dict[str, Any]:
    """The speed options a clip or image was made with, for its sidecar: the cache (None when
    the guard turned it off), the one asked for, the guard's figures, and what compilation did
    (or why it was skipped)."""
    if options is None:
        return {}
    out: dict[str, Any] = {"cache": options.cache if options.cache_active() else None,
                           "cache_asked": options.cache}
    if options.guard is not None:
        out["guard"] = options.guard.model_dump(mode="json")
    if compiled:
        out["compile"] = compiled
    return out


def pixel_view(speed: dict[str, Any]) -> dict[str, Any]:
    """What of a job's speed options changes its pixels, for its key: the cache (and its
    setting) once the guard kept it. A cache not (yet) kept, compilation (the same maths) and
    the guard's figures (its timings differ from run to run) are in the sidecar only, so a
    run whose cache was turned off shares its keys with a run that never asked for one."""
    guard = speed.get("guard")
    if not speed.get("cache") or not isinstance(guard, dict) or not guard.get("kept"):
        return {}
    out = {"cache": speed["cache"]}
    if speed["cache"] == "first-block":
        out["cache_threshold"] = speed.get("cache_threshold", 0.05)
    return out
