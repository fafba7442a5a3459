"""Subtitles: one caption per shot (Chinese and English), timed by the shots' durations.

Captions become SRT (players, platforms) and ASS (styled: font, outline, relative sizes) through
``pysubs2``. They reach the picture in one of two ways:

- **burned in** (:func:`burn_subtitles`): ffmpeg's ``subtitles`` filter (libass) with
  ``fontsdir`` pointing at the pip-installed CJK font, so no system font is ever looked up;
  builds without libass fall back to captions rendered with Pillow in the same font and
  composited with ``overlay`` (``method="overlay"`` forces that path);
- **soft** (:func:`mux_soft_subtitles`): ``mov_text`` tracks in the MP4, one per language, with
  the video stream copied untouched.

Timing: caption ``i`` is shown from the start of shot ``i`` to its end, on the same cumulative
timeline as :mod:`reelflow.editing.assemble`, so captions change exactly at the cuts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import pysubs2
from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel, ConfigDict, Field

from reelflow.editing.caption_layout import (
    CaptionLayout,
    SafeArea,
    em_size,
    layout_caption,
    preset_for,
)
from reelflow.editing.fonts import DEFAULT_FONT_FAMILY, cjk_font_path
from reelflow.media.encode import VideoEncode
from reelflow.media.ffmpeg import PathLike, has_filter, run
from reelflow.media.probe import probe

__all__ = [
    "Caption",
    "add_soft_captions",
    "build_subtitles",
    "burn_subtitles",
    "caption_languages",
    "caption_times",
    "mux_soft_subtitles",
    "write_ass",
    "write_srt",
]

Language = Literal["zh", "en"]
#: ISO 639-2 codes the MP4 language field takes.
ISO639_2 = {"zh": "chi", "en": "eng"}


class Caption(BaseModel):
    """The caption of one shot; empty text means the shot has none in that language."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    duration: float = Field(gt=0, description="the shot's duration in seconds")
    zh: str = ""
    en: str = ""


def caption_languages(captions: Sequence[Caption]) -> list[Language]:
    """The languages (in ``zh``, ``en`` order) that at least one caption has text in."""
    langs: list[Language] = ["zh", "en"]
    return [lang for lang in langs if any(getattr(c, lang).strip() for c in captions)]


def caption_times(captions: Sequence[Caption]) -> list[tuple[int, int]]:
    """``(start_ms, end_ms)`` of every shot on the cumulative timeline."""
    times = []
    t = 0.0
    for c in captions:
        times.append((round(t * 1000), round((t + c.duration) * 1000)))
        t += c.duration
    return times


def _event_texts(caption: Caption, languages: Sequence[Language]) -> list[str]:
    return [t for t in (getattr(caption, lang).strip() for lang in languages) if t]


def build_subtitles(
    captions: Sequence[Caption],
    *,
    languages: Sequence[Language] = ("zh", "en"),
    width: int = 1920,
    height: int = 1080,
    font_family: str = DEFAULT_FONT_FAMILY,
    area: SafeArea | None = None,
    wrap: bool = True,
) -> pysubs2.SSAFile:
    """A ``pysubs2`` file with one event per captioned shot, languages stacked top to bottom.

    Each event is laid out by :func:`~reelflow.editing.caption_layout.layout_caption` for a
    ``width`` x ``height`` frame: explicit line breaks measured with the font, a size relative
    to the frame's short side, margins from the platform's safe area (``area``, default: the
    preset closest to the frame's aspect). ``wrap=False`` keeps one line per language (SRT).
    """
    area = area or preset_for(width, height)
    font = cjk_font_path() if wrap else None
    base = max(8, round(area.size_ratio * min(width, height)))
    subs = pysubs2.SSAFile()
    subs.info["PlayResX"] = str(width)
    subs.info["PlayResY"] = str(height)
    subs.info["WrapStyle"] = "2"  # breaks are ours; libass must not re-wrap
    subs.info["ScaledBorderAndShadow"] = "yes"
    subs.styles["Default"] = pysubs2.SSAStyle(
        fontname=font_family,
        fontsize=base,
        primarycolor=pysubs2.Color(255, 255, 255),
        outlinecolor=pysubs2.Color(0, 0, 0),
        backcolor=pysubs2.Color(0, 0, 0, 128),
        outline=max(1.0, base * 0.06),
        shadow=0,
        alignment=pysubs2.Alignment.BOTTOM_CENTER,
        marginv=round(height * area.bottom),
        marginl=round(width * area.left),
        marginr=round(width * area.right),
    )
    for caption, (start, end) in zip(captions, caption_times(captions), strict=True):
        texts = _event_texts(caption, languages)
        if not texts:
            continue
        if wrap:
            layout = layout_caption(texts, width, height, area=area, font_path=font)
            text = "".join(
                ("\\N" if i else "") + f"{{\\fs{block.size}}}" + "\\N".join(block.lines)
                for i, block in enumerate(layout.blocks)
            )
        else:
            text = "\\N".join(texts)
        subs.append(pysubs2.SSAEvent(start=start, end=end, text=text))
    return subs


