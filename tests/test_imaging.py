"""Imaging against real diffusers pipelines built from tiny configs (64 px, 2 steps, CPU).

Nothing here is mocked: the tiny models are saved to disk and loaded back through the same
code paths a real checkpoint takes (directory, single file, hub cache, LoRA files, ControlNet).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from safetensors.torch import load_file, save_file

from reelflow.imaging import checks
from reelflow.imaging.generate import (
    BlankImageError,
    ImageSpec,
    generate,
    generate_variants,
    hires_fix,
    img2img_from_reference,
    inpaint,
    outpaint,
    outpaint_canvas,
    render_with_retries,
    restyle_canny,
)
from reelflow.imaging.models import (
    LoraError,
    LoraSpec,
    ModelLoadError,
    ModelNotFoundError,
    ModelSource,
)
from reelflow.imaging.pipelines import (
    PipelineCache,
    apply_loras,
    get_pipeline_cache,
    loaded_loras,
)
from reelflow.imaging.tiny import (
    build_tiny_controlnet,
    build_tiny_lora,
    build_tiny_sd,
    export_single_file,
)

SIZE = 64
STEPS = 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every tiny artifact the tests load, built once per module (a few seconds)."""
    root = tmp_path_factory.mktemp("tiny-models")
    sd = build_tiny_sd(root / "sd15")
    lora_a = build_tiny_lora(sd, root / "loras" / "ink.safetensors", seed=1)
    lora_b = build_tiny_lora(sd, root / "loras" / "snow.safetensors", seed=2)
    # a LoRA trained for a wider model: every down-projection has 8 extra input features
    misfit = root / "loras" / "other-model.safetensors"
    save_file(
        {
            k: torch.randn(v.shape[0], v.shape[1] + 8) if ".down." in k else v
            for k, v in load_file(lora_a).items()
        },
        misfit,
    )
    return {
        "sd": sd,
        "single": export_single_file(sd, root / "sd15-single.safetensors"),
        "controlnet": build_tiny_controlnet(sd, root / "controlnet-canny"),
        "lora_a": lora_a,
        "lora_b": lora_b,
        "misfit": misfit,
        "root": root,
    }


@pytest.fixture(scope="module")
def cache() -> PipelineCache:
    """One cache for the module, like a worker process; load-count tests make their own."""
    return PipelineCache()


@pytest.fixture(scope="module")
def source(tiny: dict[str, Path]) -> ModelSource:
    return ModelSource(source=str(tiny["sd"]), device="cpu")


def spec_for(source: ModelSource, **changes: object) -> ImageSpec:
    base: dict[str, object] = dict(
        prompt="a red fox on a snowy ridge at dawn",
        negative_prompt="blurry",
        seed=7,
        width=SIZE,
        height=SIZE,
        steps=STEPS,
        guidance=5.0,
        model=source,
    )
    return ImageSpec(**(base | changes))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def mean_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(pixels(a) - pixels(b)).mean())


@pytest.fixture(scope="module")
def base_image(source: ModelSource, cache: PipelineCache) -> Image.Image:
    return generate(spec_for(source), cache=cache)


# --- loading ---------------------------------------------------------------------------------


def test_loads_from_local_directory_with_euler(
    source: ModelSource, caplog: pytest.LogCaptureFixture
) -> None:
    fresh = PipelineCache()
    with caplog.at_level(logging.INFO, logger="reelflow.imaging.pipelines"):
        pipe = fresh.text2image(source)
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert fresh.loads == 1
    assert f"loaded model {source.source} (load #1)" in caplog.text
    assert fresh.text2image(source) is pipe and fresh.loads == 1


def test_single_file_checkpoint_loads_offline_and_matches_directory(
    tiny: dict[str, Path], source: ModelSource, cache: PipelineCache, base_image: Image.Image
) -> None:
    single = ModelSource(source=str(tiny["single"]), config=str(tiny["sd"]), device="cpu")
    assert single.locate()[0] == "single_file"
    image = generate(spec_for(single), cache=cache)
    assert mean_diff(image, base_image) < 0.5


def test_single_file_without_local_config_is_a_one_line_error(tiny: dict[str, Path]) -> None:
    single = ModelSource(source=str(tiny["single"]), device="cpu")
    with pytest.raises(ModelNotFoundError) as err:
        PipelineCache().text2image(single)
    message = str(err.value)
    assert "\n" not in message and "needs config=" in message and str(tiny["single"]) in message


