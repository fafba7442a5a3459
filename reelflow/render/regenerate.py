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
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel

from reelflow.errors import InputError, StageError
from reelflow.render import weights
from reelflow.render.jobs import FrameJob, HiresJob, ImageJob, RetouchJob, resolve_model_path
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
    reasons: list[str] = []  # what differs between then and now

    def summary(self) -> str:
        if self.identical:
            head = f"{self.key}: bit-identical ({self.step}, {self.size[0]}x{self.size[1]})"
        elif self.max_diff is None:
            head = f"{self.key}: differs ({self.step}): sizes differ"
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


def regenerate(store: ArtifactStore, key: str) -> tuple[Regeneration, Image.Image]:
    """Run the object's step again here; the fresh image is returned, never stored."""
    from reelflow.render import images

    try:
        lineage = store.lineage(key)
    except ObjectNotFound:
        raise InputError(f"{key}: no lineage sidecar, nothing to regenerate from") from None
    job = job_from_spec(lineage.spec)
    extra = lineage.extra
    if not isinstance(job, ImageJob | HiresJob | RetouchJob | FrameJob):
        kind = type(job).__name__ if job is not None else lineage.kind
        raise InputError(f"{key}: regenerate re-runs image steps (variant, hi-res, retouch, "
                         f"frame/restyle); this is a {kind}")
    model = (job.image if isinstance(job, HiresJob | RetouchJob) else job).model
    used = weights.used_weights(job)
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
    # After the run: torch is loaded, so "auto" resolves to the device that was used.
    reasons += environment_differences(extra.get("environment") or {}, model.device, model.dtype)
    stored = Image.open(io.BytesIO(store.get_bytes(key))).convert("RGB")
    max_diff, psnr = compare(stored, fresh)
    identical = max_diff == 0
    if max_diff is None:
        reasons.append(f"size {fresh.size} here, {stored.size} stored")
    return (
        Regeneration(
            key=key,
            step=step,
            identical=identical,
            max_diff=max_diff,
            psnr=None if identical or psnr is None else round(psnr, 2),
            size=fresh.size,
            reasons=reasons,
        ),
        fresh,
    )
