"""Previz: a storyboard panel per shot, drawn from the storyboard itself, with no model at all.

What directors check timing with before anything is generated: each shot's panel shows

- the **palette** as the background (sky and ground, each one of the style's colours, softly
  shaded),
- the **shot size** as a framing guide: a subject silhouette scaled from a tiny figure
  (extreme wide) to a face that overflows the frame (extreme close-up), placed on a third,
  or the character's **reference image** from the library in its place when there is one,
- the **angle** as the horizon's height (low angle: low horizon; aerial/overhead: none),
- the **camera move** as arrows (push-in, pull-out, pans, tilts, tracking, orbit),
- the **shot id** and its framing words, and the shot's **description** in the storyboard's own
  language, set in the pip-installed CJK font and wrapped by width, on a card inside the part
  of the frame the animatic shows throughout the shot's camera move (a push-in or a tracking
  shot crops the panel; the caption must not start cut off).

Deterministic: the same panel spec and seed always give the same pixels; variants (seed + i)
differ slightly (subject position, gradient direction), as generated variants do. The hi-res fix
redraws the panel at the larger size (crisp text), retouch and ControlNet are pass-throughs.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from reelflow.editing.caption_layout import wrap_text
from reelflow.editing.fonts import cjk_font_path
from reelflow.motion.animatic import MOVEMENTS, visible_region

__all__ = ["PREVIZ_SOURCE", "SUBJECT_SCALE", "draw_panel", "hex_rgb", "safe_box"]

#: `ModelChoice.source` (and `RenderProfile.image_model`) that selects this backend
PREVIZ_SOURCE = "previz"

#: subject height as a fraction of the frame height, per shot size (> 1: cropped by the frame)
SUBJECT_SCALE = {
    "extreme-wide": 0.12,
    "wide": 0.28,
    "full": 0.62,
    "medium": 1.0,
    "medium-close-up": 1.5,
    "close-up": 2.3,
    "extreme-close-up": 4.0,
}
HORIZON = {"eye-level": 0.55, "low": 0.78, "high": 0.3, "dutch": 0.55}

DEFAULT_PALETTE = ["#31363f", "#76818e", "#d9d9d9"]

Box = tuple[float, float, float, float]


def safe_box(movement: str, width: int, height: int) -> Box:
    """The panel's pixels (x0, y0, x1, y1) that stay in view for the whole camera move, as the
    animatic clip step moves it (default strength and easing); the whole panel for a move the
    animatic does not know."""
    if movement not in MOVEMENTS:
        return (0.0, 0.0, float(width), float(height))
    x0, y0, x1, y1 = visible_region(movement, width, height)
    return (x0 * width, y0 * height, x1 * width, y1 * height)


def hex_rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return (int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16))


def _mix(a: tuple[int, ...], b: tuple[int, ...], t: float) -> tuple[int, int, int]:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=False))[:3]  # type: ignore[return-value]


def _luma(c: tuple[int, int, int]) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _shaded(w: int, h: int, color: tuple[int, int, int], tilt: float) -> Image.Image:
    """A flat palette colour with a soft shading (at most 12% towards white at the top), so
    the panel reads as a place while its colours stay the palette's."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    t = np.clip(1 - ys / max(1, h - 1) + tilt * (xs / max(1, w - 1) - 0.5), 0, 1)[..., None]
    base = np.asarray(color, np.float32)
    arr = base + (255 - base) * 0.12 * t
    return Image.fromarray(arr.round().astype(np.uint8), "RGB")


def _arrow(
    draw: ImageDraw.ImageDraw,
    start: tuple[float, float],
    end: tuple[float, float],
    color: tuple[int, int, int],
    width: int,
) -> None:
    draw.line([start, end], fill=color, width=width)
    angle = math.atan2(end[1] - start[1], end[0] - start[0])
    head = width * 3.5
    left = (end[0] - head * math.cos(angle - 0.5), end[1] - head * math.sin(angle - 0.5))
    right = (end[0] - head * math.cos(angle + 0.5), end[1] - head * math.sin(angle + 0.5))
    draw.polygon([end, left, right], fill=color)


