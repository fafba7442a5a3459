"""First+last-frame transition without a model: optical-flow morph between two stills.

The storyboard can pin a shot's first and last frame (e.g. the winter frame restyled to spring).
Where no first+last-frame video model is available, this gives a watchable transition: dense DIS
optical flow between the two stills, both warped toward the in-between position, cross-blended.
A plain crossfade ghosts; warping first makes shared structure slide into place instead.

Flow is estimated once, at a reduced size (DIS is fast, but flow at 4K buys nothing over
~512 px for a transition); each output frame is then two ``remap`` calls and a blend, streamed to
the encoder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from reelflow.media.frames import VideoWriter
from reelflow.media.probe import VideoInfo
from reelflow.motion.common import (
    ImageLike,
    cover_fit,
    ease,
    frame_count,
    frame_times,
    load_rgb,
)

__all__ = ["dense_flow", "morph_frames", "render_morph"]


def _gray_pair(a: np.ndarray, b: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    h, w = a.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    size = (max(8, round(w * scale)), max(8, round(h * scale)))

    def gray(img: np.ndarray) -> np.ndarray:
        small = cv2.resize(img, size, interpolation=cv2.INTER_AREA) if size != (w, h) else img
        return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)

    return gray(a), gray(b)


def _dis(ga: np.ndarray, gb: np.ndarray) -> np.ndarray:
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(ga, gb, None).astype(np.float32)


def _resize_flow(flow: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a flow field and rescale its vectors to the new pixel grid."""
    h, w = flow.shape[:2]
    if (w, h) == (width, height):
        return flow
    out = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
    out[..., 0] *= width / w
    out[..., 1] *= height / h
    return out


def dense_flow(a: np.ndarray, b: np.ndarray, *, max_side: int = 512) -> np.ndarray:
    """DIS optical flow from RGB ``a`` to RGB ``b`` (same size), as HxWx2 float32 pixels.

    ``a[y, x]`` corresponds to ``b[y + f[..., 1], x + f[..., 0]]``. Computed on grayscale at
    most ``max_side`` px on the long side and scaled back up.
    """
    ga, gb = _gray_pair(a, b, max_side)
    return _resize_flow(_dis(ga, gb), a.shape[1], a.shape[0])


def _grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))


