"""`reelflow regenerate`: re-run the step that made an object, from its sidecar alone.

The sidecar holds the job (prompt, seed, model and LoRA identities, size, steps, parent keys), so
the step can be run again on this machine and its result compared with the stored bytes:
bit-identical when device, dtype, libraries and weights are the same; otherwise the maximum pixel
difference and PSNR, with the differences that explain it (device, a library version, a weight
whose content hash is not the one the object was made with, missing weights).
"""

from __future__ import annotations

import io
import math
import shutil
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel

from reelflow.errors import InputError, StageError
from reelflow.render import weights
from reelflow.render.jobs import (
    PREVIZ,
    ClipJob,
    FrameJob,
    HiresJob,
    ImageJob,
    RetouchJob,
    resolve_model_path,
)
from reelflow.render.lineage import job_from_spec
from reelflow.store.artifacts import ArtifactStore, ObjectNotFound

_ENV_FIELDS = ("device", "dtype", "torch", "diffusers", "transformers", "peft", "numpy", "pillow",
               "gpu")


class Regeneration(BaseModel):
    key: str
    step: str
    identical: bool
    max_diff: int | None = None  # largest per-channel difference, 0-255
    psnr: float | None = None  # dB; None when identical (infinite)
    size: tuple[int, int] | None = None
    frames: int | None = None  # clips: frames compared
    reasons: list[str] = []  # what differs between then and now

    def summary(self) -> str:
        size = f"{self.size[0]}x{self.size[1]}" if self.size else "?"
        if self.frames is not None:
            size += f", {self.frames} frames"
        if self.identical:
            head = f"{self.key}: bit-identical ({self.step}, {size})"
        elif self.max_diff is None:
            head = f"{self.key}: differs ({self.step}): sizes or frame counts differ"
        else:
            head = (f"{self.key}: differs ({self.step}): max pixel difference {self.max_diff}, "
                    f"PSNR {self.psnr:.2f} dB")
        why = [f"  because {reason}" for reason in self.reasons]
        if not self.identical and not self.reasons:
            why = ["  with the same device, dtype, library versions and weights (nondeterminism)"]
        return "\n".join([head, *why])


def environment_differences(made: dict[str, Any], device: str, dtype: str | None) -> list[str]:
    """One line per runtime fact that differs between when the object was made and now."""
    if not made:
        return ["its sidecar records no runtime (made before weights were hashed)"]
    here = weights.environment(device, dtype)
    return [
        f"{field} {here.get(field)} here, {made.get(field)} when made"
        for field in _ENV_FIELDS
        if (made.get(field) or here.get(field)) and made.get(field) != here.get(field)
    ]


def compare(stored: Image.Image, fresh: Image.Image) -> tuple[int | None, float | None]:
    """(max abs difference, PSNR in dB) of two RGB images; (None, None) when sizes differ."""
    if stored.size != fresh.size:
        return None, None
    a = np.asarray(stored.convert("RGB"), np.int16)
    b = np.asarray(fresh.convert("RGB"), np.int16)
    diff = np.abs(a - b)
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    return int(diff.max()), (math.inf if mse == 0 else 10 * math.log10(255**2 / mse))


