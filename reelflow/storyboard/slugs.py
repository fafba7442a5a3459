"""Slugs (shot ids, character and project names) from free text in any language.

Ids are `[a-z0-9-]` so they are safe in object keys and URLs; a Chinese title or subject is
written in pinyin (`雪山` -> `xue-shan`) rather than replaced by a hash, so the id still reads.
"""

from __future__ import annotations

import hashlib
import re

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def romanize(text: str) -> str:
    """The text with every Chinese character replaced by its pinyin syllable (no tones)."""
    if not _CJK.search(text):
        return text
    from pypinyin import lazy_pinyin  # its dictionaries load in ~0.3 s: only when needed

    return " ".join(lazy_pinyin(text))


def slugify(text: str, fallback: str = "film", max_words: int = 4) -> str:
    """A readable slug of the text's first words (pinyin syllables count half a word); a text
    with no letters at all gets `fallback-HASH`."""
    limit = max_words * 2 if _CJK.search(text) else max_words
    words = re.findall(r"[a-z0-9]+", romanize(text).lower())[:limit]
    slug = "-".join(words)[:48].strip("-")
    if slug:
        return slug
    return f"{fallback}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
