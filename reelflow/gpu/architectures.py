"""The full-size models' own configurations, so their memory can be planned without a hub.

Each architecture lists its pipeline's components with the class that builds them and the
config it is built from: the values of the published `config.json` files (SDXL base 1.0,
FLUX.1-dev, Wan 2.2 A14B and TI2V-5B, SD 1.5) or, for LTX-2, diffusers 0.42.1's class defaults,
which are LTX-2's release config (the connector's defaults name Gemma-3-12B). Only values that
change a tensor's shape matter here: the plan builds every component on the meta device and
counts its parameters and buffers.

`denoiser` shapes the activation estimate: `tokens_per_latent` is how many tokens one latent
pixel-frame becomes (1 / patch area), `hidden` the width of the token stream, `cfg_batch` how
many copies of the latents one forward sees (2: conditional and unconditional concatenated).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["text_encoder", "denoiser", "vae", "other"]


class ComponentSpec(BaseModel):
    """One component of a pipeline: which class builds it, from which config."""

    model_config = ConfigDict(frozen=True)

    name: str
    role: Role
    library: Literal["diffusers", "transformers"]
    class_name: str
    config_class: str | None = None  # transformers: the config class the model is built from
    config: dict[str, Any] = Field(default_factory=dict)


class Workload(BaseModel):
    """What one render asks of a model: the size and length of what it generates."""

    model_config = ConfigDict(frozen=True)

    width: int
    height: int
    frames: int = 1


class Architecture(BaseModel):
    """A pipeline's components plus the few numbers the activation estimate needs."""

    model_config = ConfigDict(frozen=True)

    name: str
    pipeline_class: str
    components: list[ComponentSpec]
    dtype: str = "bfloat16"
    vae_dtype: str | None = None  # a VAE that decodes at another dtype (SDXL: float32)
    spatial_compression: int = 8  # pixels per latent pixel, per side
    temporal_compression: int = 1  # frames per latent frame (video)
    patch: tuple[int, int] = (1, 1)  # (temporal, spatial) latent patch of the denoiser
    hidden: int = 1024  # width of the denoiser's token stream
    text_tokens: int = 77  # text tokens the denoiser attends to (joint attention: in the stream)
    cfg_batch: int = 1
    # bytes of live decoder activations per output pixel-frame per byte of the VAE's dtype,
    # and how many output frames one decode call holds (causal video VAEs decode in chunks)
    vae_bytes_per_pixel: int = 1024
    vae_frames_at_once: int | None = None  # None: every frame of the clip at once
    tile: tuple[int, int] = (512, 16)  # VAE tiling: tile side in pixels, tile length in frames
    default_workload: Workload = Workload(width=1024, height=1024)

    def component(self, name: str) -> ComponentSpec:
        return next(c for c in self.components if c.name == name)

    def latent_tokens(self, work: Workload) -> int:
        """Tokens of the denoiser's latent stream for one render of `work`."""
        t, s = self.patch
        latent_frames = (work.frames - 1) // self.temporal_compression + 1
        per_side = self.spatial_compression * s
        return max(1, latent_frames // t) * (work.height // per_side) * (work.width // per_side)


# --- shared text encoders ------------------------------------------------------------------

CLIP_L = {  # openai/clip-vit-large-patch14 text tower (SD 1.5, SDXL text_encoder, Flux)
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072,
    "num_hidden_layers": 12, "num_attention_heads": 12, "max_position_embeddings": 77,
    "hidden_act": "quick_gelu", "projection_dim": 768,
}
CLIP_BIG_G = {  # laion OpenCLIP ViT-bigG/14 text tower (SDXL text_encoder_2)
    "vocab_size": 49408, "hidden_size": 1280, "intermediate_size": 5120,
    "num_hidden_layers": 32, "num_attention_heads": 20, "max_position_embeddings": 77,
    "hidden_act": "gelu", "projection_dim": 1280,
}
T5_XXL = {  # google/t5-v1_1-xxl encoder (Flux text_encoder_2)
    "vocab_size": 32128, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24,
    "num_heads": 64, "relative_attention_num_buckets": 32, "feed_forward_proj": "gated-gelu",
}
UMT5_XXL = {  # google/umt5-xxl encoder (Wan 2.x text_encoder)
    "vocab_size": 256384, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24,
    "num_heads": 64, "relative_attention_num_buckets": 32, "feed_forward_proj": "gated-gelu",
}
GEMMA3_12B = {  # google/gemma-3-12b-it (LTX-2 text_encoder): text model + SigLIP vision tower
    "text_config": {
        "vocab_size": 262208, "hidden_size": 3840, "intermediate_size": 15360,
        "num_hidden_layers": 48, "num_attention_heads": 16, "num_key_value_heads": 8,
        "head_dim": 256, "sliding_window": 1024,
    },
    "vision_config": {
        "hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
        "num_attention_heads": 16, "image_size": 896, "patch_size": 14,
    },
    "mm_tokens_per_image": 256,
}


def _clip(name: str, config: dict[str, Any], projection: bool = False) -> ComponentSpec:
    return ComponentSpec(
        name=name, role="text_encoder", library="transformers",
        class_name="CLIPTextModelWithProjection" if projection else "CLIPTextModel",
        config_class="CLIPTextConfig", config=config,
    )


def _sd_vae(latent_channels: int = 4, **extra: Any) -> ComponentSpec:
    return ComponentSpec(
        name="vae", role="vae", library="diffusers", class_name="AutoencoderKL",
        config={
            "in_channels": 3, "out_channels": 3, "latent_channels": latent_channels,
            "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2,
            "down_block_types": ["DownEncoderBlock2D"] * 4,
            "up_block_types": ["UpDecoderBlock2D"] * 4, "sample_size": 1024, **extra,
        },
    )


SD15 = Architecture(
    name="sd15",
    pipeline_class="StableDiffusionPipeline",
    dtype="float16",
    components=[
        _clip("text_encoder", CLIP_L),
        ComponentSpec(
            name="unet", role="denoiser", library="diffusers", class_name="UNet2DConditionModel",
            config={
                "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
                "block_out_channels": [320, 640, 1280, 1280], "attention_head_dim": 8,
                "cross_attention_dim": 768,
                "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
            },
        ),
        _sd_vae(),
    ],
    hidden=320, cfg_batch=2, vae_bytes_per_pixel=1024,
    default_workload=Workload(width=512, height=512),
)

SDXL = Architecture(
    name="sdxl-base-1.0",
    pipeline_class="StableDiffusionXLPipeline",
    dtype="float16",
    vae_dtype="float32",  # force_upcast: the SDXL VAE overflows in fp16
    components=[
        _clip("text_encoder", CLIP_L),
        _clip("text_encoder_2", CLIP_BIG_G, projection=True),
        ComponentSpec(
            name="unet", role="denoiser", library="diffusers", class_name="UNet2DConditionModel",
            config={
                "sample_size": 128, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
                "block_out_channels": [320, 640, 1280],
                "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D",
                                     "CrossAttnDownBlock2D"],
                "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                "transformer_layers_per_block": [1, 2, 10], "attention_head_dim": [5, 10, 20],
                "cross_attention_dim": 2048, "use_linear_projection": True,
                "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
                "projection_class_embeddings_input_dim": 2816,
            },
        ),
        _sd_vae(scaling_factor=0.13025, force_upcast=True),
    ],
    hidden=320, cfg_batch=2, vae_bytes_per_pixel=1024,
)

