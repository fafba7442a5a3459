"""LTX-2's latent upsampler: a window's latents doubled in space before the decode.

LTX-2's two-stage recipe samples at half the size and upsamples the *latents*
(``LTX2LatentUpsamplePipeline`` + ``LTX2LatentUpsamplerModel``), which is far cheaper than
sampling at full size. It runs between the saved latents and the decode, so a resumed clip
upsamples again from what was sampled, never samples again. (The recipe's optional second,
few-step refinement at full size is not run here.)
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

__all__ = ["build_tiny_ltx2_upsampler", "upsample_latents"]

_MODELS: dict[str, Any] = {}
_LOCK = threading.Lock()


def _upsampler(path: str, device: Any, dtype: Any) -> Any:
    """The upsampler model at ``path``, loaded once per process."""
    with _LOCK:
        if path not in _MODELS:
            from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel

            if not Path(path).is_dir():
                raise FileNotFoundError(f"LTX-2 latent upsampler not found at {path}")
            _MODELS[path] = LTX2LatentUpsamplerModel.from_pretrained(path, local_files_only=True)
        return _MODELS[path].to(device=device, dtype=dtype)


def upsample_latents(vae: Any, upsampler: str, latents: Any) -> Any:
    """``latents`` ([B, C, F, H, W], the VAE's own scale, as ``output_type="latent"`` returns
    them) at twice the height and width, ready for ``vae.decode``."""
    import torch
    from diffusers import LTX2LatentUpsamplePipeline

    model = _upsampler(upsampler, vae.device, vae.dtype)
    pipe = LTX2LatentUpsamplePipeline(vae=vae, latent_upsampler=model)
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        return pipe(latents=latents.to(vae.device), output_type="latent", return_dict=False)[0]


def build_tiny_ltx2_upsampler(path: str | Path, *, in_channels: int = 4, seed: int = 0) -> Path:
    """Save a tiny ``LTX2LatentUpsamplerModel`` (randomly initialised, from its config) at
    ``path`` for the tiny LTX-2's ``in_channels`` latent channels; idempotent."""
    out = Path(path)
    if (out / "config.json").is_file():
        return out
    import torch
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel

    torch.manual_seed(seed)
    model = LTX2LatentUpsamplerModel(
        in_channels=in_channels,
        mid_channels=32,  # GroupNorm(32, mid_channels)
        num_blocks_per_stage=1,
        dims=3,
        spatial_upsample=True,
        temporal_upsample=False,
        rational_spatial_scale=2.0,
    )
    model.save_pretrained(out)
    return out
