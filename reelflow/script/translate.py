"""Chinese renderings of English prompts, for reviewers who read Chinese first; English
renderings of Chinese prompt texts, for text encoders that read English (CLIP, T5).

Image models are prompted in English, but the director approving a storyboard or an image may think
in Chinese; showing both side by side avoids approving a prompt nobody fully read. Renderings are
a review aid, never an input to generation, so a failure returns None (shown as missing) instead of
failing the run, and results are cached by prompt hash so the same prompt is never paid for twice.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, MutableMapping

from pydantic import BaseModel, Field

from reelflow.llm import ChatClient, LLMError, system, user
from reelflow.store.artifacts import ArtifactStore, ObjectNotFound
from reelflow.store.keys import validate_key
from reelflow.storyboard import Storyboard

log = logging.getLogger("reelflow.script.translate")

TRANSLATE_PROMPT = """Render this English image-generation prompt in natural Simplified Chinese
for a film director reviewing it. Keep the meaning and every visual detail; keep trigger words,
brand names and model terms (e.g. "su7ultra", "8k") unchanged. Answer with JSON only."""


class ZhRendering(BaseModel):
    zh: str = Field(min_length=1, description="the Simplified Chinese rendering")


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(f"zh\n{prompt.strip()}".encode()).hexdigest()[:16]


def zh_rendering(
    prompt: str,
    client: ChatClient | None,
    cache: MutableMapping[str, str] | None = None,
) -> str | None:
    """The Chinese rendering of `prompt`, from the cache or the LLM; None when unavailable."""
    key = prompt_hash(prompt)
    if cache is not None and key in cache:
        return cache[key]
    if client is None or not prompt.strip():
        return None
    try:
        answer, _ = client.structured([system(TRANSLATE_PROMPT), user(prompt.strip())],
                                      ZhRendering)
    except LLMError as exc:
        log.warning("no Chinese rendering for prompt %s: %s", key, exc)
        return None
    if cache is not None:
        cache[key] = answer.zh
    return answer.zh


class StoreCache(MutableMapping[str, str]):
    """A translation cache in the artifact bucket (`translations/zh/{hash}.json`), shared by
    every run and machine that uses the bucket."""

    def __init__(self, store: ArtifactStore, prefix: str = "translations/zh/") -> None:
        self.store = store
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"

    def _key(self, key: str) -> str:
        return validate_key(f"{self.prefix}{key}.json")

    def __getitem__(self, key: str) -> str:
        try:
            return str(self.store.get_json(self._key(key))["zh"])
        except ObjectNotFound:
            raise KeyError(key) from None

    def __setitem__(self, key: str, value: str) -> None:
        self.store.put_json(self._key(key), {"zh": value}, {"kind": "translation"})

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.store.delete(self._key(key))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.store.exists(self._key(key))

    def __iter__(self) -> Iterator[str]:
        for k in self.store.list(self.prefix):
            yield k[len(self.prefix): -len(".json")]

    def __len__(self) -> int:
        return len(self.store.list(self.prefix))


# -- prompts for English text encoders -------------------------------------------------------

EN_PROMPT = """Translate this text from a film storyboard into a concise English image-generation
prompt phrase. Keep every visual detail, names, trigger words and brand names unchanged. Answer
with JSON only."""


class EnRendering(BaseModel):
    en: str = Field(min_length=1, description="the English rendering")


def en_rendering(
    text: str, client: ChatClient | None, cache: MutableMapping[str, str] | None = None
) -> str | None:
    """The English rendering of ``text`` for a text encoder, cached by text; None when there is
    no LLM or it failed (the caller then warns and keeps the original)."""
    key = "en-" + hashlib.sha256(f"en\n{text.strip()}".encode()).hexdigest()[:16]
    if cache is not None and key in cache:
        return cache[key]
    if client is None or not text.strip():
        return None
    try:
        answer, _ = client.structured([system(EN_PROMPT), user(text.strip())], EnRendering)
    except LLMError as exc:
        log.warning("no English rendering for %s: %s", key, exc)
        return None
    if cache is not None:
        cache[key] = answer.en
    return answer.en


def translate_for_encoder(
    storyboard: Storyboard,
    client: ChatClient | None,
    cache: MutableMapping[str, str] | None = None,
) -> tuple[Storyboard, list[str]]:
    """The storyboard with every prompt text that is not English (shot prompt/description,
    scene, character descriptions, visual style, lighting) rendered in English for the text
    encoder, and one warning per text left untranslated. Captions are never touched."""
    from reelflow.storyboard.prompts import _CJK

    warnings: list[str] = []

    def english(text: str, where: str) -> str:
        if not text or not _CJK.search(text):
            return text
        out = en_rendering(text, client, cache)
        if out is None:
            warnings.append(f"{where}: left in Chinese (no translation available)")
            return text
        return out

    style = storyboard.style.model_copy(
        update={
            "visual_style": english(storyboard.style.visual_style, "style.visual_style"),
            "lighting": english(storyboard.style.lighting, "style.lighting"),
        }
    )
    characters = [
        c.model_copy(update={"description": english(c.description, f"character {c.name}")})
        for c in storyboard.characters
    ]
    shots = []
    for s in storyboard.shots:
        text = s.prompt or s.description
        rendered = english(text, f"shot {s.id}")
        shots.append(
            s.model_copy(
                update={
                    "prompt": rendered if rendered != text else s.prompt,
                    "scene": english(s.scene, f"shot {s.id} scene"),
                }
            )
        )
    board = storyboard.model_copy(update={"style": style, "characters": characters, "shots": shots})
    return board, warnings
