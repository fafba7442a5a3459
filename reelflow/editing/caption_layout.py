"""Caption layout: line breaking by display width, sizes relative to the frame, platform safe areas.

Why this exists: a caption that is one ASS line set at a fixed share of the frame height fits a
1920x1080 film, but on a 720x1280 vertical film a 15-character Chinese line touches both edges and
a 25-character one runs off the frame; and short-video apps cover the bottom fifth of the picture
with their own interface. So captions are laid out here, before any renderer sees them:

- **safe area per platform preset** (:data:`SAFE_AREAS`): 9:16 short video keeps captions above
  the bottom 22% the apps cover and clear of the right-hand button column; 16:9 keeps to the
  classic 5% title-safe margins; 1:1 feeds cover a little of the bottom;
- **font size relative to the frame's short side**, so a vertical and a landscape film read alike;
- **line breaking by width**: Latin text breaks at spaces, CJK text between any two characters
  but never before closing punctuation (，。！？…) nor after opening punctuation (“（《); a word
  longer than a line is split by characters. Widths are measured with the font that renders them
  (FreeType through Pillow) or, without a font, by *display width* (full-width characters count 2);
- **balanced lines**: a caption that needs two lines gets two lines of about the same width
  (the narrowest width that still gives that many lines), never a full line and one word or
  character left alone under it;
- **never overflow**: if the lines do not fit the safe area's height, the size shrinks; if they
  still do not fit at the smallest readable size, the text is shortened with an ellipsis.

The result, :class:`CaptionLayout`, carries explicit line breaks, the font size and the margins;
libass gets them with ``WrapStyle: 2`` (no re-wrapping), the Pillow overlay draws the same lines.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

__all__ = [
    "SAFE_AREAS",
    "CaptionLayout",
    "SafeArea",
    "balanced_wrap",
    "display_width",
    "layout_caption",
    "preset_for",
    "wrap_text",
]


@dataclass(frozen=True)
class SafeArea:
    """Margins, as fractions of the frame, that captions must stay inside."""

    name: str
    left: float
    right: float
    top: float
    bottom: float
    #: primary caption size as a fraction of the frame's short side
    size_ratio: float
    #: lines allowed per language before the size shrinks
    max_lines: int = 2


#: Platform presets. 9:16: Douyin/TikTok/Reels/Shorts draw the description, music ticker and
#: buttons over the bottom ~20-25% and a button column on the right.
#: Sizes: a phone shows a 9:16 film at the screen's full width, so its captions are sized to
#: the width and read like a phone's own text (Chinese glyphs ~5% of the width: 54 px at
#: 1080x1920); a 16:9 film on a phone is small, on a TV far away: 6.5% of its height.
SAFE_AREAS: dict[str, SafeArea] = {
    "9:16": SafeArea("9:16", left=0.08, right=0.16, top=0.12, bottom=0.22, size_ratio=0.08),
    "16:9": SafeArea("16:9", left=0.05, right=0.05, top=0.05, bottom=0.06, size_ratio=0.065),
    "1:1": SafeArea("1:1", left=0.06, right=0.06, top=0.06, bottom=0.10, size_ratio=0.07),
}

#: No line may start with these (closing punctuation, in CJK and Latin).
NO_LINE_START = set("，。、；：！？）」』》〉】〕”’…—～·,.;:!?)]}%\"'ー々〻ゝゞ")
#: No line may end with these (opening punctuation).
NO_LINE_END = set("（「『《〈【〔“‘([{")

SECOND_LANGUAGE_SCALE = 0.75
MIN_SCALE = 0.6  # the smallest size (relative to the preset's) still readable on a phone


def preset_for(width: int, height: int) -> SafeArea:
    """The preset whose aspect ratio is closest to ``width`` x ``height``."""
    ratio = width / height

    def distance(name: str) -> float:
        a, b = (int(v) for v in name.split(":"))
        return abs(ratio - a / b)

    return SAFE_AREAS[min(SAFE_AREAS, key=distance)]


def _wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def display_width(text: str) -> int:
    """Terminal-style display width: full-width (CJK) characters count 2, others 1."""
    return sum(2 if _wide(ch) else 1 for ch in text)


def _units(text: str) -> list[str]:
    """Unbreakable pieces: a Latin word (with its trailing spaces), or one CJK character;
    closing punctuation glued to what precedes it, opening punctuation to what follows."""
    units: list[str] = []
    word = ""
    for ch in text:
        if _wide(ch) and ch not in NO_LINE_START and ch not in NO_LINE_END:
            if word:
                units.append(word)
                word = ""
            units.append(ch)
        elif ch.isspace():
            word += ch
            units.append(word)
            word = ""
        else:
            if word and word[-1].isspace():
                units.append(word)
                word = ""
            word += ch
    if word:
        units.append(word)
    glued: list[str] = []
    carry = ""
    for unit in units:
        if unit.strip() and unit[0] in NO_LINE_START and glued and not carry:
            glued[-1] += unit
            continue
        unit = carry + unit
        carry = ""
        if unit.strip() and unit.rstrip()[-1] in NO_LINE_END:
            carry = unit
            continue
        glued.append(unit)
    if carry:
        glued.append(carry)
    # merge whitespace-only pieces into the previous one (a break opportunity, not content)
    out: list[str] = []
    for unit in glued:
        if out and not unit.strip():
            out[-1] += unit
        else:
            out.append(unit)
    return out


def wrap_text(
    text: str, max_width: float, measure: Callable[[str], float] = display_width
) -> list[str]:
    """Break ``text`` into lines no wider than ``max_width`` as measured by ``measure``.

    Latin breaks at spaces, CJK anywhere except before closing / after opening punctuation;
    a piece wider than a whole line is split by characters, so no line ever exceeds the width.
    """
    text = " ".join(text.split())
    lines: list[str] = []
    line = ""
    for unit in _units(text):
        candidate = line + unit
        if measure(candidate.rstrip()) <= max_width:
            line = candidate
            continue
        if line.strip():
            lines.append(line.rstrip())
        line = unit.lstrip() if lines else unit
        while measure(line.rstrip()) > max_width and len(line.rstrip()) > 1:
            cut = len(line)
            while cut > 1 and measure(line[:cut].rstrip()) > max_width:
                cut -= 1
            lines.append(line[:cut].rstrip())
            line = line[cut:].lstrip()
    if line.strip():
        lines.append(line.rstrip())
    return lines


def balanced_wrap(
    text: str, max_width: float, measure: Callable[[str], float] = display_width
) -> list[str]:
    """:func:`wrap_text` with lines of about equal width: the narrowest width (searched between
    the widest line's share and ``max_width``) that still wraps into as many lines as
    ``max_width`` does. So "A flash of yellow on the snowy / peaks" becomes "A flash of
    yellow / on the snowy peaks"."""
    lines = wrap_text(text, max_width, measure)
    if len(lines) < 2:
        return lines
    low, high = max(measure(line) for line in lines) / len(lines), float(max_width)
    best = lines
    for _ in range(14):  # bisect to about max_width / 16000
        mid = (low + high) / 2
        candidate = wrap_text(text, mid, measure)
        if len(candidate) <= len(lines):
            best, high = candidate, mid
        else:
            low = mid
    return best


@lru_cache(maxsize=64)
def _font(path: str, px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, px)


def em_size(font_path: Path | str, ass_size: int) -> int:
    """The FreeType em size that matches an ASS font size (ASS sizes the ascent+descent cell)."""
    ascent, descent = _font(str(font_path), 100).getmetrics()
    return max(1, round(ass_size * 100 / (ascent + descent)))


@dataclass(frozen=True)
class Block:
    """One language's lines at one ASS size."""

    lines: tuple[str, ...]
    size: int  # ASS font size (cell height in pixels)


@dataclass(frozen=True)
class CaptionLayout:
    """Where and how big a caption is drawn on a ``width`` x ``height`` frame."""

    width: int
    height: int
    area: SafeArea
    blocks: tuple[Block, ...]
    outline: float

    @property
    def margin_left(self) -> int:
        return round(self.width * self.area.left)

    @property
    def margin_right(self) -> int:
        return round(self.width * self.area.right)

    @property
    def margin_bottom(self) -> int:
        return round(self.height * self.area.bottom)

    @property
    def box_width(self) -> int:
        return self.width - self.margin_left - self.margin_right

    @property
    def box_height(self) -> int:
        return self.height - round(self.height * self.area.top) - self.margin_bottom

    def text_height(self) -> float:
        return sum(len(b.lines) * b.size for b in self.blocks)

    def ass_text(self) -> str:
        """ASS event text with explicit breaks (``\\N``) and a size override per language."""
        parts = []
        base = self.blocks[0].size if self.blocks else 0
        for block in self.blocks:
            prefix = "" if block.size == base and not parts else f"{{\\fs{block.size}}}"
            parts.append(prefix + "\\N".join(block.lines))
        return "\\N".join(parts)


def layout_caption(
    texts: Sequence[str],
    width: int,
    height: int,
    *,
    area: SafeArea | None = None,
    font_path: Path | str | None = None,
) -> CaptionLayout:
    """Lay out one caption (one text per language, first is primary) inside the safe area.

    Shrinks the size (down to :data:`MIN_SCALE` of the preset's) until every language fits in
    ``area.max_lines`` lines and the block fits the area's height; past that (or past one
    extra line per language), the text is shortened with an ellipsis. Widths include the
    outline on both sides.
    """
    area = area or preset_for(width, height)
    texts = [t.strip() for t in texts if t and t.strip()]
    base = area.size_ratio * min(width, height)
    layout: CaptionLayout | None = None
    scale = 1.0
    while True:
        size = max(8, round(base * scale))
        outline = max(1.0, size * 0.06)
        box_w = width * (1 - area.left - area.right) - 2 * outline - 2
        blocks = []
        for i, text in enumerate(texts):
            px = size if i == 0 else max(8, round(size * SECOND_LANGUAGE_SCALE))
            measure = _measurer(font_path, px)
            blocks.append(Block(tuple(balanced_wrap(text, box_w, measure)), px))
        layout = CaptionLayout(width, height, area, tuple(blocks), outline)
        fits_lines = all(len(b.lines) <= area.max_lines for b in blocks)
        fits_height = layout.text_height() + 2 * outline <= layout.box_height
        if (fits_lines and fits_height) or scale <= MIN_SCALE:
            break
        scale = max(MIN_SCALE, scale - 0.1)
    limit = area.max_lines + 1  # past this, a caption covers the picture: shorten it
    while layout.blocks and (
        layout.text_height() + 2 * layout.outline > layout.box_height
        or any(len(b.lines) > limit for b in layout.blocks)
    ):
        layout = _shorten(layout, font_path)
    return layout


def _measurer(font_path: Path | str | None, ass_size: int) -> Callable[[str], float]:
    if font_path is None:
        return lambda s: display_width(s) * ass_size / 2
    font = _font(str(font_path), em_size(font_path, ass_size))
    return lambda s: float(font.getlength(s))


def _shorten(layout: CaptionLayout, font_path: Path | str | None) -> CaptionLayout:
    """Drop the last line of the longest block and end the one before it with an ellipsis."""
    blocks = list(layout.blocks)
    i = max(range(len(blocks)), key=lambda k: len(blocks[k].lines))
    block = blocks[i]
    if len(block.lines) <= 1:
        blocks.pop(i)
    else:
        measure = _measurer(font_path, block.size)
        box_w = layout.box_width - 2 * layout.outline - 2
        last = block.lines[-2]
        while last and measure(last + "…") > box_w:
            last = last[:-1]
        blocks[i] = Block((*block.lines[:-2], last.rstrip() + "…"), block.size)
    return CaptionLayout(layout.width, layout.height, layout.area, tuple(blocks), layout.outline)
