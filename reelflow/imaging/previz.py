"""Previz: a storyboard panel per shot, drawn from the storyboard itself, with no model at all.

What directors check timing with before anything is generated: each shot's panel shows

- the **palette** as the background (sky and ground, each one of the style's colours, softly
  shaded),
- the **shot size** as a framing guide: a subject silhouette scaled from a tiny figure
  (extreme wide) to a face that overflows the frame (extreme close-up), placed on a third,
  or the character's **reference image** from the library in its place when there is one,
- the **angle** as the horizon's height (low angle: low horizon; aerial/overhead: none),
- the **camera move** as arrows (push-in, pull-out, pans, tilts, tracking, orbit),
- a **card** with the shot id (and its take, once a reviewer asked for another), its framing
  words, the shot's **description** in the storyboard's own language (the pip-installed CJK
  font, wrapped by width), the **restyle** a restyled frame asks for, and the reviewer's
  **notes** of a regenerated panel.

Layout rules, so the panel stays legible whatever the shot: the card sits across the top of
the part of the frame the animatic shows throughout the shot's camera move (a push-in or a
tracking shot crops the panel; the caption must not start cut off); its text is wrapped, and
set smaller when long, never cut (the shot id and each framing word stay whole); the subject,
the reference image and the camera arrows are laid out below the card, so nothing crosses the
text.

Deterministic: the same panel spec and seed always give the same pixels; variants (seed + i)
differ slightly (subject position, gradient direction), as generated variants do; a new take
(a rejected shot drawn again) moves the subject to the other side and shows the notes. The
hi-res fix redraws the panel at the larger size (crisp text), retouch and ControlNet are
pass-throughs.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from reelflow.editing.caption_layout import wrap_text
from reelflow.editing.fonts import cjk_font_path
from reelflow.motion.animatic import MOVEMENTS, visible_region

__all__ = [
    "PREVIZ_SOURCE",
    "SUBJECT_SCALE",
    "Card",
    "PanelLayout",
    "draw_panel",
    "hex_rgb",
    "label_lines",
    "layout_panel",
    "mark_box",
    "safe_box",
]

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

#: the card never takes more than this share of the visible height (landscape, portrait); a
#: longer text is set smaller first (down to the last of FONT_STEPS), cut only past that
CARD_SHARE = (0.5, 0.42)
FONT_STEPS = (1.0, 0.9, 0.8, 0.7, 0.6)

Box = tuple[float, float, float, float]
Point = tuple[float, float]


@dataclass(frozen=True)
class CardLine:
    """One line of the card: its text, font, top-left position and what it says."""

    text: str
    font: ImageFont.FreeTypeFont
    xy: Point
    role: str  # "label", "description", "restyle" or "notes"

    def box(self) -> Box:
        """The pixels its glyphs cover (x0, y0, x1, y1)."""
        x0, y0, x1, y1 = self.font.getbbox(self.text)
        return (self.xy[0] + x0, self.xy[1] + y0, self.xy[0] + x1, self.xy[1] + y1)


@dataclass(frozen=True)
class Card:
    """The card's rectangle and its lines, laid out before anything else is placed."""

    box: Box
    lines: list[CardLine] = field(default_factory=list)

    def text_box(self, role: str | None = None) -> Box | None:
        """Bounding box of the glyphs of every line (of one role); None when there is none."""
        boxes = [line.box() for line in self.lines if role is None or line.role == role]
        if not boxes:
            return None
        return (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )


#: a camera mark: ("arrow", start, end), ("arc", ellipse box, start deg, end deg, arrow end)
#: or ("rect", box); drawn with the panel's line width
Mark = tuple


@dataclass(frozen=True)
class PanelLayout:
    """Where everything goes on a panel: the card, the subject's box, the camera marks."""

    card: Card
    safe: Box  # what the camera move keeps in view
    below: Box  # the frame below the card: the subject and the reference stay inside it
    center: Point  # the subject's centre
    subject: Box  # the figure's (or the reference image's) box
    marks: list[Mark]
    line_width: int  # the camera marks'


@functools.lru_cache(maxsize=64)
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


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), max(low, high))


