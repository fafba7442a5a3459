"""Tiny Stable Diffusion models built from configs, for tests and the offline demo.

No machine here reaches a model hub, so tests cannot download even the tiny checkpoints diffusers'
own test-suite uses. Instead every component is built from a small config (the same shapes as
diffusers' `get_dummy_components()`), with a fixed torch seed so two builds are bit-identical, and
saved with `save_pretrained`. The production loading code then reads these exactly like a real
model: `from_pretrained(dir, local_files_only=True)`, `from_single_file`, `load_lora_weights`.

The VAE has four blocks, so its scale factor is 8 like the real SD VAE: sizes that are multiples of
8 are valid, ControlNet's conditioning embedding (8x down) lines up with the latents, and a 64 px
test image is an 8x8 latent, which keeps CPU tests fast.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

Family = Literal["sd15", "sdxl"]

_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"
_TEXT_HIDDEN = 32


def _byte_chars() -> list[str]:
    """The 256 printable stand-ins GPT-2/CLIP byte-level BPE uses for raw bytes."""
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def tiny_clip_tokenizer():
    """A character-level CLIP tokenizer built in memory (no vocab download).

    Every byte is a token (plain and word-final `</w>` forms), so any prompt tokenizes; there are no
    merges, which only makes prompts longer in tokens. `model_max_length=77` as in real SD, or the
    pipeline's truncation logic overflows.
    """
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {_BOS: 0, _EOS: 1}
    for ch in _byte_chars():
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _text_config(projection_dim: int | None = None):
    from transformers import CLIPTextConfig

    extra = {"projection_dim": projection_dim} if projection_dim else {}
    return CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=_TEXT_HIDDEN,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=1000,
        max_position_embeddings=77,
        hidden_act="gelu",
        **extra,
    )


def _tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 32, 64, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        layers_per_block=1,
        sample_size=64,
    )


def _tiny_sd15():
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=_TEXT_HIDDEN,
    )
    return StableDiffusionPipeline(
        vae=_tiny_vae(),
        text_encoder=CLIPTextModel(_text_config()),
        tokenizer=tiny_clip_tokenizer(),
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _tiny_sdxl():
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    projection_dim = 32
    time_embed_dim = 8
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        transformer_layers_per_block=(1, 2),
        # six micro-conditioning numbers (sizes, crop, target) + the pooled text embedding
        projection_class_embeddings_input_dim=6 * time_embed_dim + projection_dim,
        # both text encoders' hidden states are concatenated
        cross_attention_dim=2 * _TEXT_HIDDEN,
    )
    return StableDiffusionXLPipeline(
        vae=_tiny_vae(),
        text_encoder=CLIPTextModel(_text_config()),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(projection_dim)),
        tokenizer=tiny_clip_tokenizer(),
        tokenizer_2=tiny_clip_tokenizer(),
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
        ),
    )


def _is_built(path: Path) -> bool:
    return (path / "model_index.json").is_file() and (path / "unet").is_dir()


def build_tiny_sd(path: str | Path, family: Family = "sd15", seed: int = 0) -> Path:
    """Build a tiny SD 1.5- or SDXL-shaped pipeline at `path` (skipped if already there).

    Seeded, so every machine builds the same weights and golden comparisons stay meaningful.
    """
    path = Path(path)
    if _is_built(path):
        return path
    builders = {"sd15": _tiny_sd15, "sdxl": _tiny_sdxl}
    if family not in builders:
        raise ValueError(f"tiny models exist for {sorted(builders)}, not {family!r}")
    torch.manual_seed(seed)
    pipe = builders[family]()
    path.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(path, safe_serialization=True)
    log.info("built tiny %s pipeline at %s", family, path)
    return path


def build_tiny_controlnet(sd_path: str | Path, out: str | Path) -> Path:
    """A ControlNet shaped like the tiny model's UNet (`ControlNetModel.from_unet`).

    The conditioning embedding downsamples the control image by the VAE scale factor (three
    stride-2 stages for 8x), so a control image at pixel size lines up with the latents.
    """
    from diffusers import ControlNetModel, UNet2DConditionModel

    out = Path(out)
    if (out / "config.json").is_file():
        return out
    unet = UNet2DConditionModel.from_pretrained(sd_path, subfolder="unet", local_files_only=True)
    torch.manual_seed(1)
    controlnet = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=(8, 16, 32, 32)
    )
    # from_unet zero-initialises the output convs (a fresh ControlNet is a no-op); give them small
    # weights so the control image measurably steers the tiny model.
    with torch.no_grad():
        for name, param in controlnet.named_parameters():
            if "controlnet_down_blocks" in name or "controlnet_mid_block" in name:
                param.normal_(0.0, 0.05)
            if "controlnet_cond_embedding.conv_out" in name:
                param.normal_(0.0, 0.05)
    controlnet.save_pretrained(out, safe_serialization=True)
    return out


def build_tiny_lora(
    sd_path: str | Path,
    out_file: str | Path,
    rank: int = 4,
    seed: int = 0,
    scale: float = 0.2,
) -> Path:
    """Write a real LoRA `.safetensors` for the tiny model, in the diffusers/peft format.

    peft adds LoRA layers to the UNet's attention projections; peft's default init makes `B` zero
    (a no-op adapter), so both matrices are re-drawn from a seeded normal: a LoRA that visibly
    changes the image, and different seeds give different LoRAs. Saved with the pipeline class's
    own `save_lora_weights`, so `load_lora_weights` reads it like any trained LoRA.
    """
    from diffusers import DiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    out_file = Path(out_file)
    if out_file.is_file():
        return out_file
    unet = UNet2DConditionModel.from_pretrained(sd_path, subfolder="unet", local_files_only=True)
    unet.add_adapter(
        LoraConfig(
            r=rank,
            lora_alpha=rank,
            init_lora_weights="gaussian",
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        )
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    pipeline_class = DiffusionPipeline.load_config(sd_path, local_files_only=True)["_class_name"]
    import diffusers

    getattr(diffusers, pipeline_class).save_lora_weights(
        out_file.parent, unet_lora_layers=layers, weight_name=out_file.name
    )
    return out_file


# --- single-file (original LDM layout) export ------------------------------------------------


def _unet_to_ldm(sd: dict[str, torch.Tensor], layers_per_block: int) -> dict[str, torch.Tensor]:
    """Rename a diffusers UNet state dict to the original `model.diffusion_model.*` layout.

    The inverse of diffusers' `convert_ldm_unet_checkpoint`, for any number of blocks (the
    reference script hard-codes SD's four). Block positions follow the LDM numbering:
    `input_blocks.{(n+1)*i + j + 1}`, `output_blocks.{(n+1)*i + j}` with n = layers_per_block.
    """
    fixed = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    resnet = [
        ("norm1", "in_layers.0"),
        ("conv1", "in_layers.2"),
        ("norm2", "out_layers.0"),
        ("conv2", "out_layers.3"),
        ("time_emb_proj", "emb_layers.1"),
        ("conv_shortcut", "skip_connection"),
    ]
    step = layers_per_block + 1
    up_has_attn = {
        int(k.split(".")[1]) for k in sd if k.startswith("up_blocks.") and ".attentions." in k
    }
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        parts = key.split(".")
        module, param = key.rsplit(".", 1)
        is_resnet = "resnets" in parts[1:3]
        if module in fixed:
            new = f"{fixed[module]}.{param}"
        elif parts[0] == "down_blocks":
            i = int(parts[1])
            if parts[2] == "downsamplers":
                new = ".".join([f"input_blocks.{step * (i + 1)}.0.op", *parts[5:]])
            else:
                j = int(parts[3])
                slot = "0" if parts[2] == "resnets" else "1"
                new = ".".join([f"input_blocks.{step * i + j + 1}.{slot}", *parts[4:]])
        elif parts[0] == "up_blocks":
            i = int(parts[1])
            if parts[2] == "upsamplers":
                slot = "2" if i in up_has_attn else "1"
                new = ".".join([f"output_blocks.{step * i + layers_per_block}.{slot}", *parts[4:]])
            else:
                j = int(parts[3])
                slot = "0" if parts[2] == "resnets" else "1"
                new = ".".join([f"output_blocks.{step * i + j}.{slot}", *parts[4:]])
        elif parts[0] == "mid_block":
            j = int(parts[2])
            index = 2 * j if parts[1] == "resnets" else 1
            new = ".".join([f"middle_block.{index}", *parts[3:]])
        else:
            raise ValueError(f"no LDM name for UNet key {key}")
        if is_resnet:
            for diffusers_name, ldm_name in resnet:
                new = new.replace(f".{diffusers_name}.", f".{ldm_name}.")
        out["model.diffusion_model." + new] = value
    return out


def _vae_to_ldm(sd: dict[str, torch.Tensor], num_blocks: int) -> dict[str, torch.Tensor]:
    """Rename a diffusers AutoencoderKL state dict to the original `first_stage_model.*` layout.

    Decoder up blocks are numbered in reverse in LDM; attention projections are 1x1 convs there.
    """
    attn = [
        ("group_norm.", "norm."),
        ("to_q.", "q."),
        ("to_k.", "k."),
        ("to_v.", "v."),
        ("to_out.0.", "proj_out."),
    ]
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        new = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        parts = new.split(".")
        if len(parts) > 2 and parts[1] == "down_blocks":
            i = parts[2]
            if parts[3] == "downsamplers":
                new = ".".join([parts[0], "down", i, "downsample", *parts[5:]])
            else:
                new = ".".join([parts[0], "down", i, "block", *parts[4:]])
        elif len(parts) > 2 and parts[1] == "up_blocks":
            i = str(num_blocks - 1 - int(parts[2]))
            if parts[3] == "upsamplers":
                new = ".".join([parts[0], "up", i, "upsample", *parts[5:]])
            else:
                new = ".".join([parts[0], "up", i, "block", *parts[4:]])
        elif len(parts) > 2 and parts[1] == "mid_block":
            if parts[2] == "resnets":
                new = ".".join([parts[0], "mid", f"block_{int(parts[3]) + 1}", *parts[4:]])
            else:
                rest = ".".join(parts[4:]) + "."
                for diffusers_name, ldm_name in attn:
                    if rest.startswith(diffusers_name):
                        rest = ldm_name + rest[len(diffusers_name) :]
                new = ".".join([parts[0], "mid", "attn_1", rest.rstrip(".")])
                if value.ndim == 2:
                    value = value[:, :, None, None]
        out["first_stage_model." + new] = value
    return out


def export_single_file(sd_path: str | Path, out_file: str | Path) -> Path:
    """Export a tiny SD 1.5 directory as one `.safetensors` in the original (LDM) layout.

    This is what a downloaded community checkpoint looks like, so `from_single_file` runs its real
    conversion code. Loading it offline needs `config=<the diffusers directory>` for the component
    configs (otherwise diffusers fetches a config repo from the hub). The export is verified by
    converting it back with diffusers' own converters and comparing every tensor.
    """
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    sd_path, out_file = Path(sd_path), Path(out_file)
    if out_file.is_file():
        return out_file
    import json

    model_index = json.loads((sd_path / "model_index.json").read_text())
    if model_index.get("_class_name") != "StableDiffusionPipeline":
        raise ValueError(f"single-file export supports SD 1.5-shaped models, not {sd_path}")
    unet_cfg = json.loads((sd_path / "unet" / "config.json").read_text())
    vae_cfg = json.loads((sd_path / "vae" / "config.json").read_text())
    unet = load_file(sd_path / "unet" / "diffusion_pytorch_model.safetensors")
    vae = load_file(sd_path / "vae" / "diffusion_pytorch_model.safetensors")
    text = load_file(sd_path / "text_encoder" / "model.safetensors")

    checkpoint = _unet_to_ldm(unet, unet_cfg["layers_per_block"])
    checkpoint |= _vae_to_ldm(vae, len(vae_cfg["down_block_types"]))
    # the original layout nests CLIP under `text_model.`; transformers >= 5.6 saves it flattened
    checkpoint |= {
        "cond_stage_model.transformer.text_model." + k.removeprefix("text_model."): v
        for k, v in text.items()
    }
    text = {k.removeprefix("text_model."): v for k, v in text.items()}

    text_back = convert_ldm_clip_checkpoint(checkpoint)
    for name, original, converted in [
        ("unet", unet, convert_ldm_unet_checkpoint(checkpoint, unet_cfg)),
        ("vae", vae, convert_ldm_vae_checkpoint(checkpoint, vae_cfg)),
        ("text_encoder", text, {k.removeprefix("text_model."): v for k, v in text_back.items()}),
    ]:
        if set(converted) != set(original) or any(
            not torch.equal(converted[k], original[k]) for k in original
        ):
            missing = sorted(set(original) - set(converted))[:3]
            raise RuntimeError(f"single-file export of {name} does not round-trip: {missing}")

    out_file.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in checkpoint.items()}, out_file)
    return out_file
