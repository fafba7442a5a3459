"""Deterministic prompt composition: characters + shot + camera + scene + style.

The same storyboard always yields the same prompt, so a prompt is part of an image's spec hash and
a cached image is found again. Parts are ordered by importance: when the token budget is exceeded,
the least important parts are the ones cut, whole, and what is cut is reported word for word instead
of being silently truncated by the tokenizer. CLIP reads 75 text tokens at a time, but longer
prompts are encoded window by window and joined (`reelflow/imaging/long_prompts.py`), so an SD or
SDXL prompt may fill several windows.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import BaseModel

from reelflow.storyboard import Camera, Shot, Storyboard
from reelflow.storyboard.prompt_syntax import plain_text

#: text tokens in one pass of CLIP (77 minus the start and end tokens)
CLIP_WINDOW = 75
#: windows an SD/SDXL prompt may fill: past four, a prompt dilutes more than it adds
CLIP_WINDOWS = 4
# Usable tokens per family (CLIP in windows; Flux's T5 reads 512, its CLIP only the pooled start).
TOKEN_BUDGETS: dict[str, int] = {
    "sd15": CLIP_WINDOW * CLIP_WINDOWS,
    "sdxl": CLIP_WINDOW * CLIP_WINDOWS,
    "flux": 512,
}

SIZE_WORDS = {
    "extreme-wide": "extreme wide shot",
    "wide": "wide shot",
    "full": "full shot",
    "medium": "medium shot",
    "medium-close-up": "medium close-up",
    "close-up": "close-up shot",
    "extreme-close-up": "extreme close-up",
}
ANGLE_WORDS = {
    "eye-level": "eye-level view",
    "low": "low-angle view",
    "high": "high-angle view",
    "overhead": "overhead view",
    "aerial": "aerial view",
    "dutch": "dutch angle",
}
MOVEMENT_WORDS = {
    "static": "fixed camera, subtle drift",
    "push-in": "camera slowly pushes in",
    "pull-out": "camera slowly pulls out",
    "pan-left": "camera pans left",
    "pan-right": "camera pans right",
    "tilt-up": "camera tilts up",
    "tilt-down": "camera tilts down",
    "orbit": "camera orbits around the subject",
    "tracking": "tracking shot following the subject",
}

#: the language each family's text encoder reads (CLIP for SD/SDXL, CLIP + T5 for Flux)
ENCODER_LANGUAGE: dict[str, str] = {"sd15": "en", "sdxl": "en", "flux": "en"}
#: estimated tokens per CJK character: CLIP's byte-level BPE splits most Chinese characters
#: into 2-3 byte tokens; T5's sentencepiece gives about one per character
CJK_TOKENS = {"sd15": 2, "sdxl": 2, "flux": 1}

_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
_TOKEN = re.compile(r"[^\W\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[^\w\s]")

TokenCounter = Callable[[str], int]


class PromptPart(BaseModel):
    role: str
    text: str
    priority: int  # lower is more important


class ComposedPrompt(BaseModel):
    """What the image model receives for one shot, and what was left out of it."""

    shot: str
    prompt: str
    negative_prompt: str
    parts: list[PromptPart]
    token_count: int
    token_budget: int
    truncated: list[str] = []  # parts dropped to fit the budget, word for word

    @property
    def fits(self) -> bool:
        return not self.truncated


def count_tokens(text: str, family: str = "sd15") -> int:
    """Estimated token count when the model's own tokenizer is not at hand: one per Latin word
    or punctuation mark (BPE is never fewer), and :data:`CJK_TOKENS` per CJK character (a run
    of Chinese is not one word: 111 characters are 111-333 tokens, not 45). Weight syntax such
    as `(word:1.2)` is not text and is not counted."""
    text = plain_text(text)
    cjk = len(_CJK.findall(text))
    latin = len(_TOKEN.findall(_CJK.sub(" ", text)))
    return latin + cjk * CJK_TOKENS.get(family, 2)


def prompt_language(text: str) -> str:
    """``zh`` when the text is mostly (a third or more of its letters) CJK, else ``en``."""
    cjk = len(_CJK.findall(text))
    letters = sum(ch.isalpha() for ch in text)
    return "zh" if cjk and cjk * 3 >= letters else "en"


def language_warnings(storyboard: Storyboard, family: str = "sd15") -> dict[str, str]:
    """Shots whose prompt is in another language than the family's text encoder reads, with a
    one-line warning each (shown by `reelflow plan` and in the run log)."""
    encoder = ENCODER_LANGUAGE.get(family, "en")
    out: dict[str, str] = {}
    for shot in storyboard.shots:
        text = " ".join(p.text for p in prompt_parts(storyboard, shot) if p.role != "triggers")
        if _CJK.search(text) and encoder == "en":
            lang = "Chinese" if prompt_language(text) == "zh" else "partly Chinese"
            out[shot.id] = (
                f"shot {shot.id}: the prompt is {lang} but the {family} text encoder reads "
                "English; configure an LLM (--llm) to translate it, or write `prompt:` in English"
            )
    return out


def camera_phrase(camera: Camera) -> str:
    return f"{SIZE_WORDS[camera.size]}, {ANGLE_WORDS[camera.angle]}"


def motion_phrase(shot: Shot) -> str:
    """Camera movement in words an image-to-video model understands."""
    movement = MOVEMENT_WORDS[shot.camera.movement]
    return f"{shot.motion_prompt}, {movement}" if shot.motion_prompt else movement


def prompt_parts(
    storyboard: Storyboard, shot: Shot, notes: list[str] | None = None
) -> list[PromptPart]:
    """Every part of a shot's prompt with its importance; the reviewer's notes rank highest."""
    style = storyboard.style
    characters = [storyboard.character(name) for name in shot.characters]
    triggers = [w for c in characters for w in c.trigger_words]
    triggers += [w for lora in [*style.loras, *shot.loras] for w in lora.trigger_words]
    parts = [
        PromptPart(role="triggers", text=", ".join(dict.fromkeys(triggers)), priority=0),
        PromptPart(role="notes", text=", ".join(notes or []), priority=1),
        PromptPart(role="subject", text=shot.prompt or shot.description, priority=2),
        PromptPart(role="camera", text=camera_phrase(shot.camera), priority=3),
        # the style lock outranks the scene: it is what keeps nine shots one film
        PromptPart(role="style", text=style.visual_style, priority=4),
        PromptPart(
            role="characters", text=", ".join(c.description for c in characters), priority=5
        ),
        PromptPart(role="scene", text=shot.scene, priority=6),
        PromptPart(role="lighting", text=style.lighting, priority=7),
        PromptPart(role="quality", text=", ".join(style.quality_tags), priority=8),
    ]
    return [part for part in parts if part.text.strip()]


def compose_prompt(
    storyboard: Storyboard,
    shot: Shot,
    *,
    family: str = "sd15",
    notes: list[str] | None = None,
    count: TokenCounter | None = None,
) -> ComposedPrompt:
    """Compose one shot's prompt within the family's token budget, most important parts first.

    ``count`` is the model's own tokenizer (tokens of a text, no special tokens) when the model
    is local; else :func:`count_tokens` estimates.
    """
    budget = TOKEN_BUDGETS.get(family, 75)
    if count is None:

        def count(text: str) -> int:
            return count_tokens(text, family)

    kept: list[PromptPart] = []
    truncated: list[str] = []
    used = 0
    for part in sorted(prompt_parts(storyboard, shot, notes), key=lambda p: p.priority):
        cost = count(part.text) + (1 if kept else 0)  # the joining comma
        # Strictly by importance: once a part does not fit, nothing less important goes in
        # (a short quality tag never displaces the scene that was cut before it).
        if not truncated and used + cost <= budget:
            kept.append(part)
            used += cost
        else:
            truncated.append(part.text)
    text = ", ".join(part.text for part in kept)
    return ComposedPrompt(
        shot=shot.id,
        prompt=text,
        negative_prompt=storyboard.style.negative_prompt,
        parts=kept,
        token_count=used,
        token_budget=budget,
        truncated=truncated,
    )


def compose_all(
    storyboard: Storyboard, *, family: str = "sd15", notes: dict[str, list[str]] | None = None
) -> dict[str, ComposedPrompt]:
    notes = notes or {}
    return {
        shot.id: compose_prompt(storyboard, shot, family=family, notes=notes.get(shot.id))
        for shot in storyboard.shots
    }
