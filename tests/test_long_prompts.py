"""Long prompts reach the UNet whole, and A1111 weights reach it as weights.

The tiny SD and SDXL models are real diffusers pipelines (built from configs, saved, loaded back);
a forward hook on the UNet reads the text embeddings it is actually given.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from reelflow.imaging import long_prompts
from reelflow.imaging.generate import ImageSpec, generate
from reelflow.imaging.models import ModelSource
from reelflow.imaging.pipelines import PipelineCache
from reelflow.imaging.tiny import build_tiny_sd
from reelflow.storyboard.prompt_syntax import Fragment, parse_weighted, plain_text, to_compel

LONG = ", ".join(f"detail number {n} of the snowy mountain road" for n in range(30))


def test_a1111_weights_are_parsed() -> None:
    assert parse_weighted("a (red:1.3) car, [blurry], (sharp)") == [
        Fragment(text="a ", weight=1.0),
        Fragment(text="red", weight=1.3),
        Fragment(text=" car, ", weight=1.0),
        Fragment(text="blurry", weight=round(1 / 1.1, 4)),
        Fragment(text=", ", weight=1.0),
        Fragment(text="sharp", weight=1.1),
    ]
    # nesting multiplies, an explicit weight replaces the group's 1.1
    nested = parse_weighted("((snow):1.5)")
    assert nested == [Fragment(text="snow", weight=1.65)]
    assert plain_text(r"logo \(TM\), (neon:0.8) sign") == "logo (TM), neon sign"


def test_compel_syntax_keeps_hyphens_and_literal_parentheses() -> None:
    from compel.prompt_parser import PromptParser

    text = r"close-up, low-angle view, a car-- (glowing:1.4) sign \(TM\)"
    parsed = PromptParser().parse_conjunction(to_compel(text)).prompts[0].children
    weights = {fragment.text.strip(" ,"): fragment.weight for fragment in parsed}
    assert weights["glowing"] == pytest.approx(1.4)
    assert all(w == 1.0 for t, w in weights.items() if t != "glowing"), weights
    joined = " ".join(fragment.text for fragment in parsed)
    assert "close-up" in joined and "(TM)" in joined and "car --" in joined


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {family: build_tiny_sd(root / family, family) for family in ("sd15", "sdxl")}


def _unet_text_lengths(pipe) -> tuple[list[int], object]:  # type: ignore[no-untyped-def]
    seen: list[int] = []

    def hook(module, args, kwargs):  # type: ignore[no-untyped-def]
        states = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        seen.append(int(states.shape[1]))

    return seen, pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_a_long_prompt_reaches_the_unet_whole(models: dict[str, Path], family: str) -> None:
    cache = PipelineCache()
    model = ModelSource(family=family, source=str(models[family]), device="cpu")
    pipe = cache.text2image(model)
    tokens = long_prompts.text_tokens(pipe, LONG)
    assert tokens >= 250  # longer than three CLIP windows
    seen, handle = _unet_text_lengths(pipe)
    try:
        spec = ImageSpec(prompt=LONG, negative_prompt="blurry", seed=3, width=64, height=64,
                         steps=2, model=model)
        image = generate(spec, cache=cache)
    finally:
        handle.remove()
    windows = math.ceil(tokens / long_prompts.window(pipe))
    # every window of 75 text tokens is encoded as 77 (with start and end) and joined
    assert set(seen) == {77 * windows}, (seen, tokens)
    assert image.size == (64, 64)


def test_the_tail_of_a_long_prompt_changes_the_image(models: dict[str, Path]) -> None:
    """Words past token 77 are read: with truncation they would change nothing."""
    cache = PipelineCache()
    model = ModelSource(source=str(models["sd15"]), device="cpu")

    def render(prompt: str) -> torch.Tensor:
        spec = ImageSpec(prompt=prompt, seed=5, width=64, height=64, steps=2, model=model)
        return torch.from_numpy(np.asarray(generate(spec, cache=cache), dtype=np.float32))

    base = render(LONG + ", winter")
    assert not torch.equal(base, render(LONG + ", spring blossoms in a city"))


def test_a_weight_changes_the_embeddings_but_a_short_plain_prompt_does_not(
    models: dict[str, Path],
) -> None:
    pipe = PipelineCache().text2image(ModelSource(source=str(models["sd15"]), device="cpu"))
    assert not long_prompts.needs_windows(pipe, "a red car")
    assert long_prompts.needs_windows(pipe, "a (red:1.5) car")
    plain = long_prompts.prompt_embedding_kwargs(pipe, "a red car", None, 1)["prompt_embeds"]
    heavy = long_prompts.prompt_embedding_kwargs(pipe, "a (red:1.5) car", None, 1)
    assert heavy["prompt_embeds"].shape == plain.shape == (1, 77, 32)
    assert not torch.allclose(heavy["prompt_embeds"], plain)


def test_plan_readout_counts_with_each_encoders_tokenizer(models: dict[str, Path]) -> None:
    from reelflow.render.prompt_readout import readouts

    sdxl = readouts(LONG, "sdxl", str(models["sdxl"]))
    assert [r.encoder for r in sdxl] == ["clip-l", "clip-g"]
    pipe = PipelineCache().text2image(
        ModelSource(family="sdxl", source=str(models["sdxl"]), device="cpu"))
    real = long_prompts.text_tokens(pipe, LONG)
    windows = math.ceil(real / 75)
    for readout in sdxl:
        assert readout.counted and readout.tokens == real
        assert readout.line().endswith(f"all of them, in {windows} windows of 75")
    estimated = readouts("(red:1.4) car", "sd15")
    assert estimated[0].tokens == 2 and not estimated[0].counted
    flux = {r.encoder: r for r in readouts(" ".join(["word"] * 600), "flux")}
    assert flux["t5"].receives == "the first 512: 88 cut"
    assert flux["clip-l"].receives.startswith("the first 75 (a pooled summary")