def _camera_move(
    draw: ImageDraw.ImageDraw,
    movement: str,
    w: int,
    h: int,
    center: tuple[float, float],
    color: tuple[int, int, int],
    safe: Box,
) -> None:
    lw = max(2, round(min(w, h) * 0.012))
    cx, cy = center
    s = min(w, h)
    # marks near an edge stay an arrow head inside what the move keeps in view
    right, bottom = safe[2] - lw * 4, safe[3] - lw * 4
    if movement in ("push-in", "pull-out"):
        for fx, fy in ((0.12, 0.2), (0.88, 0.2), (0.12, 0.85), (0.88, 0.85)):
            corner = (fx * w, fy * h)
            inner = (corner[0] + (cx - corner[0]) * 0.35, corner[1] + (cy - corner[1]) * 0.35)
            a, b = (corner, inner) if movement == "push-in" else (inner, corner)
            _arrow(draw, a, b, color, lw)
    elif movement in ("pan-left", "pan-right", "tracking"):
        direction = -1 if movement == "pan-left" else 1
        y = min(bottom, h * 0.9 if movement != "tracking" else min(h * 0.92, cy + s * 0.1))
        _arrow(draw, (w / 2 - direction * w * 0.2, y), (w / 2 + direction * w * 0.2, y), color, lw)
    elif movement in ("tilt-up", "tilt-down"):
        direction = -1 if movement == "tilt-up" else 1
        x = min(right, w * 0.93)
        _arrow(draw, (x, h / 2 - direction * h * 0.2), (x, h / 2 + direction * h * 0.2), color, lw)
    elif movement == "orbit":
        r = s * 0.3
        box = (cx - r, cy - r * 0.45, cx + r, cy + r * 0.45)
        draw.arc(box, 200, 340, fill=color, width=lw)
        end = (cx + r * math.cos(math.radians(340)), cy + r * 0.45 * math.sin(math.radians(340)))
        _arrow(draw, (end[0] - lw * 4, end[1] - lw * 2), end, color, lw)
    else:  # static: a small tripod mark
        x, y = min(right, w * 0.93), min(bottom, h * 0.88)
        draw.rectangle((x - lw * 3, y - lw * 3, x + lw * 3, y + lw * 3), outline=color, width=lw)


def _subject(
    panel: Image.Image,
    size: str,
    center: tuple[float, float],
    fill: tuple[int, int, int],
    outline: tuple[int, int, int],
    reference: Image.Image | None,
) -> None:
    """A figure (head + shoulders/body) of the shot size's scale, or the reference image."""
    w, h = panel.size
    scale = SUBJECT_SCALE.get(size, 0.6)
    sh = h * scale
    sw = sh * 0.42
    cx, cy = center
    # a small figure stands on the ground; a large one is framed by its head (on the upper
    # third for a medium shot, filling the frame for an extreme close-up)
    top = cy + h * 0.34 - sh if scale < 1 else h * 0.42 - sh * 0.16
    if reference is not None:
        ref = reference.convert("RGB")
        rw = max(2, round(sh * ref.width / ref.height * 0.8))
        rh = max(2, round(sh * 0.8))
        ref = ref.resize((rw, rh), Image.Resampling.LANCZOS)
        panel.paste(ref, (round(cx - rw / 2), round(top)))
        ImageDraw.Draw(panel).rectangle(
            (cx - rw / 2, top, cx + rw / 2, top + rh),
            outline=outline,
            width=max(2, round(min(w, h) * 0.006)),
        )
        return
    draw = ImageDraw.Draw(panel)
    lw = max(2, round(min(w, h) * 0.006))
    head = sh * 0.16
    draw.ellipse((cx - head, top, cx + head, top + 2 * head), fill=fill, outline=outline, width=lw)
    body_top = top + 2 * head * 1.05
    draw.rounded_rectangle(
        (cx - sw / 2, body_top, cx + sw / 2, top + sh),
        radius=sw * 0.3,
        fill=fill,
        outline=outline,
        width=lw,
    )


