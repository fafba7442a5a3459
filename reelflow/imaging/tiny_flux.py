"""A tiny Flux pipeline built from configs, and its transformer written as a GGUF file.

Like :mod:`reelflow.imaging.tiny`: every component is built from a small config with a fixed
seed (CLIP and T5 text encoders with their tokenizers made in code, no hub), saved with
`save_pretrained` and loaded by the renderer through the same `from_pretrained(...,
local_files_only=True)` as a real Flux checkpoint. Its transformer's widths are multiples of 32,
so :func:`write_gguf` can store its matrices as Q8_0, the way community GGUF files of Flux are
made: the GGUF memory pin (`memory: {gguf: FILE}`) then runs end to end on a CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

__all__ = ["build_tiny_flux", "write_gguf"]

_WIDTH = 32  # text widths, the transformer's inner width: Q8_0 blocks are 32 wide


def _t5(seed: int) -> tuple[Any, Any]:
    """(tokenizer, T5EncoderModel): Flux's second text encoder, word-level vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    from reelflow.motion.tiny import _WORDS

    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", *_WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>",
                                        eos_token="</s>", unk_token="<unk>",
                                        model_max_length=512)  # fmt: skip
    config = T5Config(vocab_size=len(vocab), d_model=_WIDTH, d_kv=8, d_ff=37, num_layers=2,
                      num_heads=4, relative_attention_num_buckets=8)  # fmt: skip
    torch.manual_seed(seed)
    return tokenizer, T5EncoderModel(config)


def _flux(seed: int) -> Any:
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextModel

    from reelflow.imaging.tiny import _text_config, tiny_clip_tokenizer

    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=[32, 32, 64, 64], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=8, layers_per_block=1, sample_size=64, use_quant_conv=False,
        use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611,
    )  # fmt: skip (8x down like Flux's VAE; 8 channels, packed 2x2: 32 transformer inputs)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=32, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=_WIDTH, pooled_projection_dim=_WIDTH,
        axes_dims_rope=(4, 6, 6),
    )  # fmt: skip
    tokenizer_2, text_encoder_2 = _t5(seed + 1)
    torch.manual_seed(seed + 2)
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=CLIPTextModel(_text_config()),
        tokenizer=tiny_clip_tokenizer(),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


def build_tiny_flux(path: str | Path, seed: int = 0) -> Path:
    """Build a tiny Flux pipeline at `path` (skipped if already there); seeded, so two builds
    are bit-identical."""
    path = Path(path)
    if (path / "model_index.json").is_file() and (path / "transformer").is_dir():
        return path
    pipe = _flux(seed)
    path.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(path, safe_serialization=True)
    log.info("built tiny Flux pipeline at %s", path)
    return path


def write_gguf(model: torch.nn.Module, out: str | Path, *, arch: str = "flux") -> Path:
    """`model`'s weights as a GGUF file, as community files are written: Q8_0 for the matrices
    whose rows split into 32-wide blocks, F32 for the rest (norms, biases, embeddings)."""
    import gguf

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out), arch)
    for name, tensor in model.state_dict().items():
        array = tensor.float().numpy()
        if array.ndim == 2 and array.shape[-1] % 32 == 0:
            writer.add_tensor(name, gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)  # fmt: skip
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