def write_srt(
    captions: Sequence[Caption], path: PathLike, *, languages: Sequence[Language] = ("zh", "en")
) -> Path:
    """Write captions as SRT (UTF-8), one block per shot, one line per language."""
    out = Path(path)
    build_subtitles(captions, languages=languages, wrap=False).save(
        str(out), format_="srt", encoding="utf-8"
    )
    return out


def write_ass(
    captions: Sequence[Caption],
    path: PathLike,
    *,
    languages: Sequence[Language] = ("zh", "en"),
    width: int = 1920,
    height: int = 1080,
    area: SafeArea | None = None,
) -> Path:
    """Write captions as ASS laid out for a ``width`` x ``height`` picture."""
    out = Path(path)
    subs = build_subtitles(captions, languages=languages, width=width, height=height, area=area)
    subs.save(str(out), format_="ass", encoding="utf-8")
    return out


def _encode_args(crf: int) -> list[str]:
    return [*VideoEncode(crf=crf).args(), "-c:a", "copy", "-movflags", "+faststart"]


def _burn_libass(
    video: Path,
    captions: Sequence[Caption],
    out: Path,
    work: Path,
    *,
    languages: Sequence[Language] = ("zh", "en"),
    area: SafeArea | None = None,
) -> None:
    info = probe(video)
    ass = write_ass(
        captions,
        work / "subs.ass",
        languages=languages,
        width=info.width,
        height=info.height,
        area=area,
    )
    fonts = work / "fonts"
    fonts.mkdir()
    font = cjk_font_path()
    os.symlink(font, fonts / font.name)
    # Paths inside a filter graph need escaping; the work dir is ours and has none of : ' \ ,
    vf = f"subtitles=filename={ass}:fontsdir={fonts}"
    run(
        ["-i", str(video), "-map", "0:v:0", "-map", "0:a?", "-vf", vf, *_encode_args(18), str(out)],
        what=f"burn subtitles into {video.name}",
    )


