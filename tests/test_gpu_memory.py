"""The memory plan: full-size models sized on the meta device, plans for 8-80 GB cards, and the
plan's options reaching a real (tiny) pipeline on CPU."""

from __future__ import annotations

import pytest
import torch

from reelflow.gpu.architectures import ARCHITECTURES, find_architecture
from reelflow.gpu.memory import (
    FP8,
    GiB,
    MemoryPlan,
    MemoryPlanError,
    apply_memory_plan,
    architecture_from_dir,
    component_sizes,
    parse_memory,
    plan_memory,
)

FULL_SIZE = ["flux1-dev", "wan2.2-i2v-a14b", "ltx-2", "sdxl-base-1.0", "wan2.2-ti2v-5b"]
BUDGETS = ["8GB", "16GB", "24GB", "48GB", "80GB"]


def params(arch: str, component: str) -> float:
    """Billions of elements of one component of a full-size architecture."""
    size = next(s for s in component_sizes(ARCHITECTURES[arch]) if s.name == component)
    return size.float_numel / 1e9


def test_full_size_components_have_their_published_sizes():
    # the published parameter counts: Flux 12B + T5-XXL 4.7B, Wan 2.2 A14B experts 14B each +
    # UMT5-XXL 5.7B, LTX-2 19B + Gemma-3-12B, SDXL UNet 2.6B, TI2V-5B 5B
    assert 11.5 < params("flux1-dev", "transformer") < 12.5
    assert 4.6 < params("flux1-dev", "text_encoder_2") < 4.9
    assert 13.5 < params("wan2.2-i2v-a14b", "transformer") < 14.8
    assert params("wan2.2-i2v-a14b", "transformer_2") == params("wan2.2-i2v-a14b", "transformer")
    assert 5.5 < params("wan2.2-i2v-a14b", "text_encoder") < 5.9
    assert 18.0 < params("ltx-2", "transformer") < 20.0
    assert 11.5 < params("ltx-2", "text_encoder") < 12.5
    assert 2.5 < params("sdxl-base-1.0", "unet") < 2.7
    assert 4.5 < params("wan2.2-ti2v-5b", "transformer") < 5.5


@pytest.mark.parametrize("arch", FULL_SIZE)
@pytest.mark.parametrize("budget", BUDGETS)
def test_plans_fit_their_budget_or_say_so(arch: str, budget: str):
    plan = plan_memory(arch, budget=budget, host_budget="128GB")
    if plan.fits:
        assert plan.peak_bytes <= parse_memory(budget)
        assert plan.reason == ""
    else:
        assert plan.peak_bytes > parse_memory(budget)
        assert plan.reason.startswith("does not fit: device memory")
    assert {p.name for p in plan.placements} == {c.name for c in ARCHITECTURES[arch].components}


def test_the_plan_prefers_residency_and_offloads_only_when_needed():
    assert plan_memory("sdxl-base-1.0", budget="24GB").offload == "none"
    flux24 = plan_memory("flux1-dev", budget="24GB", host_budget="128GB")
    assert flux24.offload != "none" and flux24.fits
    assert plan_memory("flux1-dev", budget="80GB").offload == "none"
    # Wan 2.2 A14B: two 14B experts do not both sit on a 24 GB card, nor one of them whole
    wan24 = plan_memory("wan2.2-i2v-a14b", budget="24GB", host_budget="128GB")
    assert wan24.offload == "group" and wan24.use_stream and wan24.fits
    # the same plan on a CPU device has no CUDA streams
    assert not plan_memory("wan2.2-i2v-a14b", budget="24GB", device="cpu").use_stream


def test_fp8_storage_is_chosen_when_ram_cannot_hold_the_offloaded_weights():
    plan = plan_memory("flux1-dev", budget="24GB", host_budget="24GB")
    assert plan.fits and plan.storage_dtype == FP8
    assert plan.host_bytes <= 24 * GiB
    # fp8 changes pixels: the job's key; the offload does not: the sidecar
    assert plan.pixel_options() == {"storage_dtype": FP8}
    assert plan.runtime_options()["offload"] == plan.offload
    assert "storage_dtype" not in plan.runtime_options()


def test_pins_restrict_the_choice():
    plan = plan_memory("flux1-dev", budget="80GB", pin={"offload": "model"})
    assert plan.offload == "model"
    plan = plan_memory("ltx-2", budget="24GB", host_budget="128GB", pin={"vae_tiling": False})
    assert not plan.vae_tiling
    with pytest.raises(MemoryPlanError, match="unknown architecture"):
        plan_memory("nope", budget="8GB")
    with pytest.raises(MemoryPlanError, match="write it like 24GB"):
        parse_memory("lots")


