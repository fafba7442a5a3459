"""Tiny, randomly initialised video pipelines built from configs, for tests and the demo.

No machine here reaches a model hub, so the test suite cannot download even diffusers'
``hf-internal-testing`` checkpoints. These builders make the same tiny components diffusers'
own tests use (``get_dummy_components``), with a T5-style tokenizer built in memory, and save
them with ``save_pretrained``; the backends then load them through the real
``from_pretrained(..., local_files_only=True)`` path. The output is noise, but every shape,
constraint and call signature is the real one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["build_tiny_ltx", "build_tiny_wan", "tiny_t5"]

_WORDS = (
    "a an the camera slowly quickly moves pushes pulls in out pans tilts up down left right "
    "orbits tracks around subject smooth cinematic motion snow mountain winter spring city "
    "street light wind trees sky clouds blurry static distorted low quality worst inconsistent "
    "jittery"
).split()


def tiny_t5(seed: int = 0, d_model: int = 32) -> tuple[Any, Any]:
    """(tokenizer, T5EncoderModel) small enough to run in milliseconds, built offline."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

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
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(vocab),
        d_model=d_model,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
    )
    return tokenizer, T5EncoderModel(config)


def _built(path: Path) -> bool:
    return (path / "model_index.json").is_file()


def build_tiny_ltx(path: str | Path, seed: int = 0) -> Path:
    """Save a tiny ``LTXConditionPipeline`` at ``path`` (idempotent) and return the path.

    Its VAE compresses 4x in space and time (the real one: 32x, 8x), so it takes sizes that
    are multiples of 4 and 4k+1 frames.
    """
    out = Path(path)
    if _built(out):
        return out
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXConditionPipeline,
        LTXVideoTransformer3DModel,
    )

    tokenizer, text_encoder = tiny_t5(seed)
    torch.manual_seed(seed)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=1,
        caption_channels=32,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    pipe = LTXConditionPipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
    )
    pipe.save_pretrained(out)
    return out


def build_tiny_wan(path: str | Path, seed: int = 0, *, flf2v: bool = False) -> Path:
    """Save a tiny Wan 2.1-style ``WanImageToVideoPipeline`` (with CLIP image encoder).

    ``flf2v`` builds the first-last-frame variant (like Wan2.1-FLF2V): its image embedder has
    position embeddings for two images, so it takes ``last_image`` and only that.
    """
    out = Path(path)
    if _built(out):
        return out
    import torch
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    tokenizer, text_encoder = tiny_t5(seed)
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    clip_size, clip_patch = 32, 1
    clip_tokens = (clip_size // clip_patch) ** 2 + 1  # patches + the class token
    torch.manual_seed(seed)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=36,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        image_dim=4,
        pos_embed_seq_len=2 * clip_tokens if flf2v else None,
    )
    torch.manual_seed(seed)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=4,
            projection_dim=4,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=clip_size,
            intermediate_size=16,
            patch_size=clip_patch,
        )
    )
    pipe = WanImageToVideoPipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        image_encoder=image_encoder,
        image_processor=CLIPImageProcessor(crop_size=clip_size, size=clip_size),
    )
    pipe.save_pretrained(out)
    return out
