"""IP-Adapter: a character's reference image conditions generation (feature lock).

Loaded with diffusers' own `load_ip_adapter` / `set_ip_adapter_scale` and used through
`ip_adapter_image`, from a local folder or a single weights file laid out like the published
checkpoints (`h94/IP-Adapter`):

    FOLDER/ip-adapter*.safetensors (or .bin)   FOLDER/image_encoder/{config.json, weights}
    FILE=.../models/ip-adapter_sd15.safetensors  with  .../models/image_encoder/ beside it

The adapter changes the UNet's attention processors, which the img2img/inpaint pipelines share
with the base pipeline, so it is loaded for one call and unloaded after it (`ip_adapter_loaded`):
an image made without IP-Adapter is the same whether or not another shot used one before.

`build_tiny_ip_adapter` writes such a folder for the tiny test model (a tiny CLIP vision encoder
from a config, random image-projection and `to_k_ip`/`to_v_ip` weights shaped like the UNet's),
so tests go through the same loader a real checkpoint does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from reelflow.imaging.models import ModelNotFoundError

log = logging.getLogger(__name__)

ENCODER = "image_encoder"
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


class IPAdapterSpec(BaseModel):
    """Which IP-Adapter conditions an image, and how strongly (0: not at all, 1: fully)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    scale: float = Field(0.6, ge=0.0, le=2.0)


def locate(path: str | Path) -> tuple[str, str, str, str]:
    """(root, subfolder, weight_name, image_encoder_folder) for `load_ip_adapter`; a one-line
    ModelNotFoundError names what is missing."""
    path = Path(path)
    if path.is_file():
        weights = path
    elif path.is_dir():
        found = sorted(
            p for p in path.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES
        )
        if len(found) != 1:
            raise ModelNotFoundError(
                f"IP-Adapter folder {path} must hold exactly one weights file "
                f"(.safetensors/.bin), found {len(found)}"
            )
        weights = found[0]
    else:
        raise ModelNotFoundError(f"IP-Adapter not found: {path}")
    encoder = weights.parent / ENCODER
    if not (encoder / "config.json").is_file():
        raise ModelNotFoundError(f"IP-Adapter {path}: no image encoder at {encoder}/config.json")
    return str(weights.parent), "", weights.name, ENCODER


def load_ip_adapter(pipe: Any, spec: IPAdapterSpec) -> None:
    """Load the adapter (and its image encoder) into `pipe` and set its scale."""
    root, subfolder, weight_name, encoder = locate(spec.path)
    if type(pipe).__name__.startswith("Flux"):  # FluxIPAdapterMixin names the encoder itself
        pipe.load_ip_adapter(
            root,
            weight_name=weight_name,
            subfolder=subfolder,
            image_encoder_pretrained_model_name_or_path=str(Path(root) / encoder),
            image_encoder_dtype=pipe.dtype,
            local_files_only=True,
        )
    else:  # SD 1.5 / SDXL (IPAdapterMixin)
        pipe.load_ip_adapter(
            root,
            subfolder=subfolder,
            weight_name=weight_name,
            image_encoder_folder=encoder,
            local_files_only=True,
        )
    pipe.set_ip_adapter_scale(spec.scale)
    log.info("IP-Adapter %s loaded at scale %.2f", spec.path, spec.scale)


@contextmanager
def ip_adapter_loaded(pipe: Any, spec: IPAdapterSpec | None) -> Iterator[None]:
    """`spec` active on `pipe` for the block, then unloaded (no-op for None). Hold the model's
    lock around it: the UNet is shared with every pipeline derived from the same base."""
    if spec is None:
        yield
        return
    load_ip_adapter(pipe, spec)
    try:
        yield
    finally:
        pipe.unload_ip_adapter()


def build_tiny_ip_adapter(sd_path: str | Path, out: str | Path, seed: int = 0) -> Path:
    """A tiny IP-Adapter folder for the tiny SD model at `sd_path` (skipped if already built):
    `image_encoder/` (a CLIP vision model from a small config) and `ip-adapter.safetensors`
    in the published flat layout (`image_proj.*`, `ip_adapter.{n}.to_k_ip/to_v_ip.weight`)."""
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import IPAdapterAttnProcessor
    from diffusers.models.embeddings import ImageProjection
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    out = Path(out)
    weights = out / "ip-adapter.safetensors"
    if weights.is_file() and (out / ENCODER / "config.json").is_file():
        return out
    unet = UNet2DConditionModel.from_pretrained(sd_path, subfolder="unet", local_files_only=True)
    cross = unet.config.cross_attention_dim
    embed_dim = 32
    torch.manual_seed(seed)
    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
            projection_dim=embed_dim,
        )
    )
    encoder.save_pretrained(out / ENCODER, safe_serialization=True)
    generator = torch.Generator().manual_seed(seed)

    def drawn(shape: torch.Size, std: float) -> torch.Tensor:
        return torch.randn(shape, generator=generator) * std

    state: dict[str, torch.Tensor] = {}
    projection = ImageProjection(
        cross_attention_dim=cross, image_embed_dim=embed_dim, num_image_text_embeds=4
    ).state_dict()
    state["image_proj.proj.weight"] = drawn(projection["image_embeds.weight"].shape, 0.5)
    state["image_proj.proj.bias"] = torch.zeros_like(projection["image_embeds.bias"])
    state["image_proj.norm.weight"] = torch.ones_like(projection["norm.weight"])
    state["image_proj.norm.bias"] = torch.zeros_like(projection["norm.bias"])
    key_id = 1
    blocks = unet.config.block_out_channels
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue  # self-attention: no image tokens
        if name.startswith("mid_block"):
            hidden = blocks[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(blocks))[int(name[len("up_blocks.")])]
        else:
            hidden = blocks[int(name[len("down_blocks.")])]
        layer = IPAdapterAttnProcessor(hidden_size=hidden, cross_attention_dim=cross).state_dict()
        state[f"ip_adapter.{key_id}.to_k_ip.weight"] = drawn(layer["to_k_ip.0.weight"].shape, 0.3)
        state[f"ip_adapter.{key_id}.to_v_ip.weight"] = drawn(layer["to_v_ip.0.weight"].shape, 0.3)
        key_id += 2
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
    log.info("built tiny IP-Adapter at %s", out)
    return out
