"""A learned upscaler for delivered versions: diffusers' Stable Diffusion x4 upscaler.

A 1280x720 film reframed to 9:16 is 404x720 and platforms take 1080x1920. A filter (Lanczos +
unsharp, :mod:`reelflow.editing.enhance`) only interpolates; a learned upscaler draws the
detail. Where a version names one (``--export 9:16,upscaler=@models/NAME``, or the profile's
``upscaler``), each frame of the reframed film goes through it, and the result is scaled to
the exact delivery size before the captions are drawn.

Why ``StableDiffusionUpscalePipeline`` (stabilityai/stable-diffusion-x4-upscaler) and not
``LDMSuperResolutionPipeline``: it is the upscaler diffusers maintains and documents (fp16,
attention slicing, VAE tiling and offloading all apply), its checkpoint is the one people
use and fine-tune, and its ``noise_level`` says how much detail it may invent, which is what a
delivery wants to turn down. Its text encoder costs little: the prompt is empty.

Frames are streamed: ffmpeg decodes the reframed picture to raw RGB through a pipe, frames go
through the model in small batches, and the upscaled frames are piped into the encoder; only
one batch is ever in memory. Each frame in a batch gets the same noise (one generator per
frame, seeded alike), so a still picture stays still instead of flickering. The pipeline is
loaded once per worker process (by folder and content hash) and called under a lock: the
scheduler keeps its timesteps on itself, so two threads must not share a call.
"""

from __future__ import annotations

import logging
import math
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from reelflow.media.ffmpeg import FFmpegError, PathLike, ffmpeg_exe, fps_arg, tail

log = logging.getLogger("reelflow.render")

__all__ = [
    "UpscalerChoice", "build_tiny_x4_upscaler", "load_upscaler", "upscale_frames",
    "upscale_stream",
]  # fmt: skip

#: Output pixels above which the VAE decodes in tiles (the x4 decoder at 1616x2880 would
#: otherwise need tens of GB); a function of the size alone, so a key always means one picture.
TILE_ABOVE = 1024 * 1024


class UpscalerChoice(BaseModel):
    """A learned upscaler as a version names it: its folder (``@models/NAME``), the folder's
    content hash (in the version's key instead of the path), and how it is run."""

    path: str
    sha256: str | None = None
    steps: int = Field(20, ge=1, le=200, description="denoising steps per frame")
    noise_level: int = Field(20, ge=0, le=350, description="how much detail it may invent")
    seed: int = 0
    batch: int = Field(8, ge=1, le=64, description="frames per model call (not in the key)",
                       exclude=True)  # fmt: skip

    @property
    def label(self) -> str:
        """How lineage and the manifest name it: ``@models/x4 (sha256 1a2b3c4d5e6f)``."""
        return f"{self.path} (sha256 {(self.sha256 or 'unknown')[:12]})"


_PIPES: dict[tuple[str, str | None, str, str], tuple[Any, threading.Lock]] = {}
_LOAD = threading.Lock()


def _device_dtype() -> tuple[str, str]:
    import torch

    return ("cuda", "float16") if torch.cuda.is_available() else ("cpu", "float32")


def load_upscaler(path: str | Path, sha256: str | None = None) -> tuple[Any, threading.Lock]:
    """The ``StableDiffusionUpscalePipeline`` in ``path`` (a diffusers folder, read like any
    checkpoint: ``from_pretrained(..., local_files_only=True)``) and the lock its calls take;
    loaded once per process per (folder, content)."""
    device, dtype = _device_dtype()
    key = (str(path), sha256, device, dtype)
    with _LOAD:
        if key not in _PIPES:
            import torch
            from diffusers import StableDiffusionUpscalePipeline

            if not (Path(path) / "model_index.json").is_file():
                raise FileNotFoundError(f"upscaler not found: {path} (no model_index.json)")
            pipe = StableDiffusionUpscalePipeline.from_pretrained(
                str(path), dtype=getattr(torch, dtype), local_files_only=True
            )
            if dtype == "float16":
                pipe.vae.to(torch.float32)  # the x4 VAE overflows in fp16 (diffusers' advice)
            pipe.to(device)
            pipe.set_progress_bar_config(disable=True)
            log.info("loaded upscaler %s on %s %s", path, device, dtype)
            for stale in [k for k in _PIPES if k[0] == str(path)]:  # its folder was replaced
                del _PIPES[stale]
            _PIPES[key] = (pipe, threading.Lock())
        return _PIPES[key]


