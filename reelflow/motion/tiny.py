"""Tiny, randomly initialised video pipelines built from configs, for tests and the demo.

No machine here reaches a model hub, so the test suite cannot download even diffusers'
``hf-internal-testing`` checkpoints. These builders make the same tiny components diffusers'
own tests use (``get_dummy_components``), with a T5 or Gemma-3 text encoder and tokenizer built
in memory (diffusers' tests download those from a hub), and save
them with ``save_pretrained``; the backends then load them through the real
``from_pretrained(..., local_files_only=True)`` path. The output is noise, but every shape,
constraint and call signature is the real one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["build_tiny_ltx", "build_tiny_ltx2", "build_tiny_wan", "tiny_gemma3", "tiny_t5"]

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


def build_tiny_ltx(path: str | Path, seed: int = 0, *, num_layers: int = 1) -> Path:
    """Save a tiny ``LTXConditionPipeline`` at ``path`` (idempotent) and return the path.
    (``num_layers``: diffusers' First Block Cache needs at least two transformer blocks.)

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
        num_layers=num_layers,
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


def tiny_gemma3(seed: int = 0, hidden_size: int = 32) -> tuple[Any, Any]:
    """(GemmaTokenizerFast, Gemma3ForConditionalGeneration) built offline: what LTX-2 takes as
    its text encoder, two layers wide ``hidden_size``, with a word-level vocabulary."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3TextConfig,
        GemmaTokenizerFast,
        SiglipVisionConfig,
    )

    vocab = {w: i for i, w in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", *_WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = GemmaTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        model_max_length=128,
    )
    config = Gemma3Config(
        text_config=Gemma3TextConfig(
            vocab_size=len(vocab),
            hidden_size=hidden_size,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
            sliding_window=16,
            max_position_embeddings=256,
        ),
        # Gemma-3's image tower is part of the checkpoint; LTX-2 never feeds it an image.
        vision_config=SiglipVisionConfig(
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=16,
            patch_size=8,
        ),
        mm_tokens_per_image=4,
    )
    torch.manual_seed(seed)
    return tokenizer, Gemma3ForConditionalGeneration(config)


def build_tiny_ltx2(path: str | Path, seed: int = 0) -> Path:
    """Save a tiny ``LTX2ConditionPipeline`` (video and audio) at ``path`` and return the path.

    The shapes follow diffusers' ``tests/pipelines/ltx2`` components, except that the video VAE
    has three space-time downsampling blocks, so it compresses 8x in space and time (the real
    one: 32x, 8x): it takes 8k+1 frames, and the pipeline itself asks for sizes in multiples of
    32. The vocoder upsamples by the audio VAE's mel hop (160), so its waveform lasts as long as
    the picture, at ``vocoder.config.output_sampling_rate`` (16 kHz here, 24 kHz for LTX-2).
    """
    out = Path(path)
    if _built(out):
        return out
    import torch
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2ConditionPipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors, LTX2Vocoder

    tokenizer, text_encoder = tiny_gemma3(seed)
    text = text_encoder.config.text_config
    torch.manual_seed(seed)
    transformer = LTX2VideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_in_channels=4,
        audio_out_channels=4,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        num_layers=2,
        qk_norm="rms_norm_across_heads",
        caption_channels=text.hidden_size,
        rope_double_precision=False,
        rope_type="split",
    )
    torch.manual_seed(seed)
    connectors = LTX2TextConnectors(
        caption_channels=text.hidden_size,
        text_proj_in_factor=text.num_hidden_layers + 1,  # every hidden state, embeddings too
        video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=text.hidden_size // 4,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=text.hidden_size // 4,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32,
        rope_theta=10000.0,
        rope_double_precision=False,
        causal_temporal_positioning=False,
        rope_type="split",
    )
    torch.manual_seed(seed)
    blocks = 3
    vae = AutoencoderKLLTX2Video(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8,) * blocks,
        decoder_block_out_channels=(8,) * blocks,
        layers_per_block=(1,) * (blocks + 1),
        decoder_layers_per_block=(1,) * (blocks + 1),
        spatio_temporal_scaling=(True,) * blocks,
        decoder_spatio_temporal_scaling=(True,) * blocks,
        decoder_inject_noise=(False,) * (blocks + 1),
        downsample_type=("spatiotemporal",) * blocks,
        upsample_type=("spatiotemporal",) * blocks,
        upsample_residual=(False,) * blocks,
        upsample_factor=(1,) * blocks,
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    torch.manual_seed(seed)
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4,
        output_channels=2,
        ch_mult=(1,),
        num_res_blocks=1,
        attn_resolutions=None,
        in_channels=2,
        resolution=32,
        latent_channels=2,
        norm_type="pixel",
        causality_axis="height",
        dropout=0.0,
        mid_block_add_attention=False,
        sample_rate=16000,
        mel_hop_length=160,
        is_causal=True,
        mel_bins=8,
    )
    torch.manual_seed(seed)
    vocoder = LTX2Vocoder(
        in_channels=audio_vae.config.output_channels * audio_vae.config.mel_bins,
        hidden_channels=32,
        out_channels=2,
        upsample_kernel_sizes=[16, 10, 8],
        upsample_factors=[8, 5, 4],  # 160 samples per mel frame: the audio VAE's hop
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1, 3, 5]],
        leaky_relu_negative_slope=0.1,
        output_sampling_rate=16000,
    )
    pipe = LTX2ConditionPipeline(
        transformer=transformer,
        vae=vae,
        audio_vae=audio_vae,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        connectors=connectors,
        vocoder=vocoder,
    )
    pipe.save_pretrained(out)
    return out
