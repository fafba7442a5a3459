"""Helpers the motion backends share: image loading, cover-fitting and easing curves."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ImageLike = Path | str | Image.Image | np.ndarray

__all__ = [
    "EASINGS",
    "ImageLike",
    "audio_stem_path",
    "cover_fit",
    "ease",
    "frame_count",
    "frame_times",
    "load_rgb",
]


def audio_stem_path(clip: Path) -> Path:
    """Where a backend that makes sound (LTX-2) leaves a clip's audio beside ``clip``: a WAV
    the clip step stores as the clip's stem, for the mix."""
    return clip.with_name(f"{clip.stem}.audio.wav")


def _ease_in_out(t: float) -> float:
    # Cosine ease: zero velocity at both ends, like a camera operator starting and stopping.
    return 0.5 - 0.5 * math.cos(math.pi * t)


EASINGS: dict[str, Callable[[float], float]] = {
    "linear": lambda t: t,
    "ease-in": lambda t: t * t,
    "ease-out": lambda t: 1.0 - (1.0 - t) * (1.0 - t),
    "ease-in-out": _ease_in_out,
}


def ease(name: str, t: float) -> float:
    """Map linear progress ``t`` in [0, 1] through the named curve (see :data:`EASINGS`)."""
    try:
        fn = EASINGS[name]
    except KeyError:
        raise ValueError(f"unknown easing {name!r}; choose from {sorted(EASINGS)}") from None
    return fn(min(1.0, max(0.0, t)))


def frame_count(duration: float, fps: float) -> int:
    """Frames for ``duration`` seconds at ``fps``: ``round(duration * fps)``, at least 1.

    Rounding (not truncating) keeps a 2.0 s shot at 24 fps at exactly 48 frames despite float
    error, which the editor relies on when it lays shots end to end.
    """
    if duration <= 0 or fps <= 0:
        raise ValueError(f"duration and fps must be positive, got {duration=} {fps=}")
    return max(1, round(duration * fps))


def frame_times(n: int) -> list[float]:
    """Linear progress of each of ``n`` frames: the first is exactly 0 and the last exactly 1."""
    if n == 1:
        return [0.0]
    return [i / (n - 1) for i in range(n)]


def load_rgb(image: ImageLike) -> np.ndarray:
    """Return ``image`` as a contiguous HxWx3 uint8 RGB array.

    Accepts a path, a PIL image or an array (grayscale, RGB or RGBA; alpha is composited on
    black, since a video frame has no transparency).
    """
    if isinstance(image, str | Path):
        with Image.open(image) as im:
            return load_rgb(im)
    if isinstance(image, Image.Image):
        if image.mode in ("RGBA", "LA", "P"):
            image = image.convert("RGBA")
            bg = Image.new("RGBA", image.size, (0, 0, 0, 255))
            image = Image.alpha_composite(bg, image)
        return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.max() <= 1.0:
            arr = arr * 255.0
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
        arr = (arr[:, :, :3].astype(np.float32) * alpha).round().astype(np.uint8)
    elif arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = img.shape[:2]
    shrinking = width * height < w * h
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(img, (width, height), interpolation=interp)


def cover_fit(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale ``img`` to cover ``width`` x ``height`` and centre-crop, keeping its aspect ratio.

    Generated stills rarely match the delivery aspect exactly; cropping (not stretching) keeps
    faces round.
    """
    h, w = img.shape[:2]
    scale = max(width / w, height / h)
    sw, sh = max(width, round(w * scale)), max(height, round(h * scale))
    scaled = _resize(img, sw, sh)
    x0, y0 = (sw - width) // 2, (sh - height) // 2
    return np.ascontiguousarray(scaled[y0 : y0 + height, x0 : x0 + width])
