"""Tiny Wan 2.2 and Wan VACE pipelines built from configs, for tests and the demo.

Like :mod:`reelflow.motion.tiny`: the components are shaped after diffusers' own
``tests/pipelines/wan/test_wan_22*.py`` and ``test_wan_vace.py`` (``get_dummy_components``), with
the UMT5 text encoder and its tokenizer built in code (diffusers' tests download a T5 from a
hub), saved with ``save_pretrained`` and loaded by the backends through the same
``from_pretrained(..., local_files_only=True)`` as a real checkpoint. The output is noise; every
shape, config key and call signature is the real one:

- **Wan 2.2 A14B** (``build_tiny_wan22``): two experts, ``transformer`` for high noise and
  ``transformer_2`` for low noise, switched at ``boundary_ratio``; no CLIP image encoder (the
  image is conditioned in latent space, so ``last_image`` works too).
- **Wan 2.2 TI2V-5B** (``build_tiny_wan22_ti2v``): one transformer, ``expand_timesteps=True``
  and the Wan 2.2 VAE (``z_dim`` 48, ``patch_size`` 2, ``is_residual``, 16x spatial).
- **Wan VACE** (``build_tiny_wan_vace``): ``WanVACETransformer3DModel`` with VACE blocks that
  read the control video, its mask and the reference images.
- **SkyReels-V2 diffusion forcing** (``build_tiny_skyreels_df``): a
  ``SkyReelsV2Transformer3DModel`` that takes a noise level per latent frame, after diffusers'
  ``tests/pipelines/skyreels_v2/test_skyreels_v2_df_image_to_video.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reelflow.motion.tiny import _WORDS, _built

__all__ = [
    "build_tiny_skyreels_df",
    "build_tiny_wan22",
    "build_tiny_wan22_ti2v",
    "build_tiny_wan_vace",
    "tiny_umt5",
]


def tiny_umt5(seed: int = 0, d_model: int = 32) -> tuple[Any, Any]:
    """(tokenizer, UMT5EncoderModel) built offline: Wan's text encoder, two layers wide
    ``d_model`` (the transformers' ``text_dim``), with a word-level vocabulary."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", *_WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=128,
    )
    config = UMT5Config(
        vocab_size=len(vocab),
        d_model=d_model,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
    )
    torch.manual_seed(seed)
    return tokenizer, UMT5EncoderModel(config)


def _wan21_vae(seed: int) -> Any:
    """The Wan 2.1 VAE (z_dim 16, 8x spatial, 4x temporal) that A14B and VACE use."""
    import torch
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )


#: the tiny Wan-shaped transformers' dimensions (diffusers' tests): Wan, VACE, SkyReels-V2
_TINY_DIMS: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "text_dim": 32,
    "freq_dim": 256,
    "ffn_dim": 32,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "rope_max_seq_len": 32,
}


def _wan_transformer(seed: int, in_channels: int, out_channels: int) -> Any:
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(
        in_channels=in_channels, out_channels=out_channels, num_layers=2, **_TINY_DIMS
    )


def build_tiny_wan22(path: str | Path, seed: int = 0, *, boundary_ratio: float = 0.875) -> Path:
    """Save a tiny Wan 2.2 A14B-shaped ``WanImageToVideoPipeline`` (two experts) at ``path``.

    The transformers take 36 channels: 16 of noise, 16 of the encoded condition video (the
    first frame, and the last when given) and 4 of its mask (the VAE's 4x temporal packing).
    """
    out = Path(path)
    if _built(out):
        return out
    from diffusers import UniPCMultistepScheduler, WanImageToVideoPipeline

    tokenizer, text_encoder = tiny_umt5(seed)
    pipe = WanImageToVideoPipeline(
        transformer=_wan_transformer(seed, 36, 16),
        transformer_2=_wan_transformer(seed + 1, 36, 16),
        vae=_wan21_vae(seed),
        scheduler=UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
        ),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        image_encoder=None,
        image_processor=None,
        boundary_ratio=boundary_ratio,
    )
    pipe.save_pretrained(out)
    return out


def build_tiny_wan22_ti2v(path: str | Path, seed: int = 0) -> Path:
    """Save a tiny Wan 2.2 TI2V-5B-shaped ``WanImageToVideoPipeline`` at ``path``.

    ``expand_timesteps``: the first frame's latents are kept clean and the timestep is given per
    latent patch. The Wan 2.2 VAE packs 2x2 pixels into 12 channels (``patch_size`` 2) before its
    8x downsampling, so it compresses 16x in space (``scale_factor_spatial``) into 48 channels.
    """
    out = Path(path)
    if _built(out):
        return out
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline

    tokenizer, text_encoder = tiny_umt5(seed)
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=48,
        in_channels=12,
        out_channels=12,
        is_residual=True,
        patch_size=2,
        latents_mean=[0.0] * 48,
        latents_std=[1.0] * 48,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        temperal_downsample=[False, True, True],
    )
    pipe = WanImageToVideoPipeline(
        transformer=_wan_transformer(seed, 48, 48),
        transformer_2=None,
        vae=vae,
        scheduler=UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
        ),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        image_encoder=None,
        image_processor=None,
        boundary_ratio=None,
        expand_timesteps=True,
    )
    pipe.save_pretrained(out)
    return out


def build_tiny_wan_vace(path: str | Path, seed: int = 0) -> Path:
    """Save a tiny ``WanVACEPipeline`` at ``path``.

    The VACE blocks (after layers 0 and 2) read 96 channels: the control video encoded twice
    (its kept and its generated regions, 2 x 16) and its mask packed 8x8 (64).
    """
    out = Path(path)
    if _built(out):
        return out
    import torch
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        WanVACEPipeline,
        WanVACETransformer3DModel,
    )

    tokenizer, text_encoder = tiny_umt5(seed)
    torch.manual_seed(seed)
    transformer = WanVACETransformer3DModel(
        in_channels=16, out_channels=16, num_layers=3, vace_layers=[0, 2], vace_in_channels=96,
        **_TINY_DIMS,
    )  # fmt: skip
    pipe = WanVACEPipeline(
        transformer=transformer,
        vae=_wan21_vae(seed),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
    )
    pipe.save_pretrained(out)
    return out


def build_tiny_skyreels_df(path: str | Path, seed: int = 0) -> Path:
    """Save a tiny ``SkyReelsV2DiffusionForcingImageToVideoPipeline`` at ``path``.

    The transformer reads 16 channels (diffusers' test gives 36, which this pipeline's call
    never feeds: the first frame rides as clean latent frames, not as extra channels) and the
    frame rate (``inject_sample_info``, as the DF checkpoints do); one latent frame per causal
    block. The Wan 2.1 VAE and a UniPC flow scheduler, as in the real checkpoints.
    """
    out = Path(path)
    if _built(out):
        return out
    import torch
    from diffusers import (
        SkyReelsV2DiffusionForcingImageToVideoPipeline,
        SkyReelsV2Transformer3DModel,
        UniPCMultistepScheduler,
    )

    tokenizer, text_encoder = tiny_umt5(seed)
    torch.manual_seed(seed)
    transformer = SkyReelsV2Transformer3DModel(
        in_channels=16, out_channels=16, num_layers=2, inject_sample_info=True,
        num_frame_per_block=1, **_TINY_DIMS,
    )  # fmt: skip
    pipe = SkyReelsV2DiffusionForcingImageToVideoPipeline(
        transformer=transformer,
        vae=_wan21_vae(seed),
        scheduler=UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0
        ),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
    )
    pipe.save_pretrained(out)
    return out