FLUX_DEV = Architecture(
    name="flux1-dev",
    pipeline_class="FluxPipeline",
    components=[
        _clip("text_encoder", CLIP_L),
        ComponentSpec(name="text_encoder_2", role="text_encoder", library="transformers",
                      class_name="T5EncoderModel", config_class="T5Config", config=T5_XXL),
        ComponentSpec(
            name="transformer", role="denoiser", library="diffusers",
            class_name="FluxTransformer2DModel",
            config={
                "patch_size": 1, "in_channels": 64, "num_layers": 19, "num_single_layers": 38,
                "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 4096,
                "pooled_projection_dim": 768, "guidance_embeds": True,
                "axes_dims_rope": [16, 56, 56],
            },
        ),
        _sd_vae(latent_channels=16, scaling_factor=0.3611, shift_factor=0.1159,
                use_quant_conv=False, use_post_quant_conv=False),
    ],
    patch=(1, 2), hidden=3072, text_tokens=512, cfg_batch=1, vae_bytes_per_pixel=1024,
)

_WAN_A14B_TRANSFORMER = {
    "patch_size": [1, 2, 2], "num_attention_heads": 40, "attention_head_dim": 128,
    "in_channels": 36, "out_channels": 16, "text_dim": 4096, "freq_dim": 256,
    "ffn_dim": 13824, "num_layers": 40, "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "image_dim": None, "rope_max_seq_len": 1024,
}

WAN22_A14B = Architecture(
    name="wan2.2-i2v-a14b",
    pipeline_class="WanImageToVideoPipeline",
    components=[
        ComponentSpec(name="text_encoder", role="text_encoder", library="transformers",
                      class_name="UMT5EncoderModel", config_class="UMT5Config", config=UMT5_XXL),
        # two experts: high-noise steps run `transformer`, low-noise steps `transformer_2`
        ComponentSpec(name="transformer", role="denoiser", library="diffusers",
                      class_name="WanTransformer3DModel", config=_WAN_A14B_TRANSFORMER),
        ComponentSpec(name="transformer_2", role="denoiser", library="diffusers",
                      class_name="WanTransformer3DModel", config=_WAN_A14B_TRANSFORMER),
        ComponentSpec(name="vae", role="vae", library="diffusers", class_name="AutoencoderKLWan",
                      config={"base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4],
                              "num_res_blocks": 2, "temperal_downsample": [False, True, True]}),
    ],
    spatial_compression=8, temporal_compression=4, patch=(1, 2), hidden=5120, text_tokens=512,
    cfg_batch=1,  # diffusers runs the conditional and unconditional passes one after the other
    vae_bytes_per_pixel=768, vae_frames_at_once=4, tile=(256, 4),
    default_workload=Workload(width=1280, height=720, frames=81),
)