def _shaded(w: int, h: int, color: tuple[int, int, int], tilt: float) -> Image.Image:
    """A flat palette colour with a soft shading (at most 12% towards white at the top), so
    the panel reads as a place while its colours stay the palette's."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    t = np.clip(1 - ys / max(1, h - 1) + tilt * (xs / max(1, w - 1) - 0.5), 0, 1)[..., None]
    base = np.asarray(color, np.float32)
    arr = base + (255 - base) * 0.12 * t
    return Image.fromarray(arr.round().astype(np.uint8), "RGB")


# -- the card ------------------------------------------------------------------------------------


def label_lines(
    shot: str, framing: str, width: float, measure: Callable[[str], float]
) -> list[str]:
    """The card's label: shot id and framing on one line; on a narrow card (9:16) the shot id
    goes on a line of its own and the framing wraps between its words (``a · b · c``): each
    word stays whole, none is cut short (a word wider than the card alone breaks, unmarked)."""
    one = f"{shot}   {framing}"
    if measure(one) <= width:
        return [one]
    lines = wrap_text(shot, width, measure) or [shot]
    rows: list[str] = []
    for item in framing.split(" · "):
        candidate = f"{rows[-1]} · {item}" if rows else item
        if rows and measure(candidate) <= width:
            rows[-1] = candidate
        else:
            rows.extend(wrap_text(item, width, measure) or [item])
    return [*lines, *rows]


def _fit_ellipsis(line: str, width: float, measure: Callable[[str], float]) -> str:
    """``line`` cut short enough to end in an ellipsis within ``width``: the text goes on."""
    while line and measure(line + "…") > width:
        line = line[:-1]
    return line.rstrip() + "…"


def layout_card(
    width: int,
    height: int,
    safe: Box,
    *,
    shot: str,
    framing: str,
    description: str,
    restyle: str | None = None,
    notes: Sequence[str] = (),
) -> Card:
    """The card across the top of ``safe``: label (shot id, framing), description, then the
    restyle and the reviewer's notes. Text that does not fit in the card's share of the height
    is set smaller, step by step; only past the smallest step is the description cut."""
    font_file = str(cjk_font_path())
    base = min(width, height)
    pad = round(base * 0.03)
    # the card sits half a pad inside the safe box: in view, and never flush with the frame
    left, top = math.ceil(safe[0]) + pad // 2, math.ceil(safe[1]) + pad // 2
    right = math.floor(safe[2]) - pad // 2
    text_w = right - left - 2 * pad
    limit = (safe[3] - safe[1]) * CARD_SHARE[0 if width >= height else 1]
    extras = [("restyle", f"restyle: {restyle}")] if restyle else []
    if notes:
        extras.append(("notes", "notes: " + "; ".join(n.strip() for n in notes if n.strip())))
    rows: list[tuple[str, ImageFont.FreeTypeFont, int, str]] = []
    for step in FONT_STEPS:
        small = ImageFont.truetype(font_file, max(7, round(base * 0.045 * step)))
        body = ImageFont.truetype(font_file, max(7, round(base * 0.055 * step)))
        label_h, line_h = round(small.size * 1.5), round(body.size * 1.3)
        note_h = round(small.size * 1.35)

        def small_w(s: str, font: ImageFont.FreeTypeFont = small) -> float:
            return float(font.getlength(s))

        def body_w(s: str, font: ImageFont.FreeTypeFont = body) -> float:
            return float(font.getlength(s))

        rows = [(text, small, label_h, "label") for text in label_lines(shot, framing, text_w,
                                                                          small_w)]
        rows += [(text, body, line_h, "description") for text in wrap_text(description, text_w,
                                                                           body_w)]
        for role, text in extras:
            rows += [(line, small, note_h, role) for line in wrap_text(text, text_w, small_w)]
        if pad + sum(row[2] for row in rows) <= limit:
            break
    else:  # still too long at the smallest size: the description gives way, marked
        room = limit - pad - sum(row[2] for row in rows if row[3] != "description")
        kept = [row for row in rows if row[3] == "description"]
        n = max(1, int(room // max(1, kept[0][2]))) if kept else 0
        if len(kept) > n:
            text, font, line_h, role = kept[n - 1]
            shortened = _fit_ellipsis(text, text_w, lambda s, f=font: float(f.getlength(s)))
            kept = [*kept[: n - 1], (shortened, font, line_h, role)]
        labels = [row for row in rows if row[3] == "label"]
        rest = [row for row in rows if row[3] not in ("label", "description")]
        rows = [*labels, *kept, *rest]
    lines, y = [], top + pad // 2
    for text, font, line_h, role in rows:
        lines.append(CardLine(text, font, (left + pad, y), role))
        y += line_h
    return Card(box=(left, top, right, y + pad - pad // 2), lines=lines)


def _text(panel: Image.Image, card: Card, ink: tuple[int, int, int]) -> None:
    """The card: a translucent backing and its lines, drawn last (nothing is drawn over it)."""
    back = (0, 0, 0, 150) if ink[0] > 128 else (255, 255, 255, 170)
    overlay = Image.new("RGBA", panel.size, (0, 0, 0, 0))
    ImageDraw.Draw(overlay).rectangle(card.box, fill=back)
    panel.paste(Image.alpha_composite(panel.convert("RGBA"), overlay).convert("RGB"))
    draw = ImageDraw.Draw(panel)
    for line in card.lines:
        draw.text(line.xy, line.text, font=line.font, fill=ink)


# -- the subject and the camera marks, below the card ------------------------------------------


def _subject_box(
    size: str, center: Point, width: int, height: int, below: Box, aspect: float | None
) -> Box:
    """The figure's box for the shot size (a small figure stands on the ground; a large one is
    framed by its head), moved below the card and shrunk only when it would leave the frame; a
    reference image (``aspect`` = its width / height) is fitted inside ``below`` whole."""
    scale = SUBJECT_SCALE.get(size, 0.6)
    sh = height * scale
    cx, cy = center
    gap = min(width, height) * 0.02
    floor = below[1] + gap
    if aspect is not None:
        rh = min(sh * 0.8, below[3] - floor - gap)
        rw = rh * aspect
        if rw > below[2] - below[0] - 2 * gap:
            rw = below[2] - below[0] - 2 * gap
            rh = rw / aspect
        top = cy + height * 0.34 - sh if scale < 1 else height * 0.42 - sh * 0.16
        top = _clamp(top, floor, below[3] - gap - rh)
        left = _clamp(cx - rw / 2, below[0] + gap, below[2] - gap - rw)
        return (left, top, left + rw, top + rh)
    if scale < 1:
        top, bottom = cy + height * 0.34 - sh, cy + height * 0.34
        if top < floor:
            top, bottom = floor, min(bottom + floor - top, height * 0.97)
            sh = max(bottom - top, height * 0.05)
    else:
        top = max(height * 0.42 - sh * 0.16, floor)
    sw = sh * 0.42
    return (cx - sw / 2, top, cx + sw / 2, top + sh)


def _subject(
    panel: Image.Image,
    box: Box,
    fill: tuple[int, int, int],
    outline: tuple[int, int, int],
    reference: Image.Image | None,
) -> None:
    """A figure (head + body) in ``box``, or the reference image fitted to it."""
    w, h = panel.size
    lw = max(2, round(min(w, h) * 0.006))
    x0, y0, x1, y1 = box
    if reference is not None:
        rw, rh = max(2, round(x1 - x0)), max(2, round(y1 - y0))
        ref = reference.convert("RGB").resize((rw, rh), Image.Resampling.LANCZOS)
        panel.paste(ref, (round(x0), round(y0)))
        ImageDraw.Draw(panel).rectangle((round(x0), round(y0), round(x0) + rw, round(y0) + rh),
                                        outline=outline, width=lw)  # fmt: skip
        return
    draw = ImageDraw.Draw(panel)
    cx, sh = (x0 + x1) / 2, y1 - y0
    head = sh * 0.16
    draw.ellipse((cx - head, y0, cx + head, y0 + 2 * head), fill=fill, outline=outline, width=lw)
    draw.rounded_rectangle(
        (x0, y0 + 2 * head * 1.05, x1, y1),
        radius=(x1 - x0) * 0.3,
        fill=fill,
        outline=outline,
        width=lw,
    )


def camera_marks(
    movement: str, width: int, height: int, center: Point, region: Box, lw: int
) -> list[Mark]:
    """The camera move's arrows, inside ``region`` (below the card, in view for the whole
    move) with a margin that holds the arrow heads and the line width."""
    m = lw * 4
    x0, y0, x1, y1 = region[0] + m, region[1] + m, region[2] - m, region[3] - m
    x1, y1 = max(x0, x1), max(y0, y1)
    s = min(width, height)
    cx, cy = _clamp(center[0], x0, x1), _clamp(center[1], y0, y1)
    mid_x, mid_y = (x0 + x1) / 2, (y0 + y1) / 2
    if movement in ("push-in", "pull-out"):
        marks = []
        for fx, fy in ((0.04, 0.06), (0.96, 0.06), (0.04, 0.94), (0.96, 0.94)):
            corner = (x0 + fx * (x1 - x0), y0 + fy * (y1 - y0))
            inner = (corner[0] + (cx - corner[0]) * 0.35, corner[1] + (cy - corner[1]) * 0.35)
            ends = (corner, inner) if movement == "push-in" else (inner, corner)
            marks.append(("arrow", *ends))
        return marks
    if movement in ("pan-left", "pan-right", "tracking", "tracking-left", "tracking-right"):
        direction = -1 if movement in ("pan-left", "tracking-left") else 1
        if movement.startswith("tracking"):
            y = _clamp(center[1] + s * 0.1, y0, y1)
        else:
            y = y1 - (y1 - y0) * 0.05
        half = min(width * 0.2, (x1 - x0) / 2)
        return [("arrow", (mid_x - direction * half, y), (mid_x + direction * half, y))]
    if movement in ("tilt-up", "tilt-down"):
        direction = -1 if movement == "tilt-up" else 1
        half = min(height * 0.2, (y1 - y0) / 2)
        return [("arrow", (x1, mid_y - direction * half), (x1, mid_y + direction * half))]
    if movement in ("orbit", "orbit-left", "orbit-right"):
        r = min(s * 0.3, (x1 - x0) / 2)
        ry = min(r * 0.45, (y1 - y0) / 2)
        ox, oy = _clamp(cx, x0 + r, x1 - r), _clamp(cy, y0 + ry, y1 - ry)
        end = (ox + r * math.cos(math.radians(340)), oy + ry * math.sin(math.radians(340)))
        return [("arc", (ox - r, oy - ry, ox + r, oy + ry), 200, 340, end)]
    # static: a small tripod mark
    x, y = x1 - lw * 3, y1 - lw * 3
    return [("rect", (x - lw * 3, y - lw * 3, x + lw * 3, y + lw * 3))]


def mark_box(mark: Mark, lw: int) -> Box:
    """The pixels a camera mark can cover: its geometry grown by the arrow head and the line."""
    grow = lw * 3.5 + lw
    if mark[0] == "arrow":
        (ax, ay), (bx, by) = mark[1], mark[2]
        return (min(ax, bx) - grow, min(ay, by) - grow, max(ax, bx) + grow, max(ay, by) + grow)
    x0, y0, x1, y1 = mark[1]
    return (x0 - grow, y0 - grow, x1 + grow, y1 + grow)


def _arrow(draw: ImageDraw.ImageDraw, start: Point, end: Point, color, width: int) -> None:
    draw.line([start, end], fill=color, width=width)
    angle = math.atan2(end[1] - start[1], end[0] - start[0])
    head = width * 3.5
    left = (end[0] - head * math.cos(angle - 0.5), end[1] - head * math.sin(angle - 0.5))
    right = (end[0] - head * math.cos(angle + 0.5), end[1] - head * math.sin(angle + 0.5))
    draw.polygon([end, left, right], fill=color)


def _camera_move(
    draw: ImageDraw.ImageDraw, marks: list[Mark], color: tuple[int, int, int], lw: int
) -> None:
    for mark in marks:
        if mark[0] == "arrow":
            _arrow(draw, mark[1], mark[2], color, lw)
        elif mark[0] == "arc":
            _, box, start, stop, end = mark
            draw.arc(box, start, stop, fill=color, width=lw)
            _arrow(draw, (end[0] - lw * 4, end[1] - lw * 2), end, color, lw)
        else:
            draw.rectangle(mark[1], outline=color, width=lw)


# -- the panel -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Draws:
    """The seed's random choices, drawn in a fixed order (layout and drawing share them)."""

    tilt: float
    horizon: float
    dx: float
    dy: float