def _pad(batch: np.ndarray, multiple: int) -> np.ndarray:
    """Frames padded (edge pixels repeated) to a multiple of the UNet's downsampling."""
    h, w = batch.shape[1:3]
    ph, pw = -h % multiple, -w % multiple
    if not ph and not pw:
        return batch
    return np.pad(batch, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")


def upscale_frames(
    frames: Iterable[np.ndarray], choice: UpscalerChoice, folder: str | Path
) -> Iterator[np.ndarray]:
    """Each RGB uint8 frame upscaled by the model in ``folder`` (4x for the x4 upscaler),
    ``choice.batch`` frames per call; frames are consumed and yielded as they go."""
    import torch

    pipe, lock = load_upscaler(folder, choice.sha256)
    scale = pipe.vae_scale_factor
    multiple = 2 ** (len(pipe.unet.config.block_out_channels) - 1)

    def run(batch: list[np.ndarray]) -> np.ndarray:
        h, w = batch[0].shape[:2]
        images = _pad(np.stack(batch), multiple).astype(np.float32) / 255.0
        out_pixels = images.shape[1] * images.shape[2] * scale * scale
        device = pipe._execution_device
        generators = [torch.Generator(device=device).manual_seed(choice.seed) for _ in batch]
        with lock, torch.inference_mode():
            if out_pixels > TILE_ABOVE:
                pipe.vae.enable_tiling()
            else:
                pipe.vae.disable_tiling()
            result = pipe(
                prompt=[""] * len(batch), image=images, num_inference_steps=choice.steps,
                noise_level=choice.noise_level, guidance_scale=0.0, generator=generators,
                output_type="np",
            ).images  # fmt: skip
        result = result[:, : h * scale, : w * scale]
        return (np.clip(result, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    pending: list[np.ndarray] = []
    for frame in frames:
        pending.append(np.asarray(frame))
        if len(pending) == choice.batch:
            yield from run(pending)
            pending = []
    if pending:
        yield from run(pending)


def model_input_size(size_in: tuple[int, int], size_out: tuple[int, int],
                     factor: int) -> tuple[int, int]:
    """The frame size to feed a ``factor``x upscaler: the smallest (even) size whose output
    still covers ``size_out``, never larger than ``size_in``.

    Why: a diffusion upscaler's cost and memory grow with its output. 4x a 720x1280 frame is
    2880x5120, seven times the pixels a 1080x1920 delivery keeps (and more than a 24 GB card
    decodes); fed 270x480 it draws the delivery's own size."""
    w_in, h_in = size_in
    w_out, h_out = size_out
    shrink = min(1.0, max(w_out / (factor * w_in), h_out / (factor * h_in)))
    if shrink >= 1.0:
        return w_in, h_in
    return (min(w_in, 2 * math.ceil(w_in * shrink / 2)),
            min(h_in, 2 * math.ceil(h_in * shrink / 2)))


def upscale_stream(
    src: PathLike,
    out: PathLike,
    *,
    choice: UpscalerChoice,
    folder: str | Path,
    size_in: tuple[int, int],
    before: Sequence[str],
    after: Sequence[str],
    output_args: Sequence[str],
    frames: int,
    fps: float,
    audio: PathLike | None = None,
    size_out: tuple[int, int] | None = None,
) -> Path:
    """Decode ``src`` through the filters ``before`` (reframe, denoise, frame rate) at
    ``size_in``, upscale every frame with the model, and encode through ``after`` (the scale
    to the delivery size ``size_out``, the captions) with ``output_args``: three stages joined
    by pipes, one batch of frames in memory, exactly ``frames`` frames at ``fps`` written to
    ``out``. The model is fed frames no larger than it needs to cover ``size_out``
    (:func:`model_input_size`)."""
    from reelflow.media.frames import iter_frames

    w, h = size_in
    if size_out is not None:
        pipe, _ = load_upscaler(folder, choice.sha256)
        w, h = model_input_size(size_in, size_out, pipe.vae_scale_factor)
        if (w, h) != tuple(size_in):
            before = [*before, f"scale={w}:{h}:flags=area"]
    out = Path(out)
    sound = ["-i", str(audio), "-map", "0:v", "-map", "1:a?", "-c:a", "copy"] if audio else []
    source = iter_frames(src, size=(w, h), vf=",".join(before) or None)
    upscaled = upscale_frames(source, choice, folder)
    with tempfile.TemporaryFile() as errors:
        encoder: subprocess.Popen[bytes] | None = None
        written = 0
        try:
            for frame in upscaled:
                if encoder is None:  # its input size is the model's output size
                    fh, fw = frame.shape[:2]
                    encoder = subprocess.Popen(
                        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-y",
                         "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                         "-s", f"{fw}x{fh}", "-r", fps_arg(fps), "-i", "pipe:0", *sound,
                         "-vf", ",".join(after) or "null", *output_args, str(out)],
                        stdin=subprocess.PIPE, stderr=errors,
                    )  # fmt: skip
                assert encoder.stdin is not None
                encoder.stdin.write(np.ascontiguousarray(frame).tobytes())
                written += 1
                if written == frames:
                    break
        except BaseException:
            if encoder is not None:
                encoder.kill()
                encoder.wait()
            raise
        finally:
            upscaled.close()  # stops the decoder when the encode has all it needs
            source.close()
        if encoder is None:
            raise FFmpegError.of(f"upscale {Path(src).name}", None, "no frames decoded")
        assert encoder.stdin is not None
        encoder.stdin.close()
        if encoder.wait() != 0:
            errors.seek(0)
            text = errors.read().decode("utf-8", "replace")
            raise FFmpegError.of(f"upscale {Path(src).name}", encoder.returncode, tail(text))
    return out


def build_tiny_x4_upscaler(path: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny ``StableDiffusionUpscalePipeline`` (random weights, the layout of diffusers'
    own tests, narrower: a 7-channel UNet with the noise level as class label, a 3-block VAE,
    so 4x; the text encoder and tokenizer built in code) at ``path``; idempotent. ``seed``:
    another seed, other weights (another content hash)."""
    out = Path(path)
    if (out / "model_index.json").is_file():
        return out
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel

    from reelflow.imaging.tiny import _text_config, tiny_clip_tokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 8, 16),  # diffusers' test shapes, narrower (CI on 2 CPUs)
        norm_num_groups=4,
        layers_per_block=1,
        sample_size=32,
        in_channels=7,  # 4 latent channels + the 3 of the low-resolution picture
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        use_linear_projection=True,
        only_cross_attention=(True, True, False),
        num_class_embeds=100,  # the noise level
    )
    vae = AutoencoderKL(
        block_out_channels=[8, 8, 16],
        norm_num_groups=4,
        layers_per_block=1,
        mid_block_add_attention=False,  # attention over every latent pixel: most of the cost
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3,
        latent_channels=4,
        scaling_factor=0.08333,
    )
    pipe = StableDiffusionUpscalePipeline(
        vae=vae,
        text_encoder=CLIPTextModel(_text_config()),
        tokenizer=tiny_clip_tokenizer(),
        unet=unet,
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"),
        max_noise_level=350,
    )
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out, safe_serialization=True)
    return out