def test_missing_model_is_a_one_line_error() -> None:
    with pytest.raises(ModelNotFoundError) as err:
        PipelineCache().text2image(ModelSource(source="nobody/no-such-model"))
    assert str(err.value) == (
        "model not found: nobody/no-such-model (not a directory, file or cached hub id)"
    )
    with pytest.raises(ModelNotFoundError, match="^model not found: /no/such/dir "):
        ModelSource(source="/no/such/dir").locate()


def test_model_of_another_family_is_a_one_line_error(tiny: dict[str, Path]) -> None:
    as_sdxl = ModelSource(family="sdxl", source=str(tiny["sd"]), device="cpu")
    with pytest.raises(ModelLoadError) as err:
        PipelineCache().text2image(as_sdxl)
    assert str(err.value) == f"model {tiny['sd']} is a StableDiffusionPipeline, not family sdxl"


def test_cached_hub_id_loads_without_network(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--reelflow--tiny-sd"
    shutil.copytree(tiny["sd"], repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    hub = ModelSource(source="reelflow/tiny-sd", device="cpu")
    assert hub.locate() == ("hub", "reelflow/tiny-sd")
    fresh = PipelineCache()
    assert type(fresh.text2image(hub)).__name__ == "StableDiffusionPipeline"
    assert fresh.loads == 1


def test_sdxl_shaped_tiny_pipeline_runs_loras_hires_and_controlnet(tiny: dict[str, Path]) -> None:
    sd = build_tiny_sd(tiny["root"] / "sdxl", "sdxl")
    sdxl = ModelSource(family="sdxl", source=str(sd), device="cpu")
    lora = build_tiny_lora(sd, tiny["root"] / "loras" / "sdxl-style.safetensors", seed=3)
    controlnet = build_tiny_controlnet(sd, tiny["root"] / "sdxl-controlnet")
    fresh = PipelineCache()
    spec = spec_for(sdxl)
    image = generate(spec, cache=fresh)
    assert type(fresh.text2image(sdxl)).__name__ == "StableDiffusionXLPipeline"
    assert image.size == (SIZE, SIZE) and not checks.is_blank(image)
    styled = generate(spec_for(sdxl, loras=[LoraSpec(path=str(lora))]), cache=fresh)
    assert mean_diff(styled, image) > 2.0
    assert hires_fix(image, spec, cache=fresh).size == (2 * SIZE, 2 * SIZE)
    assert restyle_canny(image, spec, str(controlnet), cache=fresh).size == image.size
    assert fresh.loads == 1


# --- LoRA stacks -----------------------------------------------------------------------------


def test_lora_stack_changes_output_weights_matter_and_switching_never_reloads(
    tiny: dict[str, Path],
    source: ModelSource,
    cache: PipelineCache,
    base_image: Image.Image,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ink = LoraSpec(path=str(tiny["lora_a"]), weight=1.0)
    ink_half = LoraSpec(path=str(tiny["lora_a"]), weight=0.4)
    snow = LoraSpec(path=str(tiny["lora_b"]), name="snow", weight=0.8)
    loads = cache.loads
    with caplog.at_level(logging.INFO, logger="reelflow.imaging.pipelines"):
        with_ink = generate(spec_for(source, loras=[ink]), cache=cache)
        with_half = generate(spec_for(source, loras=[ink_half]), cache=cache)
        with_both = generate(spec_for(source, loras=[ink, snow]), cache=cache)
        again_ink = generate(spec_for(source, loras=[ink]), cache=cache)
        without = generate(spec_for(source), cache=cache)

    assert mean_diff(with_ink, base_image) > 2.0
    assert mean_diff(with_half, with_ink) > 1.0  # the weight matters
    assert mean_diff(with_both, with_ink) > 1.0  # the second LoRA matters
    assert mean_diff(again_ink, with_ink) == 0.0  # switching back is exact
    assert mean_diff(without, base_image) == 0.0  # an empty stack disables LoRA entirely
    assert cache.loads == loads
    assert caplog.text.count("loaded LoRA") == 2  # each file read once
    assert set(loaded_loras(cache.text2image(source))) == {"ink", "snow"}


def test_missing_lora_is_a_one_line_error_naming_the_file(
    source: ModelSource, cache: PipelineCache
) -> None:
    with pytest.raises(LoraError) as err:
        generate(spec_for(source, loras=[LoraSpec(path="/loras/gone.safetensors")]), cache=cache)
    assert str(err.value) == "LoRA file not found: /loras/gone.safetensors"


def test_lora_for_another_model_is_a_one_line_error_and_leaves_no_adapter(
    tiny: dict[str, Path], source: ModelSource, cache: PipelineCache, base_image: Image.Image
) -> None:
    misfit = LoraSpec(path=str(tiny["misfit"]))
    with pytest.raises(LoraError) as err:
        generate(spec_for(source, loras=[misfit]), cache=cache)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"LoRA does not fit the model: {tiny['misfit']}")
    pipe = cache.text2image(source)
    assert "other_model" not in {n for names in pipe.get_list_adapters().values() for n in names}
    assert mean_diff(generate(spec_for(source), cache=cache), base_image) == 0.0


# --- seeds and variants ----------------------------------------------------------------------


def test_same_seed_same_image_other_seed_other_image(
    source: ModelSource, cache: PipelineCache, base_image: Image.Image
) -> None:
    assert mean_diff(generate(spec_for(source), cache=cache), base_image) == 0.0
    assert mean_diff(generate(spec_for(source, seed=8), cache=cache), base_image) > 2.0


def test_variants_record_seeds_and_match_single_renders(
    source: ModelSource, cache: PipelineCache, base_image: Image.Image
) -> None:
    variants = generate_variants(spec_for(source), count=3, cache=cache)
    assert [seed for seed, _ in variants] == [7, 8, 9]
    assert all(image.size == (SIZE, SIZE) for _, image in variants)
    # batched with per-image generators: variant 0 is the seed-7 image made alone
    assert mean_diff(variants[0][1], base_image) < 0.5
    alone = generate(spec_for(source, seed=8), cache=cache)
    assert mean_diff(variants[1][1], alone) < 0.5
    assert mean_diff(variants[1][1], variants[2][1]) > 2.0


def test_blank_variants_are_replaced_with_the_next_unused_seed() -> None:
    def render(seeds: list[int]) -> list[np.ndarray]:
        return [np.zeros((8, 8, 3)) if s == 8 else np.full((8, 8, 3), 0.5) for s in seeds]

    results = render_with_retries(render, [7, 8, 9], max_retries=2)
    assert [seed for seed, _ in results] == [7, 10, 9]

    def always_nan(seeds: list[int]) -> list[np.ndarray]:
        return [np.full((8, 8, 3), np.nan) for _ in seeds]

    with pytest.raises(BlankImageError, match="^shot ridge-01: 2 of 2 images still blank"):
        render_with_retries(always_nan, [1, 2], max_retries=1, label="shot ridge-01")


def test_a_model_that_outputs_nan_fails_with_the_shot_named(tiny: dict[str, Path]) -> None:
    broken = tiny["root"] / "sd15-nan-vae"
    if not broken.exists():
        shutil.copytree(tiny["sd"], broken)
        weights = broken / "vae" / "diffusion_pytorch_model.safetensors"
        state = load_file(weights)
        state["decoder.conv_out.bias"] = torch.full_like(state["decoder.conv_out.bias"], np.nan)
        save_file(state, weights)
    spec = spec_for(ModelSource(source=str(broken), device="cpu"), shot="ridge-02")
    with pytest.raises(BlankImageError, match="^shot ridge-02: 1 of 1 images still blank"):
        generate_variants(spec, count=1, max_retries=1, cache=PipelineCache())


# --- image-to-image operations ---------------------------------------------------------------


def test_hires_fix_doubles_the_size(
    source: ModelSource, cache: PipelineCache, base_image: Image.Image
) -> None:
    upscaled = hires_fix(base_image, spec_for(source), scale=2.0, strength=0.35, cache=cache)
    assert upscaled.size == (2 * SIZE, 2 * SIZE)
    assert not checks.is_blank(upscaled)


def test_img2img_from_reference_takes_the_spec_size_and_follows_the_reference(
    source: ModelSource, cache: PipelineCache, base_image: Image.Image
) -> None:
    reference = base_image.resize((96, 48))
    spec = spec_for(source, seed=3)
    close = img2img_from_reference(reference, spec, strength=0.3, cache=cache)
    far = img2img_from_reference(reference, spec, strength=1.0, cache=cache)
    assert close.size == far.size == (SIZE, SIZE)
    fitted = reference.resize((SIZE, SIZE))
    assert mean_diff(close, fitted) != mean_diff(far, fitted)


def test_canny_restyle_keeps_the_size_and_follows_the_edges(
    tiny: dict[str, Path], source: ModelSource, cache: PipelineCache, base_image: Image.Image
) -> None:
    spec = spec_for(source, prompt="ink drawing of a fox")
    styled = restyle_canny(base_image, spec, str(tiny["controlnet"]), 1.0, cache=cache)
    unguided = restyle_canny(base_image, spec, str(tiny["controlnet"]), 0.0, cache=cache)
    assert styled.size == base_image.size
    assert mean_diff(styled, base_image) > 2.0
    assert mean_diff(styled, unguided) > 0.5  # the edge map actually steers the image


def test_inpaint_changes_the_masked_region_and_keeps_the_rest(
    source: ModelSource, cache: PipelineCache, base_image: Image.Image
) -> None:
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (16, 16, 48, 48))
    result = inpaint(base_image, mask, spec_for(source, seed=11), feather_px=2, cache=cache)
    diff = np.abs(pixels(result) - pixels(base_image)).mean(axis=-1)
    inside = np.asarray(mask) > 0
    assert diff[inside].mean() > 5 * max(diff[~inside].mean(), 0.1)
    far = np.asarray(mask.filter(ImageFilter.MaxFilter(13))) == 0  # > 6 px from the mask
    assert diff[far].max() <= 1.0


def test_outpaint_to_a_wider_aspect_yields_the_target_size(
    source: ModelSource, cache: PipelineCache, base_image: Image.Image
) -> None:
    wide = outpaint(base_image, spec_for(source), target_aspect=2.0, feather_px=4, cache=cache)
    assert wide.size == (2 * SIZE, SIZE)
    # the original sits in the middle, untouched away from the seams
    centre = wide.crop((SIZE // 2 + 12, 0, SIZE // 2 + SIZE - 12, SIZE))
    assert mean_diff(centre, base_image.crop((12, 0, SIZE - 12, SIZE))) < 1.0


def test_outpaint_canvas_masks_exactly_the_new_area() -> None:
    image = Image.new("RGB", (40, 32), (200, 10, 10))
    canvas, mask = outpaint_canvas(image, direction="right", expand_px=24, feather_px=0)
    assert canvas.size == mask.size == (64, 32)
    m = np.asarray(mask)
    assert (m[:, :40] == 0).all() and (m[:, 40:] == 255).all()
    canvas, mask = outpaint_canvas(image, direction="up", target_aspect=0.5, feather_px=4)
    assert canvas.size == (40, 80)
    m = np.asarray(mask)
    assert (m[:44] == 255).all() and (m[52:] == 0).all()  # 48 new rows on top + 4 px of seam


# --- spec ------------------------------------------------------------------------------------


def test_generation_sizes_snap_to_multiples_of_8(
    source: ModelSource, caplog: pytest.LogCaptureFixture
) -> None:
    # (What an image's key covers is the job's spec hash: tests/test_prompts_plan.py and
    # tests/test_weights.py; ImageSpec no longer has a hash of its own.)
    with caplog.at_level(logging.WARNING, logger="reelflow.imaging.generate"):
        odd = spec_for(source, width=70, height=61)
    assert (odd.width, odd.height) == (72, 64)
    assert "width 70 is not a multiple of 8; using 72" in caplog.text


# --- checks ----------------------------------------------------------------------------------


def test_blank_detection(base_image: Image.Image) -> None:
    assert checks.is_blank(Image.new("RGB", (16, 16)))
    assert checks.is_blank(np.full((4, 4, 3), np.nan, dtype=np.float32))
    nan_pixel = np.full((4, 4, 3), 0.5, dtype=np.float32)
    nan_pixel[1, 1, 0] = np.nan
    assert checks.is_blank(nan_pixel)
    assert not checks.is_blank(base_image)
    assert not checks.is_blank(Image.new("RGB", (16, 16), (40, 40, 40)))


def test_checks_return_sane_ranges(base_image: Image.Image) -> None:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    blurred = noise.filter(ImageFilter.GaussianBlur(3))
    assert checks.sharpness(noise) > checks.sharpness(blurred) > 0
    assert checks.sharpness(Image.new("RGB", (64, 64), "grey")) == 0.0

    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, :32] = (30, 60, 120)
    stripes[:, 32:] = (240, 235, 225)
    palette = ["#1e3c78", "#f0ebe1"]
    on_palette = checks.palette_score(Image.fromarray(stripes), palette)
    off_palette = checks.palette_score(Image.new("RGB", (64, 64), (20, 200, 20)), palette)
    assert 0.95 <= on_palette <= 1.0
    assert 0.0 <= off_palette < 0.2
    assert 0.0 <= checks.palette_score(base_image, palette) <= 1.0

    assert checks.consistency_method() == "perceptual"
    same = checks.character_consistency(base_image, [base_image])
    similar = checks.character_consistency(
        base_image.filter(ImageFilter.GaussianBlur(1)), [base_image]
    )
    other = checks.character_consistency(base_image, [Image.fromarray(stripes)])
    assert same == pytest.approx(1.0, abs=1e-6)
    assert 0.0 <= other < similar < same


def test_character_consistency_with_a_local_clip_model(
    tmp_path: Path, base_image: Image.Image
) -> None:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )
    CLIPVisionModelWithProjection(config).save_pretrained(tmp_path / "clip")
    CLIPImageProcessor(crop_size=32, size={"shortest_edge": 32}).save_pretrained(tmp_path / "clip")

    assert checks.consistency_method(tmp_path / "clip") == "clip"
    same = checks.character_consistency(base_image, [base_image], clip_model=tmp_path / "clip")
    other = checks.character_consistency(
        base_image, [Image.new("RGB", (64, 64), "white")], clip_model=tmp_path / "clip"
    )
    assert same == pytest.approx(1.0, abs=1e-4)
    assert 0.0 <= other < same


def test_contact_sheet_numbers_variants_with_their_scores(base_image: Image.Image) -> None:
    images = [base_image, base_image.rotate(90), base_image.rotate(180)]
    labels = [
        f"seed {s}\nsharp {checks.sharpness(i):.0f}" for s, i in zip([7, 8, 9], images, strict=True)
    ]
    sheet = checks.contact_sheet(images, labels, thumb=96, padding=4)
    assert sheet.width == 3 * (96 + 4) + 4  # one row of three
    assert sheet.height > 96 + 2 * 10  # room for the captions
    caption = np.asarray(sheet.convert("L"))[4 + 96 + 2 :, :]
    assert (caption < 128).any()  # text drawn under the thumbnails
    with pytest.raises(ValueError):
        checks.contact_sheet(images, labels[:2])


# --- the worker's view -----------------------------------------------------------------------


def test_nine_generations_load_the_base_model_once(
    tiny: dict[str, Path], source: ModelSource
) -> None:
    fresh = PipelineCache()
    ink = LoraSpec(path=str(tiny["lora_a"]), weight=0.7)
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (0, 0, 32, 64))

    first = generate(spec_for(source), cache=fresh)  # 1
    generate_variants(spec_for(source, seed=20), count=2, cache=fresh)  # 2, 3
    generate(spec_for(source, loras=[ink]), cache=fresh)  # 4
    hires_fix(first, spec_for(source), cache=fresh)  # 5
    img2img_from_reference(first, spec_for(source, loras=[ink]), cache=fresh)  # 6
    inpaint(first, mask, spec_for(source), cache=fresh)  # 7
    outpaint(first, spec_for(source), direction="left", expand_px=16, cache=fresh)  # 8
    restyle_canny(first, spec_for(source), str(tiny["controlnet"]), cache=fresh)  # 9
    assert fresh.loads == 1


def test_process_wide_cache_is_a_singleton() -> None:
    assert get_pipeline_cache() is get_pipeline_cache()
    assert isinstance(get_pipeline_cache(), PipelineCache)


def test_apply_loras_rejects_one_name_for_two_files(
    tiny: dict[str, Path], source: ModelSource, cache: PipelineCache
) -> None:
    pipe = cache.text2image(source)
    apply_loras(pipe, [LoraSpec(path=str(tiny["lora_a"]), name="style")])
    with pytest.raises(LoraError, match="already used by"):
        apply_loras(pipe, [LoraSpec(path=str(tiny["lora_b"]), name="style")])
    apply_loras(pipe, [])