def draw_panel(
    *,
    shot: str,
    description: str,
    size: str,
    angle: str,
    movement: str,
    palette: Sequence[str],
    width: int,
    height: int,
    seed: int,
    reference: Image.Image | None = None,
) -> Image.Image:
    """One storyboard panel (RGB, ``width`` x ``height``) for a shot; see the module docstring."""
    rng = np.random.default_rng(seed)
    colors = [hex_rgb(c) for c in (palette or DEFAULT_PALETTE)]
    # two palette colours for the background: sky and ground
    # the shot picks its pair (stable across variants; neighbouring shots differ)
    first = zlib.crc32(shot.encode()) % len(colors) if len(colors) > 2 else 0
    sky = colors[first]
    ground = colors[(first + 1) % len(colors)] if len(colors) > 1 else _mix(sky, (0, 0, 0), 0.3)
    tilt = float(rng.uniform(-0.3, 0.3))
    ink = (20, 20, 24) if _luma(_mix(sky, ground, 0.5)) > 110 else (240, 240, 236)
    line_w = max(1, round(min(width, height) * 0.004))
    if angle in HORIZON:  # sky above the horizon, ground below, each a palette colour
        horizon = round(height * (HORIZON[angle] + rng.uniform(-0.03, 0.03)))
        panel = _shaded(width, height, sky, tilt)
        panel.paste(_shaded(width, height - horizon, ground, tilt), (0, horizon))
        draw = ImageDraw.Draw(panel)
        slope = height * 0.12 if angle == "dutch" else 0.0
        draw.line(
            [(0, horizon + slope), (width, horizon - slope)],
            fill=_mix(ink, ground, 0.5),
            width=line_w,
        )
    else:  # aerial / overhead: the ground seen from above, with a grid
        panel = _shaded(width, height, ground, tilt)
        draw = ImageDraw.Draw(panel)
        step = max(8, round(min(width, height) / 6))
        grid = _mix(ink, ground, 0.7)
        for x in range(step // 2, width, step):
            draw.line([(x, 0), (x, height)], fill=grid, width=line_w)
        for y in range(step // 2, height, step):
            draw.line([(0, y), (width, y)], fill=grid, width=line_w)
    # thirds guides, the framing a director reads first
    guide = _mix(ink, sky, 0.75)
    for k in (1, 2):
        draw.line([(width * k / 3, 0), (width * k / 3, height)], fill=guide, width=line_w)
        draw.line([(0, height * k / 3), (width, height * k / 3)], fill=guide, width=line_w)
    scale = SUBJECT_SCALE.get(size, 0.6)
    side = rng.choice([1 / 3, 2 / 3]) if scale < 1.2 else 0.5
    center = (width * (side + rng.uniform(-0.03, 0.03)), height * (0.5 + rng.uniform(-0.02, 0.02)))
    accent = max(colors, key=lambda c: abs(_luma(c) - _luma(_mix(sky, ground, 0.5))))
    _subject(panel, size, center, fill=accent, outline=ink, reference=reference)
    safe = safe_box(movement, width, height)
    _camera_move(ImageDraw.Draw(panel), movement, width, height, center, ink, safe)
    _text(panel, shot, f"{size} · {angle} · {movement}", description, ink, safe)
    return panel


def _fit_ellipsis(line: str, width: float, measure: Callable[[str], float]) -> str:
    """``line`` cut short enough to end in an ellipsis within ``width``: the text goes on."""
    while line and measure(line + "…") > width:
        line = line[:-1]
    return line.rstrip() + "…"


def label_lines(
    shot: str, framing: str, width: float, measure: Callable[[str], float]
) -> list[str]:
    """The card's label: shot id and framing on one line; on a narrow card (9:16) the framing
    goes on a line of its own before any of it is cut short."""
    one = f"{shot}   {framing}"
    if measure(one) <= width:
        return [one]
    first = shot if measure(shot) <= width else _fit_ellipsis(shot, width, measure)
    rest = wrap_text(framing, width, measure)
    if len(rest) > 1:
        rest = [_fit_ellipsis(" ".join(rest), width, measure)]
    return [first, *rest]


def _text(
    panel: Image.Image,
    shot: str,
    framing: str,
    description: str,
    ink: tuple[int, int, int],
    safe: Box,
) -> Box:
    """Shot id, framing words and the description on a card across the top of ``safe`` (the
    part of the panel the camera move keeps in view); returns the card's box."""
    w, h = panel.size
    font_file = str(cjk_font_path())
    small = ImageFont.truetype(font_file, max(8, round(min(w, h) * 0.045)))
    body = ImageFont.truetype(font_file, max(8, round(min(w, h) * 0.055)))
    pad = round(min(w, h) * 0.03)
    # the card sits half a pad inside the safe box: in view, and never flush with the frame
    left, top = math.ceil(safe[0]) + pad // 2, math.ceil(safe[1]) + pad // 2
    right = math.floor(safe[2]) - pad // 2
    text_w = right - left - 2 * pad
    labels = label_lines(shot, framing, text_w, lambda s: float(small.getlength(s)))
    label_line_h, line_h = round(small.size * 1.5), round(body.size * 1.3)
    label_h = label_line_h * len(labels)
    room = (math.floor(safe[3]) - pad // 2 - top - pad - label_h) // line_h
    max_lines = max(1, min(3 if w >= h else 4, room))  # portrait: narrower, one more line
    measure: Callable[[str], float] = lambda s: float(body.getlength(s))  # noqa: E731
    lines = wrap_text(description, text_w, measure)
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], _fit_ellipsis(lines[max_lines - 1], text_w, measure)]
    bottom = top + pad + label_h + line_h * len(lines)
    card = (left, top, right, bottom)
    back = (0, 0, 0, 150) if ink[0] > 128 else (255, 255, 255, 170)
    overlay = Image.new("RGBA", panel.size, (0, 0, 0, 0))
    ImageDraw.Draw(overlay).rectangle(card, fill=back)
    panel.paste(Image.alpha_composite(panel.convert("RGBA"), overlay).convert("RGB"))
    draw = ImageDraw.Draw(panel)
    y = top + pad // 2
    for label in labels:
        draw.text((left + pad, y), label, font=small, fill=ink)
        y += label_line_h
    for line in lines:
        draw.text((left + pad, y), line, font=body, fill=ink)
        y += line_h
    return card