def test_storyboard_names_find_architectures():
    assert find_architecture("flux1-dev-fp8").name == "flux1-dev"
    assert find_architecture("stabilityai/stable-diffusion-xl-base-1.0").name == "sdxl-base-1.0"
    assert find_architecture("Wan2.2-TI2V-5B-Diffusers").name == "wan2.2-ti2v-5b"
    assert find_architecture("Lightricks/LTX-2").name == "ltx-2"
    assert find_architecture("my-model") is None


# --- the tiny models: sizes match, options reach the pipeline ------------------------------


def _loaded_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from reelflow.imaging.tiny import build_tiny_sd
    from reelflow.motion.tiny import build_tiny_ltx, build_tiny_wan

    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "sd15": build_tiny_sd(root / "sd15", family="sd15"),
        "sdxl": build_tiny_sd(root / "sdxl", family="sdxl"),
        "ltx": build_tiny_ltx(root / "ltx"),
        "wan": build_tiny_wan(root / "wan"),
    }


@pytest.mark.parametrize("name", ["sd15", "sdxl", "ltx", "wan"])
def test_tiny_component_sizes_match_the_loaded_components(tiny_models, name):
    import diffusers

    path = tiny_models[name]
    arch = architecture_from_dir(path)
    pipe = diffusers.DiffusionPipeline.from_pretrained(path, local_files_only=True)
    sizes = component_sizes(arch)
    assert {s.role for s in sizes} >= {"denoiser", "vae"}
    for size in sizes:
        loaded = _loaded_bytes(getattr(pipe, size.name))
        planned = size.bytes("float32")
        assert abs(planned - loaded) <= 0.05 * loaded, (size.name, planned, loaded)


def _hooks(module: torch.nn.Module) -> set[str]:
    names: set[str] = set()
    for sub in module.modules():
        registry = getattr(sub, "_diffusers_hook", None)
        if registry is not None:
            names |= set(registry.hooks)
    return names


def _tiny_sd(path):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(path, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _render(pipe) -> torch.Tensor:
    out = pipe("a car", num_inference_steps=2, width=64, height=64, output_type="pt",
               generator=torch.Generator().manual_seed(0))
    return out.images


def test_group_offload_with_fp8_storage_and_tiling_run_on_cpu(tiny_models):
    pipe = _tiny_sd(tiny_models["sd15"])
    plan = MemoryPlan(model="tiny", device="cpu", dtype="float32", offload="group",
                      storage_dtype=FP8, vae_tiling=True, vae_slicing=True)
    apply_memory_plan(pipe, plan)
    assert "group_offloading" in _hooks(pipe.unet)
    assert "layerwise_casting" in _hooks(pipe.unet)
    assert "group_offloading" in _hooks(pipe.text_encoder)
    assert pipe.unet.down_blocks[0].resnets[0].conv1.weight.dtype == torch.float8_e4m3fn
    assert pipe.vae.use_tiling and pipe.vae.use_slicing
    images = _render(pipe)
    assert images.shape == (1, 3, 64, 64) and torch.isfinite(images).all()


def test_model_offload_and_text_encoder_offload_reach_the_pipeline(tiny_models):
    pipe = _tiny_sd(tiny_models["sd15"])
    apply_memory_plan(pipe, MemoryPlan(model="tiny", device="cpu", offload="model"))
    assert hasattr(pipe.unet, "_hf_hook") and pipe._offload_device is not None
    assert _render(pipe).shape == (1, 3, 64, 64)

    pipe = _tiny_sd(tiny_models["sd15"])
    apply_memory_plan(pipe, MemoryPlan(model="tiny", device="cpu", offload="text_encoders"))
    assert "group_offloading" in _hooks(pipe.text_encoder)
    assert not _hooks(pipe.unet) and not pipe.vae.use_tiling
    assert _render(pipe).shape == (1, 3, 64, 64)


def test_the_pipeline_cache_applies_its_plan_and_defaults_to_resident(tiny_models):
    from reelflow.imaging.models import ModelSource
    from reelflow.imaging.pipelines import PipelineCache

    source = ModelSource(family="sd15", source=str(tiny_models["sd15"]), device="cpu")
    plain = PipelineCache().text2image(source)
    assert not _hooks(plain.unet) and not plain.vae.use_tiling
    assert plain.unet.device.type == "cpu"
    tiled = PipelineCache(MemoryPlan(model="tiny", device="cpu", vae_tiling=True))
    assert tiled.text2image(source).vae.use_tiling
