"""The CJK-capable font that titles and subtitles are set in, installed with pip.

Covers and captions carry Chinese and English, so the font must have both; a system font is never
assumed (render workers are bare containers and CI machines differ). The default is Noto Sans SC
(SIL OFL 1.1) from the PyPI package ``pylopdf-fonts-zh-cn``, a single-face OpenType file that
both Pillow/FreeType and libass read. ``$REELFLOW_FONT`` or an explicit path overrides it.
"""

from __future__ import annotations

import os
from pathlib import Path

from reelflow.errors import ConfigError

__all__ = ["DEFAULT_FONT_FAMILY", "FontNotFoundError", "cjk_font_path"]

#: Family name inside the default font file, which libass (ASS ``Fontname``) matches on.
DEFAULT_FONT_FAMILY = "Noto Sans SC"


class FontNotFoundError(ConfigError, FileNotFoundError):
    """No usable font: says which package to install."""


def cjk_font_path(font_path: str | os.PathLike[str] | None = None) -> Path:
    """Return the font file to use: ``font_path``, else ``$REELFLOW_FONT``, else Noto Sans SC."""
    chosen = font_path or os.environ.get("REELFLOW_FONT")
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise FontNotFoundError(f"font file not found: {path}")
        return path
    try:
        import pylopdf_fonts_zh_cn
    except ImportError as exc:
        raise FontNotFoundError(
            "no CJK font: `pip install pylopdf-fonts-zh-cn` (Noto Sans SC) or set REELFLOW_FONT"
        ) from exc
    path = Path(pylopdf_fonts_zh_cn.sans_path())
    if not path.is_file():
        raise FontNotFoundError(f"pylopdf-fonts-zh-cn is installed but {path} is missing")
    return path
