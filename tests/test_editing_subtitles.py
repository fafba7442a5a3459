"""Subtitles: SRT/ASS from per-shot captions, burned in (libass and Pillow overlay), soft tracks."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pysubs2
import pytest

from reelflow.editing.fonts import DEFAULT_FONT_FAMILY
from reelflow.editing.subtitles import (
    Caption,
    burn_subtitles,
    caption_times,
    mux_soft_subtitles,
    write_ass,
    write_srt,
)
from reelflow.media.ffmpeg import ffmpeg_exe, has_filter, run
from reelflow.media.frames import iter_frames
from reelflow.media.probe import probe
from tests.support.clips import lavfi_clip

W, H, FPS = 320, 180, 24
CAPTIONS = [
    Caption(duration=1.0, zh="冬天的山", en="Winter mountains"),
    Caption(duration=0.5),  # no caption on this shot
    Caption(duration=1.5, zh="春天的城市", en="A city in spring"),
]


@pytest.fixture(scope="module")
def grey_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lavfi_clip(tmp_path_factory.mktemp("subs") / "grey.mp4", "color=c=gray", 3,
                      f"{W}x{H}", FPS)


def test_caption_times_follow_shot_durations() -> None:
    assert caption_times(CAPTIONS) == [(0, 1000), (1000, 1500), (1500, 3000)]


def test_srt_has_both_languages_and_shot_timings(tmp_path: Path) -> None:
    text = write_srt(CAPTIONS, tmp_path / "a.srt").read_text(encoding="utf-8")
    assert "00:00:00,000 --> 00:00:01,000\n冬天的山\nWinter mountains" in text
    assert "00:00:01,500 --> 00:00:03,000\n春天的城市\nA city in spring" in text
    assert len(re.findall(r"-->", text)) == 2  # the uncaptioned shot has no block
    only_en = write_srt(CAPTIONS, tmp_path / "en.srt", languages=["en"]).read_text()
    assert "Winter mountains" in only_en and "冬天" not in only_en


def test_ass_is_styled_with_the_cjk_font(tmp_path: Path) -> None:
    path = write_ass(CAPTIONS, tmp_path / "a.ass", width=W, height=H)
    subs = pysubs2.load(str(path))
    assert subs.info["PlayResX"] == str(W) and subs.info["PlayResY"] == str(H)
    assert subs.styles["Default"].fontname == DEFAULT_FONT_FAMILY
    assert [(e.start, e.end) for e in subs] == [(0, 1000), (1500, 3000)]
    assert "冬天的山" in subs[0].text and "Winter mountains" in subs[0].text
    assert subs[0].plaintext == "冬天的山\nWinter mountains"


def _caption_ink(video: Path) -> list[float]:
    """Per frame: mean deviation from grey in the bottom third (where captions sit)."""
    return [float(np.abs(f[H * 2 // 3 :].astype(int) - 128).mean()) for f in iter_frames(video)]


@pytest.mark.parametrize("method", ["libass", "overlay"])
def test_burned_subtitles_change_caption_area_only_when_shown(
    grey_clip: Path, tmp_path: Path, method: str
) -> None:
    if method == "libass" and not has_filter("subtitles"):
        pytest.skip("this ffmpeg build has no libass")
    out = burn_subtitles(grey_clip, CAPTIONS, tmp_path / f"{method}.mp4", method=method)
    info = probe(out)
    assert (info.width, info.height, info.frame_count, info.codec) == (W, H, 72, "h264")
    ink = _caption_ink(out)
    assert ink[12] > 1.0 and ink[60] > 1.0  # captioned shots
    assert ink[30] < 0.3  # shot 2 has no caption (frames 24..35)
    top = [float(np.abs(f[: H // 2].astype(int) - 128).mean()) for f in iter_frames(out)]
    assert max(top) < 0.3  # nothing drawn above the caption area


def test_burn_libass_renders_cjk_with_the_pip_font(grey_clip: Path, tmp_path: Path) -> None:
    """The Chinese line must be drawn (no system CJK font exists to fall back to)."""
    if not has_filter("subtitles"):
        pytest.skip("this ffmpeg build has no libass")
    zh_only = [Caption(duration=3.0, zh="冬天的山")]
    out = burn_subtitles(grey_clip, zh_only, tmp_path / "zh.mp4", languages=["zh"])
    frame = next(iter(iter_frames(out))).astype(int)
    glyphs = np.abs(frame - 128).sum(axis=2) > 100
    cols = np.flatnonzero(glyphs.any(axis=0))
    assert glyphs.sum() > 40 and cols.size > 0
    # four separate ideographs across a reasonable width, not an empty or one-box render
    assert cols[-1] - cols[0] > 25


def test_soft_subtitles_are_language_tagged_mov_text(grey_clip: Path, tmp_path: Path) -> None:
    zh = write_srt(CAPTIONS, tmp_path / "zh.srt", languages=["zh"])
    en = write_srt(CAPTIONS, tmp_path / "en.srt", languages=["en"])
    out = mux_soft_subtitles(grey_clip, {"zh": zh, "en": en}, tmp_path / "soft.mp4")
    header = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(out)], capture_output=True, text=True
    ).stderr
    assert re.search(r"\(chi\): Subtitle: mov_text", header)
    assert re.search(r"\(eng\): Subtitle: mov_text", header)
    assert probe(out).frame_count == 72  # video copied untouched
    # extract the Chinese track back to SRT: the text survives the round trip
    back = tmp_path / "back.srt"
    run(["-i", str(out), "-map", "0:s:0", str(back)], what="extract subtitles")
    assert "春天的城市" in back.read_text(encoding="utf-8")


# -- layout: wrapping by width, safe areas, never overflowing ------------------------------------

ZH25 = "我们一起去公园看樱花，然后喝一杯咖啡再慢慢走回家"
EN_LONG = (
    "We walk to the park together to see the cherry blossoms, then have a coffee and stroll home"
)


def test_wrap_breaks_cjk_anywhere_but_not_before_closing_punctuation() -> None:
    from reelflow.editing.caption_layout import display_width, wrap_text

    lines = wrap_text("我们一起去公园看樱花，然后喝一杯咖啡。", 18)
    assert all(display_width(line) <= 18 for line in lines)
    assert "".join(lines) == "我们一起去公园看樱花，然后喝一杯咖啡。"
    assert not any(line[0] in "，。" for line in lines)
    assert wrap_text("Into a city in bloom where everyone walks", 20) == [
        "Into a city in bloom",
        "where everyone walks",
    ]
    # a word longer than a line is split rather than overflowing
    assert all(display_width(x) <= 6 for x in wrap_text("Supercalifragilistic", 6))


def test_layout_shrinks_then_shortens_but_never_leaves_the_safe_area() -> None:
    from reelflow.editing.caption_layout import SAFE_AREAS, layout_caption
    from reelflow.editing.fonts import cjk_font_path

    font = cjk_font_path()
    layout = layout_caption([ZH25, EN_LONG], 720, 1280, font_path=font)
    assert layout.area is SAFE_AREAS["9:16"]
    assert "".join(layout.blocks[0].lines) == ZH25  # nothing lost
    assert len(layout.blocks[0].lines) == 2
    huge = layout_caption([ZH25 * 20], 720, 1280, font_path=font)
    assert huge.text_height() <= huge.box_height and huge.blocks[0].lines[-1].endswith("…")


@pytest.fixture(scope="module")
def vertical_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lavfi_clip(tmp_path_factory.mktemp("subs916") / "v.mp4", "color=c=gray", 2,
                      "720x1280", 4)


@pytest.mark.parametrize("method", ["libass", "overlay"])
def test_vertical_chinese_and_long_english_captions_stay_in_the_9x16_safe_area(
    vertical_clip: Path, tmp_path: Path, method: str
) -> None:
    """A 25-character Chinese caption and a long English one on a 720x1280 film: wrapped, inside
    the short-video safe area (above the bottom 22% and inside the side margins), nothing cut."""
    from reelflow.editing.caption_layout import SAFE_AREAS

    if method == "libass" and not has_filter("subtitles"):
        pytest.skip("this ffmpeg build has no libass")
    captions = [Caption(duration=1.0, zh=ZH25, en=EN_LONG), Caption(duration=1.0, en=EN_LONG)]
    out = burn_subtitles(vertical_clip, captions, tmp_path / "v.mp4", method=method)
    clean = next(iter(iter_frames(vertical_clip))).astype(int)
    area = SAFE_AREAS["9:16"]
    w, h = 720, 1280
    for index, frame in enumerate(iter_frames(out)):
        ink = np.abs(frame.astype(int) - clean).sum(axis=2) > 60
        rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
        assert rows.size and cols.size, f"frame {index}: no caption drawn"
        assert cols[0] >= w * area.left - 2 and cols[-1] <= w * (1 - area.right) + 2, (
            f"frame {index}: caption spans x {cols[0]}..{cols[-1]}"
        )
        assert rows[0] >= h * area.top and rows[-1] <= h * (1 - area.bottom) + 2, (
            f"frame {index}: caption spans y {rows[0]}..{rows[-1]}"
        )
        # wrapped: two lines per language stacked (one line each would be < 100 / < 45 px tall)
        assert rows[-1] - rows[0] > (120 if index < 4 else 55), f"frame {index}: not wrapped"
        # not a one-line caption squeezed to a sliver: it uses most of the safe width
        assert cols[-1] - cols[0] > 0.6 * w * (1 - area.left - area.right)


@pytest.mark.parametrize(
    ("size", "preset"), [((1920, 1080), "16:9"), ((720, 1280), "9:16"), ((1080, 1080), "1:1")]
)
def test_every_platform_preset_keeps_a_long_caption_inside_its_safe_area(
    size: tuple[int, int], preset: str
) -> None:
    from reelflow.editing.caption_layout import SAFE_AREAS, layout_caption, preset_for
    from reelflow.editing.fonts import cjk_font_path

    w, h = size
    area = preset_for(w, h)
    assert area is SAFE_AREAS[preset]
    layout = layout_caption([ZH25 * 2, EN_LONG], w, h, font_path=cjk_font_path())
    from PIL import ImageFont

    from reelflow.editing.caption_layout import em_size

    for block in layout.blocks:
        font = ImageFont.truetype(str(cjk_font_path()), em_size(cjk_font_path(), block.size))
        for line in block.lines:
            assert font.getlength(line) <= w * (1 - area.left - area.right)
    assert layout.text_height() <= h * (1 - area.top - area.bottom)
