"""What each text encoder of a model receives of a prompt: shown by `reelflow plan`.

A creator who writes a long prompt wants to know, before rendering, that it reaches the model:
SD's CLIP reads every token in windows of 75, SDXL's two CLIPs the same, Flux's T5 reads up to
512 tokens while its CLIP gives only a pooled summary of the first 75. Counts come from the
model's own tokenizers when the model is a local diffusers folder, else from the estimate.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import BaseModel

from reelflow.storyboard.prompt_syntax import plain_text
from reelflow.storyboard.prompts import CLIP_WINDOW, TOKEN_BUDGETS, TokenCounter, count_tokens


class Encoder(NamedTuple):
    name: str
    tokenizer_folder: str
    reads: Literal["windows", "pooled", "up-to"]
    limit: int
    estimate_as: str  # the family whose estimate fits this tokenizer (CLIP BPE or T5)


ENCODERS: dict[str, list[Encoder]] = {
    "sd15": [Encoder("clip-l", "tokenizer", "windows", CLIP_WINDOW, "sd15")],
    "sdxl": [
        Encoder("clip-l", "tokenizer", "windows", CLIP_WINDOW, "sdxl"),
        Encoder("clip-g", "tokenizer_2", "windows", CLIP_WINDOW, "sdxl"),
    ],
    "flux": [
        Encoder("t5", "tokenizer_2", "up-to", TOKEN_BUDGETS["flux"], "flux"),
        Encoder("clip-l", "tokenizer", "pooled", CLIP_WINDOW, "sd15"),
    ],
}


class EncoderReadout(BaseModel):
    encoder: str
    tokens: int
    counted: bool  # by the model's own tokenizer; else estimated
    receives: str

    def line(self) -> str:
        how = "counted" if self.counted else "estimated"
        return f"{self.encoder}: {self.tokens} tokens ({how}), {self.receives}"


@lru_cache(maxsize=16)
def _counter(folder: str) -> TokenCounter | None:
    if not Path(folder).is_dir():
        return None
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception:  # noqa: BLE001 - no usable tokenizer: the estimate stands in
        return None

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])

    return count


def _receives(encoder: Encoder, tokens: int) -> str:
    if encoder.reads == "windows":
        windows = max(1, math.ceil(tokens / encoder.limit))
        return f"all of them, in {windows} window{'s' * (windows > 1)} of {encoder.limit}"
    if encoder.reads == "pooled":
        if tokens <= encoder.limit:
            return "all of them (a pooled summary)"
        return f"the first {encoder.limit} (a pooled summary; the rest reaches the other encoder)"
    if tokens <= encoder.limit:
        return f"all of them (reads up to {encoder.limit})"
    return f"the first {encoder.limit}: {tokens - encoder.limit} cut"


def readouts(prompt: str, family: str, model_dir: str | None = None) -> list[EncoderReadout]:
    """Per encoder of the family: the prompt's tokens and what of them the encoder reads."""
    text = plain_text(prompt)
    out = []
    for encoder in ENCODERS.get(family, ENCODERS["sd15"]):
        count = _counter(str(Path(model_dir) / encoder.tokenizer_folder)) if model_dir else None
        tokens = count(text) if count else count_tokens(text, encoder.estimate_as)
        out.append(EncoderReadout(encoder=encoder.name, tokens=tokens, counted=count is not None,
                                  receives=_receives(encoder, tokens)))
    return out