WAN22_TI2V_5B = Architecture(
    name="wan2.2-ti2v-5b",
    pipeline_class="WanImageToVideoPipeline",
    components=[
        ComponentSpec(name="text_encoder", role="text_encoder", library="transformers",
                      class_name="UMT5EncoderModel", config_class="UMT5Config", config=UMT5_XXL),
        ComponentSpec(
            name="transformer", role="denoiser", library="diffusers",
            class_name="WanTransformer3DModel",
            config={
                "patch_size": [1, 2, 2], "num_attention_heads": 24, "attention_head_dim": 128,
                "in_channels": 48, "out_channels": 48, "text_dim": 4096, "freq_dim": 256,
                "ffn_dim": 14336, "num_layers": 30, "cross_attn_norm": True,
                "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "image_dim": None,
                "rope_max_seq_len": 1024,
            },
        ),
        ComponentSpec(
            name="vae", role="vae", library="diffusers", class_name="AutoencoderKLWan",
            config={
                "base_dim": 160, "decoder_base_dim": 256, "z_dim": 48, "dim_mult": [1, 2, 4, 4],
                "num_res_blocks": 2, "temperal_downsample": [False, True, True],
                "is_residual": True, "in_channels": 12, "out_channels": 12, "patch_size": 2,
                "scale_factor_spatial": 16, "scale_factor_temporal": 4,
                "latents_mean": [0.0] * 48, "latents_std": [1.0] * 48,
            },
        ),
    ],
    spatial_compression=16, temporal_compression=4, patch=(1, 2), hidden=3072, text_tokens=512,
    cfg_batch=1, vae_bytes_per_pixel=512, vae_frames_at_once=4, tile=(256, 4),
    default_workload=Workload(width=1280, height=704, frames=121),
)

LTX2 = Architecture(
    name="ltx-2",
    pipeline_class="LTX2Pipeline",
    components=[
        ComponentSpec(name="text_encoder", role="text_encoder", library="transformers",
                      class_name="Gemma3ForConditionalGeneration", config_class="Gemma3Config",
                      config=GEMMA3_12B),
        ComponentSpec(name="connectors", role="other", library="diffusers",
                      class_name="LTX2TextConnectors"),
        # diffusers 0.42.1's defaults are the LTX-2 release: 48 layers, 32 x 128 video heads,
        # 32 x 64 audio heads, Gemma-3-12B captions (3840)
        ComponentSpec(name="transformer", role="denoiser", library="diffusers",
                      class_name="LTX2VideoTransformer3DModel",
                      config={"num_layers": 48, "num_attention_heads": 32,
                              "attention_head_dim": 128, "caption_channels": 3840}),
        ComponentSpec(name="vae", role="vae", library="diffusers",
                      class_name="AutoencoderKLLTX2Video"),
        ComponentSpec(name="audio_vae", role="other", library="diffusers",
                      class_name="AutoencoderKLLTX2Audio"),
        ComponentSpec(name="vocoder", role="other", library="diffusers", class_name="LTX2Vocoder"),
    ],
    spatial_compression=32, temporal_compression=8, patch=(1, 1), hidden=4096, text_tokens=1024,
    cfg_batch=2, vae_bytes_per_pixel=64, tile=(512, 16),
    default_workload=Workload(width=768, height=512, frames=121),
)

ARCHITECTURES: dict[str, Architecture] = {
    a.name: a for a in (SD15, SDXL, FLUX_DEV, WAN22_A14B, WAN22_TI2V_5B, LTX2)
}

# names people write in storyboards and profiles -> an architecture
ALIASES = {
    "sd15": "sd15", "sdxl": "sdxl-base-1.0", "flux": "flux1-dev", "flux-dev": "flux1-dev",
    "wan": "wan2.2-i2v-a14b", "wan2.2": "wan2.2-i2v-a14b", "wan2.2-a14b": "wan2.2-i2v-a14b",
    "wan2.2-5b": "wan2.2-ti2v-5b", "ltx": "ltx-2", "ltx2": "ltx-2",
}


def find_architecture(name: str) -> Architecture | None:
    """The known architecture a model name points at (`flux1-dev-fp8` -> flux1-dev), or None."""
    lowered = name.lower().replace("_", "-")
    if lowered in ARCHITECTURES:
        return ARCHITECTURES[lowered]
    if lowered in ALIASES:
        return ARCHITECTURES[ALIASES[lowered]]
    if "ltx-2" in lowered or "ltx2" in lowered:
        return LTX2
    if "wan" in lowered:
        return WAN22_TI2V_5B if "5b" in lowered else WAN22_A14B
    if "flux" in lowered:
        return FLUX_DEV
    if "xl" in lowered:
        return SDXL
    if "sd15" in lowered or "1.5" in lowered or "v1-5" in lowered:
        return SD15
    return None