def caption_image(layout: CaptionLayout) -> Image.Image:
    """A transparent full-frame image with the laid-out caption, drawn as libass would."""
    font_file = cjk_font_path()
    img = Image.new("RGBA", (layout.width, layout.height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    cx = layout.margin_left + layout.box_width / 2
    y = layout.height - layout.margin_bottom
    for block in reversed(layout.blocks):
        font = ImageFont.truetype(str(font_file), em_size(font_file, block.size))
        stroke = max(1, round(layout.outline))
        for line in reversed(block.lines):
            draw.text((cx, y), line, font=font, anchor="md", fill=(255, 255, 255, 255),
                      stroke_width=stroke, stroke_fill=(0, 0, 0, 255))  # fmt: skip
            y -= block.size
    return img


def _burn_overlay(
    video: Path,
    captions: Sequence[Caption],
    out: Path,
    work: Path,
    *,
    languages: Sequence[Language] = ("zh", "en"),
    area: SafeArea | None = None,
) -> None:
    """Fallback without libass: one PNG per caption, chained ``overlay`` enabled per time span."""
    info = probe(video)
    font = cjk_font_path()
    inputs: list[str] = []
    chain: list[str] = []
    last = "0:v"
    k = 0
    for caption, (start, end) in zip(captions, caption_times(captions), strict=True):
        texts = _event_texts(caption, languages)
        if not texts:
            continue
        png = work / f"cap{k:04d}.png"
        layout = layout_caption(texts, info.width, info.height, area=area, font_path=font)
        caption_image(layout).save(png)
        inputs += ["-i", str(png)]
        label = f"v{k}"
        chain.append(
            f"[{last}][{k + 1}:v]overlay=0:0:"
            f"enable='between(t,{start / 1000:.3f},{(end - 1) / 1000:.3f})'[{label}]"
        )
        last = label
        k += 1
    if not chain:
        shutil.copyfile(video, out)
        return
    run(
        ["-i", str(video), *inputs, "-filter_complex", ";".join(chain), "-map", f"[{last}]",
         "-map", "0:a?", *_encode_args(18), str(out)],
        what=f"overlay captions onto {video.name}",
    )  # fmt: skip


def burn_subtitles(
    video: PathLike,
    captions: Sequence[Caption],
    out: PathLike,
    *,
    languages: Sequence[Language] = ("zh", "en"),
    method: Literal["auto", "libass", "overlay"] = "auto",
    area: SafeArea | None = None,
) -> Path:
    """Render ``captions`` into the picture of ``video``; write H.264 to ``out`` (audio copied).

    ``auto`` uses libass when this ffmpeg has the ``subtitles`` filter, else Pillow overlays.
    Captions stay inside ``area`` (default: the platform preset closest to the frame's aspect).
    """
    video, out = Path(video), Path(out)
    if method == "auto":
        method = "libass" if has_filter("subtitles") else "overlay"
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="reelflow-subs-"))
    try:
        tmp = work / f"out{out.suffix or '.mp4'}"
        if method == "libass":
            _burn_libass(video, captions, tmp, work, languages=languages, area=area)
        else:
            _burn_overlay(video, captions, tmp, work, languages=languages, area=area)
        shutil.move(tmp, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def mux_soft_subtitles(video: PathLike, tracks: Mapping[Language, PathLike], out: PathLike) -> Path:
    """Add SRT files as ``mov_text`` tracks (language-tagged) to ``video`` without re-encoding.

    ``tracks`` maps a language to its SRT, e.g. ``{"zh": "zh.srt", "en": "en.srt"}``; the first
    becomes the default track.
    """
    video, out = Path(video), Path(out)
    args = ["-i", str(video)]
    for srt in tracks.values():
        args += ["-i", str(srt)]
    args += ["-map", "0:v", "-map", "0:a?"]
    for i, lang in enumerate(tracks):
        args += ["-map", f"{i + 1}:0", f"-metadata:s:s:{i}", f"language={ISO639_2[lang]}"]
        args += [f"-disposition:s:{i}", "default" if i == 0 else "0"]
    tmp = out.with_name(out.stem + ".tmp" + (out.suffix or ".mp4"))
    args += ["-c:v", "copy", "-c:a", "copy", "-c:s", "mov_text", "-movflags", "+faststart"]
    run([*args, str(tmp)], what=f"mux subtitles into {video.name}")
    os.replace(tmp, out)
    return out


def add_soft_captions(video: PathLike, captions: Sequence[Caption], out: PathLike) -> Path:
    """``video`` with one soft caption track per language that has text (no re-encoding).

    A language no caption uses gets no track: its SRT would be empty, and ffmpeg refuses an
    empty SRT ("Invalid data found when processing input"). Without any text, ``video`` itself
    is returned."""
    out = Path(out)
    languages = caption_languages(captions)
    if not languages:
        return Path(video)
    work = Path(tempfile.mkdtemp(prefix="reelflow-srt-", dir=out.parent))
    try:
        tracks = {
            lang: write_srt(captions, work / f"{lang}.srt", languages=(lang,))
            for lang in languages
        }
        return mux_soft_subtitles(video, tracks, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
