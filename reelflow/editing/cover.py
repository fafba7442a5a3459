"""Cover: the film's best frame with its title set in a CJK-capable font.

Frame score (each term in [0, 1], higher is better)
---------------------------------------------------
- **sharpness** (weight 0.5): variance of the Laplacian of the grey image at a fixed analysis
  width, mapped by ``v / (v + 100)``. Motion blur, defocus and the soft frames around
  transitions score low; this is the term that matters most for a still.
- **exposure** (weight 0.3): fraction of pixels in the mid-tones (luma 0.1 to 0.9) minus twice the
  fraction clipped to black or white (below 0.02, above 0.98). Fades, dips to black and
  blown-out skies score low.
- **composition** (weight 0.2): how much of the image's edge energy (Sobel magnitude, a cheap
  saliency proxy) lies near the four rule-of-thirds intersections: the energy-weighted mean
  of a map of four Gaussians centred on those points, divided by the map's maximum. A subject
  on a third scores higher than a centred or empty frame.

Title placement
---------------
The title goes where the frame is calmest (:func:`title_box`): a *saliency map* (the spectral
residual of the grey image, Hou & Zhang 2007: what stands out from the image's own statistics,
plus edge density: where the detail, faces and text are), averaged over every candidate box
(three horizontal placements, heights every 2%) inside the platform's safe area and above its
caption band; the box with the least saliency wins, the centred one on a tie.

The frames are sampled evenly (``samples`` of them, skipping the very first and last frame,
which are the likeliest to be black or mid-transition), each reached by seeking, so the cost
does not grow with the film's length; only the current and the best frame are held in memory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from reelflow.editing.fonts import cjk_font_path
from reelflow.media.ffmpeg import PathLike
from reelflow.media.frames import frames_at
from reelflow.media.probe import probe

__all__ = [
    "FrameScore",
    "best_frame",
    "sample_indices",
    "score_samples",
    "crop_to_aspect",
    "make_cover",
    "render_title",
    "saliency_map",
    "score_frame",
    "title_band",
    "title_box",
]

_ANALYSIS_WIDTH = 480
WEIGHTS = {"sharpness": 0.5, "exposure": 0.3, "composition": 0.2}


@dataclass(frozen=True)
class FrameScore:
    """The three documented terms and their weighted sum."""

    sharpness: float
    exposure: float
    composition: float

    @property
    def total(self) -> float:
        return (
            WEIGHTS["sharpness"] * self.sharpness
            + WEIGHTS["exposure"] * self.exposure
            + WEIGHTS["composition"] * self.composition
        )


def _grey(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    if w != _ANALYSIS_WIDTH:
        nh = max(2, round(h * _ANALYSIS_WIDTH / w))
        frame = cv2.resize(frame, (_ANALYSIS_WIDTH, nh), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def _thirds_map(h: int, w: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    sigma = 0.12 * min(h, w)
    out = np.zeros((h, w), np.float32)
    for fy in (1 / 3, 2 / 3):
        for fx in (1 / 3, 2 / 3):
            out += np.exp(-(((xs - fx * w) ** 2 + (ys - fy * h) ** 2) / (2 * sigma**2)))
    return out / out.max()


def edge_energy(frame: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of the grey image: where the detail (and usually the subject) is."""
    grey = _grey(frame).astype(np.float32)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy)


def score_frame(frame: np.ndarray) -> FrameScore:
    """Score an RGB uint8 frame (see the module docstring for the terms and why)."""
    grey = _grey(frame)
    lap_var = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    sharpness = lap_var / (lap_var + 100.0)
    luma = grey.astype(np.float32) / 255.0
    mid = float(np.mean((luma >= 0.1) & (luma <= 0.9)))
    clipped = float(np.mean((luma < 0.02) | (luma > 0.98)))
    exposure = float(np.clip(mid - 2.0 * clipped, 0.0, 1.0))
    energy = edge_energy(frame)
    total = float(energy.sum())
    if total <= 1e-6:
        composition = 0.0
    else:
        composition = float((energy * _thirds_map(*energy.shape)).sum() / total)
    return FrameScore(sharpness, exposure, composition)


def sample_indices(frame_count: int, samples: int = 12) -> list[int]:
    """Evenly spaced frame indices strictly inside the clip (first and last frames skipped
    when there are enough frames to do so), sorted: where a cover looks."""
    if samples < 1:
        raise ValueError("samples must be >= 1")
    n = max(1, frame_count)
    picks = {int(round(n * (k + 1) / (samples + 1))) for k in range(samples)}
    return sorted({min(max(p, 0), n - 1) for p in picks})


