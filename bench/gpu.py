"""8. GPU: an SDXL-architecture pipeline with random weights, only where CUDA is available.

At 1024x1024, 30 steps, bf16: `reelflow.imaging.generate` (resident PipelineCache) vs a plain
diffusers loop, and the gains of SDPA (diffusers' default `AttnProcessor2_0`) over the classic
attention processor and of `torch.compile` on the UNet. The weights are random (built from the
SDXL base configs, nothing downloaded), so timings are real and images are noise.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import Context, Section, alternate, scratch_dir


def build_sdxl(path: Path) -> Path:
    """Save an SDXL-shaped pipeline with random weights (SDXL base configs) to `path`."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from reelflow.imaging.tiny import tiny_clip_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
        cross_attention_dim=2048, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=1024,
        block_out_channels=(128, 256, 512, 512), layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        scaling_factor=0.13025, force_upcast=True,
    )
    common = {"vocab_size": 49408, "max_position_embeddings": 77, "hidden_act": "quick_gelu"}
    enc1 = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, **common))
    enc2 = CLIPTextModelWithProjection(CLIPTextConfig(
        hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
        projection_dim=1280, hidden_act="gelu", vocab_size=49408, max_position_embeddings=77))
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=enc1, text_encoder_2=enc2, tokenizer=tiny_clip_tokenizer(),
        tokenizer_2=tiny_clip_tokenizer(), unet=unet,
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012,
                                         beta_schedule="scaled_linear", timestep_spacing="leading",
                                         steps_offset=1),
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def gpu_side(model: str, mode: str, images: int, steps: int) -> dict[str, Any]:
    """Worker: `images` 1024x1024 images, `steps` steps, bf16 on CUDA, one of four modes."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    prompt = "a bright yellow sports car on a snowy mountain road, cinematic"
    start = time.perf_counter()
    if mode == "reelflow":
        from reelflow.imaging.generate import ImageSpec, generate
        from reelflow.imaging.models import ModelSource

        source = ModelSource(family="sdxl", source=model, dtype="bfloat16", device="cuda")
        for i in range(images):
            generate(ImageSpec(prompt=prompt, seed=i, width=1024, height=1024, steps=steps,
                               guidance=5.0, model=source))
    else:
        pipe = StableDiffusionXLPipeline.from_pretrained(model, dtype=torch.bfloat16,
                                                         local_files_only=True).to("cuda")
        pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        if mode == "classic-attention":
            from diffusers.models.attention_processor import AttnProcessor

            pipe.unet.set_attn_processor(AttnProcessor())
        if mode == "compiled":
            pipe.unet = torch.compile(pipe.unet, mode="max-autotune-no-cudagraphs")
            pipe(prompt=prompt, num_inference_steps=2, width=1024, height=1024)  # compile
            torch.cuda.synchronize()
            start = time.perf_counter()
        for i in range(images):
            pipe(prompt=prompt, num_inference_steps=steps, guidance_scale=5.0, width=1024,
                 height=1024, generator=torch.Generator("cpu").manual_seed(i), output_type="np")
    torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - start,
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20}


def run(ctx: Context) -> Section:
    section = Section(
        key="gpu",
        title="8. GPU",
        method=(
            "SDXL-architecture pipeline with random weights at 1024x1024, 30 steps, bf16: "
            "reelflow.imaging vs a plain diffusers loop, plus SDPA (default) vs classic "
            "attention and torch.compile; runs only where torch.cuda.is_available()."
        ),
    )
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if not has_gpu:
        section.status = "skipped"
        section.notes.append("skipped: no GPU in this task (torch.cuda.is_available() is False)")
        return section
    from bench.common import run_worker

    images, steps = (1, 4) if ctx.quick else (4, 30)
    with scratch_dir(ctx.work, "gpu") as tmp:
        model = str(build_sdxl(tmp / "sdxl-random"))

        def side(mode: str):
            def call(_: int) -> float:
                args = {"model": model, "mode": mode, "images": images, "steps": steps}
                return run_worker("gpu:gpu_side", args)["seconds"]
            return call

        modes = ("reelflow", "plain", "classic-attention", "compiled")
        samples = alternate(ctx.reps, {m: side(m) for m in modes})
    for mode in modes:
        section.add(mode, f"{images} images 1024x1024, {steps} steps, bf16 ({mode})",
                    samples[mode])
    section.ratio("reelflow / plain", "reelflow", "plain", goal=1.10)
    section.ratio("SDPA / classic attention", "plain", "classic-attention")
    section.ratio("compiled / eager", "compiled", "plain")
    return section