def regenerate(
    store: ArtifactStore, key: str, save: Path | None = None
) -> Regeneration:
    """Run the object's step again here and compare; the fresh result is written to `save`
    when given (a PNG, or the clip's MP4), never to the bucket."""
    from reelflow.render import images

    try:
        lineage = store.lineage(key)
    except ObjectNotFound:
        raise InputError(f"{key}: no lineage sidecar, nothing to regenerate from") from None
    job = job_from_spec(lineage.spec)
    extra = lineage.extra
    if not isinstance(job, ImageJob | HiresJob | RetouchJob | FrameJob | ClipJob):
        kind = type(job).__name__ if job is not None else lineage.kind
        raise InputError(f"{key}: regenerate re-runs image and clip steps (variant, hi-res, "
                         f"retouch, frame/restyle, clip); this one was made by {kind}")
    # previz panels are drawn, not generated: no weights to find, nothing to hash
    panel = _is_previz(job)
    used = [] if panel else weights.used_weights(job)
    missing = [
        f"{w['role']} {w['name']} ({resolve_model_path(w['source'])})"
        for w in used
        if weights.try_content_hash(resolve_model_path(w["source"])) is None
    ]
    if missing:
        raise StageError(f"{key}: cannot regenerate, weights missing here: {'; '.join(missing)}")
    reasons = weights.check_weights(job, resolve_model_path)
    reasons += [
        f"{w['role']} {w['name']}: no content hash in the sidecar (made before weights were "
        "hashed)"
        for w in used
        if not w["sha256"]
    ]
    if isinstance(job, ClipJob):
        result = _regenerate_clip(store, key, job, save)
    else:
        if isinstance(job, ImageJob):
            index = int(extra.get("variant", 0))
            results = images.variant_images(store, job)  # the same batch the step ran
            step, fresh = f"variant {index}", results[index][1]
        elif isinstance(job, HiresJob):
            step, fresh = "hi-res", images.hires_image(store, job)
        elif isinstance(job, RetouchJob):
            step, fresh = "retouch", images.retouched_image(store, job)
        else:
            step = "restyle" if job.restyle_prompt else "frame"
            fresh = images.frame_image(store, job)
        if panel:
            step += ", previz panel"
        if save is not None:
            fresh.save(save)
        stored = Image.open(io.BytesIO(store.get_bytes(key))).convert("RGB")
        max_diff, psnr = compare(stored, fresh)
        result = Regeneration(key=key, step=step, identical=max_diff == 0, max_diff=max_diff,
                              psnr=psnr, size=fresh.size)
        if max_diff is None:
            reasons.append(f"size {fresh.size} here, {stored.size} stored")
    # After the run: torch is loaded, so "auto" resolves to the device that was used.
    # (A panel's pixels depend on no device: its runtime is worth naming only when it differs.)
    if (used or extra.get("environment")) and not (panel and result.identical):
        model = getattr(getattr(job, "image", job), "model", None)
        options = getattr(job, "backend_options", {}) or {}
        device = model.device if model else str(options.get("device", "auto"))
        dtype = model.dtype if model else options.get("dtype")
        reasons += environment_differences(extra.get("environment") or {}, device, dtype)
    psnr = result.psnr
    return result.model_copy(
        update={
            "reasons": reasons + result.reasons,
            "psnr": None if result.identical or psnr is None else round(psnr, 2),
        }
    )


def _is_previz(job: object) -> bool:
    """Whether the job (or the image job it refines) draws a previz panel."""
    model = getattr(getattr(job, "image", job), "model", None)
    return getattr(model, "source", None) == PREVIZ


def _regenerate_clip(
    store: ArtifactStore, key: str, job: ClipJob, save: Path | None
) -> Regeneration:
    """Render the clip again and compare it frame by frame with the stored one."""
    from reelflow.media.frames import read_frames
    from reelflow.render.clips import clip_file
    from reelflow.render.common import scratch

    with scratch() as tmp:
        stored_path = store.get_file(key, tmp / "stored.mp4")
        fresh_path, _, backend = clip_file(store, job, tmp)
        if save is not None:
            shutil.copyfile(fresh_path, save)
        step = f"clip ({backend})"
        if fresh_path.read_bytes() == stored_path.read_bytes():
            return Regeneration(key=key, step=step, identical=True, max_diff=0,
                                size=(job.width, job.height), frames=None)
        worst, squared, count, pixels = 0, 0.0, 0, 0
        reasons: list[str] = []
        for old, new in zip_longest(read_frames(stored_path), read_frames(fresh_path)):
            if old is None or new is None or old.shape != new.shape:
                reasons.append("frame count or size differs")
                worst = -1
                break
            diff = np.abs(old.astype(np.int16) - new.astype(np.int16))
            worst = max(worst, int(diff.max()))
            squared += float(np.sum(diff.astype(np.float64) ** 2))
            pixels += diff.size
            count += 1
    if worst < 0:
        return Regeneration(key=key, step=step, identical=False, reasons=reasons)
    mse = squared / max(pixels, 1)
    psnr = math.inf if mse == 0 else 10 * math.log10(255**2 / mse)
    if worst == 0:  # same pixels, other bytes (encoder metadata): say so
        reasons.append("decoded frames are identical; the MP4 bytes differ")
    return Regeneration(key=key, step=step, identical=False, max_diff=worst, psnr=psnr,
                        size=(job.width, job.height), frames=count, reasons=reasons)