def score_samples(
    video: PathLike, samples: int = 12, known: Mapping[int, float] | None = None
) -> dict[int, float]:
    """Score (``FrameScore.total``) of each sample frame, by index; frames whose score is in
    ``known`` (from an earlier look at the same pixels) are not decoded again."""
    info = probe(video)
    known = known or {}
    picks = sample_indices(info.frame_count, samples)
    scores = {i: known[i] for i in picks if i in known}
    todo = [i for i in picks if i not in scores]
    for index, frame in frames_at(video, todo, size=(info.width, info.height)):
        scores[index] = score_frame(frame).total
    return scores


def best_frame(
    video: PathLike, samples: int = 12, known: Mapping[int, float] | None = None
) -> np.ndarray:
    """Return the highest-scoring of ``samples`` evenly spaced frames (RGB uint8, full size);
    the earliest wins a tie. ``known`` scores are reused (see :func:`score_samples`)."""
    scores = score_samples(video, samples, known)
    if not scores:
        raise ValueError(f"no frames decoded from {video}")
    winner = max(sorted(scores), key=scores.__getitem__)
    info = probe(video)
    for _, frame in frames_at(video, [winner], size=(info.width, info.height)):
        return frame.copy()
    raise ValueError(f"no frame {winner} in {video}")


def crop_to_aspect(frame: np.ndarray, aspect: tuple[int, int]) -> np.ndarray:
    """Crop ``frame`` to ``aspect`` (w, h), the window centred on its edge-energy centroid.

    Keeps the detailed part of the image (the subject, usually) when a 16:9 frame becomes a
    9:16 or 1:1 cover.
    """
    h, w = frame.shape[:2]
    target = aspect[0] / aspect[1]
    if abs(w / h - target) < 1e-3:
        return frame
    energy = edge_energy(frame)
    eh, ew = energy.shape
    total = float(energy.sum()) or 1.0
    cx, cy = w / 2, h / 2
    if energy.any():
        cx = float((energy.sum(axis=0) * np.arange(ew)).sum() / total) * w / ew
        cy = float((energy.sum(axis=1) * np.arange(eh)).sum() / total) * h / eh
    if w / h > target:  # too wide: choose a column window
        cw = max(1, round(h * target))
        x0 = int(np.clip(round(cx - cw / 2), 0, w - cw))
        return frame[:, x0 : x0 + cw]
    ch = max(1, round(w / target))
    y0 = int(np.clip(round(cy - ch / 2), 0, h - ch))
    return frame[y0 : y0 + ch, :]


def _caption_top(w: int, h: int) -> float:
    """Where a cover's title must end: above the platform's safe bottom and a caption of one
    line per language (the usual caption; a cover shows none, but the film's first seconds do
    and the title should not jump over them)."""
    from reelflow.editing.caption_layout import SECOND_LANGUAGE_SCALE, preset_for

    area = preset_for(w, h)
    return h * (1 - area.bottom) - (1 + SECOND_LANGUAGE_SCALE) * area.size_ratio * min(w, h)


