"""Long and weighted prompts reach the UNet whole.

CLIP reads 77 tokens (75 of text). A prompt longer than that is split into windows of 75 tokens,
each window is encoded on its own and the embeddings are joined along the token axis (the A1111 and
ComfyUI convention), so every word reaches the UNet; A1111 weights scale their tokens' embeddings.
compel does the windowing and the weighting for diffusers; this module builds the pipeline's
embedding arguments with it.

Prompts that fit one window and carry no weights go to the pipeline as plain text, exactly as
before, so their images (and the images already in the bucket) do not change.
"""

from __future__ import annotations

from typing import Any

from reelflow.storyboard.prompt_syntax import is_weighted, plain_text, to_compel


def window(pipe: Any) -> int:
    """Text tokens one pass of the pipeline's CLIP encoder reads (75 for SD and SDXL)."""
    return int(pipe.tokenizer.model_max_length) - 2


def text_tokens(pipe: Any, prompt: str) -> int:
    tokens = pipe.tokenizer(plain_text(prompt), add_special_tokens=False, truncation=False)
    return len(tokens["input_ids"])


def needs_windows(pipe: Any, prompt: str) -> bool:
    """Longer than one window, or weighted: only then do embeddings replace the plain text."""
    return text_tokens(pipe, prompt) > window(pipe) or is_weighted(prompt)


def is_clip_pipeline(pipe: Any) -> bool:
    """SD 1.x/2.x and SDXL pipelines (any task): a CLIP `tokenizer` with a `text_encoder`."""
    return (
        getattr(pipe, "tokenizer", None) is not None
        and getattr(pipe, "text_encoder", None) is not None
        and "Flux" not in type(pipe).__name__
    )


def prompt_embedding_kwargs(
    pipe: Any, prompt: str, negative: str | None, count: int
) -> dict[str, Any]:
    """`prompt_embeds` (+ pooled for SDXL) for `count` images: every window encoded and joined,
    weights applied; the negative prompt is padded to the same length, as the UNet needs."""
    from compel import CompelForSD, CompelForSDXL

    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    encode = CompelForSDXL(pipe) if sdxl else CompelForSD(pipe)
    # compel's "no weights bypass" would hand an unweighted long prompt back truncated
    encode.disable_no_weights_bypass()
    # An empty negative: SD encodes "" (as the pipeline does); SDXL's zero embeddings are made
    # by the pipeline itself when no negative is given.
    conditioning = encode(to_compel(prompt), negative_prompt=to_compel(negative or ""))
    kwargs: dict[str, Any] = {
        "prompt_embeds": conditioning.embeds.repeat(count, 1, 1),
        "negative_prompt_embeds": conditioning.negative_embeds.repeat(count, 1, 1),
    }
    if sdxl:
        kwargs["pooled_prompt_embeds"] = conditioning.pooled_embeds.repeat(count, 1)
        kwargs["negative_pooled_prompt_embeds"] = conditioning.negative_pooled_embeds.repeat(
            count, 1
        )
        if not negative and pipe.config.get("force_zeros_for_empty_prompt", False):
            kwargs.pop("negative_prompt_embeds")
            kwargs.pop("negative_pooled_prompt_embeds")
    return kwargs