def _draws(seed: int) -> _Draws:
    rng = np.random.default_rng(seed)
    return _Draws(*(float(rng.uniform(-a, a)) for a in (0.3, 0.03, 0.03, 0.02)))


def _framing(size: str, angle: str, movement: str) -> str:
    return f"{size} · {angle} · {movement}"


def layout_panel(
    *,
    shot: str,
    description: str,
    size: str,
    angle: str,
    movement: str,
    width: int,
    height: int,
    seed: int,
    reference_aspect: float | None = None,
    notes: Sequence[str] = (),
    restyle: str | None = None,
    take: int = 0,
    composition_of: str | None = None,
) -> PanelLayout:
    """Where the card, the subject and the camera marks of a panel go (what `draw_panel`
    draws): the card first, then everything else below it."""
    draws = _draws(seed)
    safe = safe_box(movement, width, height)
    label = f"{shot} · take {take + 1}" if take else shot
    card = layout_card(width, height, safe, shot=label, framing=_framing(size, angle, movement),
                       description=description, restyle=restyle, notes=notes)  # fmt: skip
    gap = math.ceil(min(width, height) * 0.02)
    below = (0.0, min(card.box[3] + gap, height - 1.0), float(width), float(height))
    # a small figure stands on a third (the other one on each new take; the source shot's
    # on a restyle of its frame); a large one is centred, nudged aside on a new take
    scale = SUBJECT_SCALE.get(size, 0.6)
    if scale < 1.2:
        placed = composition_of or shot
        side = (1 / 3, 2 / 3)[(zlib.crc32(placed.encode()) + take) % 2]
    else:
        side = 0.5 + (0.0, 0.1, -0.1)[take % 3]
    center = (width * (side + draws.dx), height * (0.5 + draws.dy))
    subject = _subject_box(size, center, width, height, below, reference_aspect)
    lw = max(2, round(min(width, height) * 0.012))
    region = (safe[0], below[1], safe[2], safe[3])
    marks = camera_marks(movement, width, height, center, region, lw)
    return PanelLayout(card, safe, below, center, subject, marks, lw)


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
    notes: Sequence[str] = (),
    restyle: str | None = None,
    take: int = 0,
    composition_of: str | None = None,
) -> Image.Image:
    """One storyboard panel (RGB, ``width`` x ``height``) for a shot; see the module docstring.
    ``notes``: the reviewer's, on a regenerated panel; ``restyle``: what a restyled frame
    asks for; ``take``: how many times the shot was drawn again (0: the first);
    ``composition_of``: the shot whose composition a restyle of its frame keeps."""
    draws = _draws(seed)
    colors = [hex_rgb(c) for c in (palette or DEFAULT_PALETTE)]
    # two palette colours for the background: sky and ground
    # the shot picks its pair (stable across variants; neighbouring shots differ)
    first = zlib.crc32(shot.encode()) % len(colors) if len(colors) > 2 else 0
    sky = colors[first]
    ground = colors[(first + 1) % len(colors)] if len(colors) > 1 else _mix(sky, (0, 0, 0), 0.3)
    ink = (20, 20, 24) if _luma(_mix(sky, ground, 0.5)) > 110 else (240, 240, 236)
    line_w = max(1, round(min(width, height) * 0.004))
    if angle in HORIZON:  # sky above the horizon, ground below, each a palette colour
        horizon = round(height * (HORIZON[angle] + draws.horizon))
        panel = _shaded(width, height, sky, draws.tilt)
        panel.paste(_shaded(width, height - horizon, ground, draws.tilt), (0, horizon))
        draw = ImageDraw.Draw(panel)
        slope = height * 0.12 if angle == "dutch" else 0.0
        draw.line(
            [(0, horizon + slope), (width, horizon - slope)],
            fill=_mix(ink, ground, 0.5),
            width=line_w,
        )
    else:  # aerial / overhead: the ground seen from above, with a grid
        panel = _shaded(width, height, ground, draws.tilt)
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
    layout = layout_panel(
        shot=shot,
        description=description,
        size=size,
        angle=angle,
        movement=movement,
        width=width,
        height=height,
        seed=seed,
        reference_aspect=reference.width / reference.height if reference is not None else None,
        notes=notes,
        restyle=restyle,
        take=take,
        composition_of=composition_of,
    )
    accent = max(colors, key=lambda c: abs(_luma(c) - _luma(_mix(sky, ground, 0.5))))
    _subject(panel, layout.subject, fill=accent, outline=ink, reference=reference)
    _camera_move(ImageDraw.Draw(panel), layout.marks, ink, layout.line_width)
    _text(panel, layout.card, ink)
    return panel