def title_band(frame: np.ndarray, block_h: int, *, margin: int = 0) -> int:
    """The top ``y`` of the ``block_h``-pixel band where a title covers the least of the picture.

    Cost of a band = its mean edge energy (faces, the subject and any text are where the edges
    are), plus a penalty for the caption band: the bottom of the platform's safe area, where
    captions and the app's interface sit (see :mod:`reelflow.editing.caption_layout`). Bands
    are tried every 2% of the height between the top margin and the caption band.
    """
    from reelflow.editing.caption_layout import preset_for

    h, w = frame.shape[:2]
    area = preset_for(w, h)
    energy = edge_energy(frame)
    profile = energy.mean(axis=1)
    rows = np.interp(np.arange(h) * len(profile) / h, np.arange(len(profile)), profile)
    caption_top = _caption_top(w, h)
    top = max(margin, round(h * area.top * 0.5))
    bottom = max(top, min(h - margin - block_h, round(caption_top - block_h)))
    step = max(1, h // 50)
    best_y, best_cost = top, float("inf")
    for y in range(top, bottom + 1, step):
        cost = float(rows[y : y + block_h].mean())
        if cost < best_cost - 1e-6:
            best_y, best_cost = y, cost
    return best_y


def saliency_map(frame: np.ndarray) -> np.ndarray:
    """Where the eye goes, in [0, 1] at the analysis width: the spectral residual (the log
    spectrum minus its local mean, back in the image domain: what the image's own statistics
    do not predict) and the density of edges, half each, both blurred to object scale."""
    energy = edge_energy(frame)
    h, w = energy.shape
    density = cv2.GaussianBlur(energy, (0, 0), max(2.0, w / 60))
    grey = _grey(frame).astype(np.float32)
    small = cv2.resize(grey, (64, max(8, round(64 * h / w))), interpolation=cv2.INTER_AREA)
    spectrum = np.fft.fft2(small)
    log_amplitude = np.log(np.abs(spectrum) + 1e-6).astype(np.float32)
    residual = log_amplitude - cv2.blur(log_amplitude, (3, 3))
    spectral = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    spectral = cv2.GaussianBlur(spectral.astype(np.float32), (0, 0), 2.5)
    spectral = cv2.resize(spectral, (w, h), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((h, w), np.float32)
    for part in (density, spectral):
        top = float(part.max())
        if top > 1e-6:
            out += 0.5 * part / top
    return out


def title_box(
    frame: np.ndarray, block_w: int, block_h: int, *, margin: int = 0
) -> tuple[int, int]:
    """The top-left ``(x, y)`` of the ``block_w`` x ``block_h`` box where a title covers the
    calmest part of the picture (least mean :func:`saliency_map`), inside the platform's safe
    area (clear of 9:16's button column) and above its caption band."""
    from reelflow.editing.caption_layout import preset_for

    h, w = frame.shape[:2]
    area = preset_for(w, h)
    sal = saliency_map(frame)
    scale = sal.shape[1] / w
    integral = cv2.integral(sal.astype(np.float64))
    caption_top = _caption_top(w, h)
    top = max(margin, round(h * area.top * 0.5))
    bottom = max(top, min(h - margin - block_h, round(caption_top - block_h)))
    left = max(margin, round(w * area.left))
    right = max(left, min(w - margin, round(w * (1 - area.right))) - block_w)
    centre = min(max((w - block_w) // 2, left), right)
    step = max(1, h // 50)

    def cost(x: int, y: int) -> float:
        x0, y0 = int(x * scale), int(y * scale)
        x1 = max(x0 + 1, min(sal.shape[1], int((x + block_w) * scale)))
        y1 = max(y0 + 1, min(sal.shape[0], int((y + block_h) * scale)))
        total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        return float(total) / ((x1 - x0) * (y1 - y0))

    best, best_cost = (centre, top), float("inf")
    for y in range(top, bottom + 1, step):
        for x in dict.fromkeys((centre, left, right)):  # centred first: it wins a tie
            c = cost(x, y)
            if c < best_cost - 1e-4:
                best, best_cost = (x, y), c
    return best


def _text_width(
    draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, stroke: int
) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
    return right - left


#: Where a bilingual title breaks first: "冬去春来 · From Winter to Spring" becomes two lines.
_SEPARATOR = re.compile(r"\s+[·|/—–-]\s+")


def _layout(
    draw: ImageDraw.ImageDraw,
    text: str,
    font_file: Path,
    size: int,
    max_width: int,
    stroke_ratio: float,
) -> list[tuple[str, ImageFont.FreeTypeFont, int]]:
    """Lines of ``text`` that fit ``max_width``: a title too wide for one line breaks at its
    separators (` · `) first, then the font shrinks down to 60%, then lines are wrapped,
    balanced (spaces, or between characters for Chinese), so a long English subtitle on a 9:16
    cover wraps into even lines instead of becoming unreadably small or leaving a word alone.
    """
    from reelflow.editing.caption_layout import balanced_wrap

    min_size = max(8, round(size * 0.6))
    parts = [text]
    font = ImageFont.truetype(str(font_file), size)
    if _text_width(draw, text, font, round(size * stroke_ratio)) > max_width:
        parts = [part for part in _SEPARATOR.split(text.strip()) if part] or [text]
    while True:
        stroke = round(size * stroke_ratio)
        font = ImageFont.truetype(str(font_file), size)
        width = max(_text_width(draw, part, font, stroke) for part in parts)
        if width <= max_width or size <= min_size:
            break
        size = max(min_size, int(size * max_width / width))

    def measure(line: str) -> float:
        return _text_width(draw, line, font, stroke)

    lines = [line for part in parts for line in balanced_wrap(part, max_width, measure)]
    return [(line, font, stroke) for line in lines]


def render_title(
    image: np.ndarray | Image.Image,
    title: str,
    subtitle: str | None = None,
    *,
    font_path: str | os.PathLike[str] | None = None,
    position: Literal["top", "center", "bottom", "auto"] = "bottom",
    size_ratio: float = 0.08,
    color: tuple[int, int, int] = (255, 255, 255),
    stroke: float = 0.06,
    stroke_color: tuple[int, int, int] = (0, 0, 0),
    shadow: float = 0.05,
    margin_ratio: float = 0.06,
) -> Image.Image:
    """Set ``title`` (and an optional smaller ``subtitle``) on ``image``; return a new RGB image.

    Sizes are relative so one call suits every aspect ratio: the title's font size is
    ``size_ratio`` x the image height, or x 1.5 its width for a portrait cover (a phone shows it
    at full width: 130 px at 1080x1920), shrunk to fit 90% of the width (the safe area's width
    for ``auto``), the subtitle's 55% of it;
    ``stroke`` and ``shadow`` (offset, also the blur radius) are fractions of the font size, 0 to
    disable. The outline and soft shadow keep white text readable on snow as on night.
    ``position="auto"`` puts the block where the frame is calmest (:func:`title_box`): away
    from the subject and faces, inside the platform's safe area and out of the band where
    captions and the app's interface sit.
    """
    base = (Image.fromarray(image) if isinstance(image, np.ndarray) else image).convert("RGBA")
    w, h = base.size
    font_file = cjk_font_path(font_path)
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    if position == "auto":  # inside the platform's safe area (9:16: clear of the buttons)
        from reelflow.editing.caption_layout import preset_for

        area = preset_for(w, h)
        max_w = int(w * (1 - area.left - area.right))
    else:
        max_w = int(w * 0.9)
    t_size = max(8, round(size_ratio * (h if w >= h else 1.5 * w)))
    lines = _layout(draw, title, font_file, t_size, max_w, stroke)
    t_font = lines[0][1]
    if subtitle:
        s_size = max(8, round(t_font.size * 0.55))
        lines += _layout(draw, subtitle, font_file, s_size, max_w, stroke)
    gap = round(t_font.size * 0.25)
    boxes = [draw.textbbox((0, 0), t, font=f, stroke_width=s) for t, f, s in lines]
    block_h = sum(b[3] - b[1] for b in boxes) + gap * (len(lines) - 1)
    margin = round(h * margin_ratio)
    block_w = max(b[2] - b[0] for b in boxes)
    x = (w - block_w) // 2
    if position == "top":
        y = margin
    elif position == "center":
        y = (h - block_h) // 2
    elif position == "bottom":
        y = h - margin - block_h
    elif position == "auto":
        x, y = title_box(np.asarray(base.convert("RGB")), block_w, block_h, margin=margin)
    else:
        raise ValueError(f"position must be top, center, bottom or auto, got {position!r}")
    placed = []
    for (text, font, s), box in zip(lines, boxes, strict=True):
        bw, bh = box[2] - box[0], box[3] - box[1]
        placed.append((text, font, s, (x + (block_w - bw) // 2 - box[0], y - box[1])))
        y += bh + gap
    if shadow > 0:
        shadow_layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
        sdraw = ImageDraw.Draw(shadow_layer)
        off = max(1, round(t_font.size * shadow))
        for text, font, s, (x, ty) in placed:
            sdraw.text((x + off, ty + off), text, font=font, fill=(0, 0, 0, 170), stroke_width=s)
        base = Image.alpha_composite(base, shadow_layer.filter(ImageFilter.GaussianBlur(off)))
    for text, font, s, xy in placed:
        fill = (*color, 255)
        draw.text(xy, text, font=font, fill=fill, stroke_width=s, stroke_fill=(*stroke_color, 255))
    return Image.alpha_composite(base, layer).convert("RGB")


def make_cover(
    video: PathLike,
    out_png: PathLike,
    title: str,
    subtitle: str | None = None,
    *,
    samples: int = 12,
    aspect: tuple[int, int] | None = None,
    size: tuple[int, int] | None = None,
    known_scores: Mapping[int, float] | None = None,
    **title_options: object,
) -> Path:
    """Write a PNG cover for ``video``: best frame, optionally cropped to ``aspect`` (w, h) around
    its subject and resized to ``size`` (w, h), with the title from :func:`render_title`.
    ``known_scores`` are sample scores already measured (see :func:`score_samples`)."""
    frame = best_frame(video, samples=samples, known=known_scores)
    if aspect is not None:
        frame = crop_to_aspect(frame, aspect)
    image = Image.fromarray(np.ascontiguousarray(frame))
    if size is not None:
        image = image.resize(size, Image.Resampling.LANCZOS)
    title_options.setdefault("position", "auto")
    cover = render_title(image, title, subtitle, **title_options)  # type: ignore[arg-type]
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.png")
    cover.save(tmp, format="PNG")
    os.replace(tmp, out)
    return out