def _trust(fwd: np.ndarray, bwd: np.ndarray) -> np.ndarray:
    """Per-pixel confidence in ``fwd`` from the forward-backward check (1 = consistent).

    Following a pixel forward then backward should return it home. Where it does not (moves DIS
    missed, content in only one image, e.g. winter vs spring), warping would smear; low trust
    makes those pixels barely move, so that region degrades to a clean crossfade instead.
    """
    gx, gy = _grid(fwd.shape[1], fwd.shape[0])
    back = cv2.remap(bwd, gx + fwd[..., 0], gy + fwd[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    err = np.linalg.norm(fwd + back, axis=2)
    tol = 1.0 + 0.1 * np.linalg.norm(fwd, axis=2)
    return np.exp(-((err / tol) ** 2)).astype(np.float32)


def _splat_flow(flow: np.ndarray, trust: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Flow from time ``t`` back to the source image, by forward-splatting ``flow``.

    A source pixel ``x`` sits at ``x + t*flow(x)`` at time ``t``; the flow from there back to the
    source is ``-t*flow(x)``. Splatting (instead of reading ``flow`` at the intermediate pixel,
    which is the background's flow where a moving object now is) keeps moving objects whole.
    Where several pixels land on one spot, trusted ones win: at an occlusion the hidden
    background fails the forward-backward check, so the moving object stays solid. Holes are
    filled by normalized convolution. Returns the flow and a coverage map in [0, 1], low only
    where no source pixel lands (disocclusion), used as the blend weight.
    """
    h, w = flow.shape[:2]
    gx, gy = _grid(w, h)
    px = np.rint(gx + t * flow[..., 0]).astype(np.int64)
    py = np.rint(gy + t * flow[..., 1]).astype(np.int64)
    inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    idx = (py * w + px)[inside]
    n = h * w
    count = np.bincount(idx, minlength=n).reshape(h, w).astype(np.float32)
    wt = (trust + 1e-3)[inside]
    acc_w = np.bincount(idx, weights=wt, minlength=n).reshape(h, w).astype(np.float32)
    acc_x = np.bincount(idx, weights=wt * flow[..., 0][inside], minlength=n)
    acc_y = np.bincount(idx, weights=wt * flow[..., 1][inside], minlength=n)
    acc = np.stack([acc_x, acc_y], axis=-1).reshape(h, w, 2).astype(np.float32)
    fine_w = cv2.GaussianBlur(acc_w, (0, 0), 1.0)
    fine = cv2.GaussianBlur(acc, (0, 0), 1.0) / np.maximum(fine_w, 1e-6)[..., None]
    coarse_w = cv2.GaussianBlur(acc_w, (0, 0), 6.0)
    coarse = cv2.GaussianBlur(acc, (0, 0), 6.0) / np.maximum(coarse_w, 1e-6)[..., None]
    mix = np.clip(fine_w / 0.05, 0.0, 1.0)[..., None]
    out = -t * (mix * fine + (1.0 - mix) * coarse)
    # Density also varies where the flow merely diverges; only real holes (density near 0)
    # may lower the weight, and smoothly, or the blend draws the flow field's texture.
    density = cv2.GaussianBlur(count, (0, 0), 1.0)
    coverage = cv2.GaussianBlur(np.clip(density / 0.5, 0.0, 1.0), (0, 0), 2.0)
    return out.astype(np.float32), coverage.astype(np.float32)


def morph_frames(
    first: ImageLike,
    last: ImageLike,
    *,
    n_frames: int,
    width: int,
    height: int,
    easing: str = "ease-in-out",
    flow_max_side: int = 512,
) -> Iterator[np.ndarray]:
    """Yield ``n_frames`` RGB frames morphing ``first`` into ``last``, one at a time.

    The first frame is exactly ``first`` (cover-fitted to the output size), the last exactly
    ``last``. Each in-between frame warps both stills to the intermediate position (flows
    forward-splatted at flow resolution, then upscaled) and blends them by time and coverage.
    Large moves DIS cannot follow (more than ~15 % of the frame) fall back to a crossfade.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    ease(easing, 0.0)
    a = cover_fit(load_rgb(first), width, height)
    b = cover_fit(load_rgb(last), width, height)
    ga, gb = _gray_pair(a, b, flow_max_side)
    f01, f10 = _dis(ga, gb), _dis(gb, ga)
    t01, t10 = _trust(f01, f10), _trust(f10, f01)
    # Untrusted flow is faded to zero, so those regions crossfade instead of smearing.
    f01, f10 = f01 * t01[..., None], f10 * t10[..., None]
    gx, gy = _grid(width, height)
    af, bf = a.astype(np.float32), b.astype(np.float32)
    border = cv2.BORDER_REPLICATE
    for t_lin in frame_times(n_frames):
        t = ease(easing, t_lin)
        if t <= 0.0:
            yield a.copy()
            continue
        if t >= 1.0:
            yield b.copy()
            continue
        ft0, cov0 = _splat_flow(f01, t01, t)
        ft1, cov1 = _splat_flow(f10, t10, 1.0 - t)
        ft0, ft1 = _resize_flow(ft0, width, height), _resize_flow(ft1, width, height)
        wa = cv2.remap(af, gx + ft0[..., 0], gy + ft0[..., 1], cv2.INTER_LINEAR, borderMode=border)
        wb = cv2.remap(bf, gx + ft1[..., 0], gy + ft1[..., 1], cv2.INTER_LINEAR, borderMode=border)
        ka = (1.0 - t) * (cov0 + 0.05)
        kb = t * (cov1 + 0.05)
        ka = cv2.resize(ka, (width, height), interpolation=cv2.INTER_LINEAR)[..., None]
        kb = cv2.resize(kb, (width, height), interpolation=cv2.INTER_LINEAR)[..., None]
        frame = (ka * wa + kb * wb) / (ka + kb)
        yield np.clip(frame + 0.5, 0, 255).astype(np.uint8)


def render_morph(
    first: ImageLike,
    last: ImageLike,
    out: Path,
    *,
    duration: float,
    fps: int,
    width: int,
    height: int,
    easing: str = "ease-in-out",
    crf: int = 18,
    preset: str = "medium",
) -> VideoInfo:
    """Render a ``round(duration * fps)``-frame morph from ``first`` to ``last`` at ``out``."""
    n = frame_count(duration, fps)
    frames = morph_frames(first, last, n_frames=n, width=width, height=height, easing=easing)
    with VideoWriter(out, width=width, height=height, fps=fps, crf=crf, preset=preset) as w:
        for frame in frames:
            w.write(frame)
    assert w.info is not None
    return w.info
