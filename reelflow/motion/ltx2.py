"""LTX-2 through diffusers' ``LTX2ConditionPipeline``: the picture and its own sound in one call.

One pipeline covers both things a shot asks for: image-to-video is a single
``LTX2VideoCondition`` on the still at latent index 0, and a first+last-frame transition adds one
on the last frame at the last latent index (so ``LTX2ImageToVideoPipeline`` is not loaded too).
Sizes and frame counts are snapped as for LTX-Video (:class:`DiffusionVideoBackend`): width and
height to multiples of 32, frames to 8k+1 (the VAE's temporal compression), then the frames are
retimed and resized to exactly what the shot asks for, and the snap is logged.

The pipeline returns ``(frames, audio)``; the audio, a waveform at
``pipe.vocoder.config.output_sampling_rate``, is cut to the clip's exact length, written beside
the clip as a WAV (:func:`reelflow.motion.common.audio_stem_path`, which the clip step stores as
the clip's stem) and muxed into the clip as AAC. The model's clock is set to the shot's: the
pipeline is told ``frame_rate = generated frames / shot duration``, so the sound it generates
lasts as long as the shot, not as long as the snapped frame count at 24 fps.

Each window is sampled with ``output_type="latent"``; its video and audio latents are kept (see
:mod:`reelflow.motion.latents`) before this module decodes them, a few latent frames at a time
through the VAE (tiled by default), the frames going to the encoder as they come. With
``upsample=True`` a window is sampled at half the size and its latents go through
``LTX2LatentUpsamplePipeline`` (:mod:`reelflow.motion.upsample`) before the decode.
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from reelflow.media.ffmpeg import run
from reelflow.media.frames import VideoWriter, read_frames
from reelflow.media.probe import VideoInfo, probe
from reelflow.motion.backends import ClipRequest
from reelflow.motion.capabilities import LTX2
from reelflow.motion.common import audio_stem_path
from reelflow.motion.diffusion import DiffusionVideoBackend
from reelflow.motion.latents import LatentCache

__all__ = ["LTX2Backend", "read_wav", "write_wav"]

log = logging.getLogger("reelflow.motion")


class LTX2Backend(DiffusionVideoBackend):
    """LTX-2 image-to-video and first+last-frame transitions, each clip with its own sound.

    ``condition_crf``: conditioning stills are re-compressed with H.264 at this CRF before the
    VAE encodes them, as LTX-2 was trained (diffusers does it with PyAV; here ffmpeg does it, and
    the pipeline is told ``crf=0``). ``0`` skips it.

    ``upsample``: sample at half the size and double it in latent space with LTX-2's latent
    upsampler (``upsampler``: its folder; by default the model's ``latent_upsampler``).
    ``vae_tiling`` is on by default: the decode is where a long clip runs out of memory.
    """

    name = "ltx2"
    capabilities = LTX2
    pipeline_class = "LTX2ConditionPipeline"
    default_max_frames = 121  # ~5 s at 24 fps
    default_fps = 24.0
    default_steps = 40
    default_guidance = 4.0
    default_negative = (
        "worst quality, inconsistent motion, blurry, jittery, distorted, static, "
        "muffled sound, distorted audio"
    )
    makes_audio: ClassVar[bool] = True
    saves_latents: ClassVar[bool] = True

    def __init__(
        self,
        model: str | Path,
        *,
        condition_crf: int = 33,
        upsample: bool = False,
        upsampler: str | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("vae_tiling", True)
        super().__init__(model, **options)
        self.condition_crf = condition_crf
        self.upsample = upsample
        self.upsampler = upsampler or str(Path(model) / "latent_upsampler")
        self._local = threading.local()  # per render: the model's clock and the audio so far

    def _compression(self) -> tuple[int, int]:
        p = self.pipe
        spatial = p.vae_spatial_compression_ratio * p.transformer_spatial_patch_size
        # The pipeline refuses sizes that are not multiples of 32 whatever the VAE's compression.
        return (
            math.lcm(32, spatial),
            p.vae_temporal_compression_ratio * p.transformer_temporal_patch_size,
        )

    @property
    def sample_rate(self) -> int:
        """Rate of the waveform the vocoder makes (24 kHz for LTX-2)."""
        return int(self.pipe.vocoder.config.output_sampling_rate)

    def generation_size(self, width: int, height: int) -> tuple[int, int]:
        """Size to sample at: half of it (snapped) when the latent upsampler doubles it."""
        if not self.upsample:
            return super().generation_size(width, height)
        return super().generation_size(width // 2, height // 2)

    def made_with(self, request: ClipRequest) -> dict[str, Any]:
        made = super().made_with(request)
        made["latent_upsample"] = (
            {"upsampler": self.upsampler, "sampled_at": list(self.generation_size(
                request.width, request.height))} if self.upsample else None
        )  # fmt: skip
        return made

    # -- rendering -------------------------------------------------------------------------
    def _render(
        self,
        first: np.ndarray,
        last: np.ndarray | None,
        request: ClipRequest,
        out: Path,
        latents: LatentCache | None = None,
    ) -> VideoInfo:
        size = self.generation_size(request.width, request.height)
        plan = self.window_plan(request)
        log.info(
            "ltx2 shot %dx%d, %d frames: sampled at %dx%d (multiples of %d%s), %s",
            request.width, request.height, request.n_frames, *size,
            self.constraints.size_multiple, ", latents upsampled 2x" if self.upsample else "",
            plan.describe(),
        )  # fmt: skip
        self._local.frame_rate = plan.generated_frames / request.duration
        self._local.audio = []
        with tempfile.TemporaryDirectory(prefix="reelflow-ltx2-", dir=out.parent) as work:
            picture = Path(work) / "picture.mp4"
            generated, total = self._generated(first, last, request, size, latents)
            self._encode(generated, total, request, picture)
            stem = audio_stem_path(out)
            write_wav(stem, self._soundtrack(request), self.sample_rate)
            run(
                ["-i", str(picture), "-i", str(stem), "-map", "0:v:0", "-map", "1:a:0",
                 "-c:v", "copy", "-c:a", "aac", "-b:a", "192k", "-movflags", "+faststart",
                 str(out)],
                what=f"mux the clip's own sound into {out.name}",
            )  # fmt: skip
        return probe(out)

    def _soundtrack(self, request: ClipRequest) -> np.ndarray:
        """The calls' audio joined, exactly as long as the clip's frames: (channels, samples).

        A call after the first starts on the previous call's last frame, so its first frame of
        sound is dropped too."""
        rate = self.sample_rate
        per_frame = round(rate / self._local.frame_rate)
        chunks = [a if i == 0 else a[:, per_frame:] for i, a in enumerate(self._local.audio)]
        audio = np.concatenate(chunks, axis=1)
        want = round(request.n_frames * rate / request.fps)
        if audio.shape[1] < want:
            audio = np.pad(audio, ((0, 0), (0, want - audio.shape[1])))
        return audio[:, :want]

    def _sample(
        self,
        first: Image.Image,
        last: Image.Image | None,
        *,
        num_frames: int,
        width: int,
        height: int,
        request: ClipRequest,
        seed: int,
    ) -> dict[str, Any]:
        """One window's video latents ([B, C, F, H, W], the VAE's own scale) and audio latents
        ([B, C, L, mel]), before any decode."""
        from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

        pipe = self.pipe
        conditions = [
            LTX2VideoCondition(frames=self._recompressed(image), index=index, crf=0)
            for index, image in self.condition_indices(first, last, num_frames)
        ]
        assert self._lock is not None
        with self._lock:
            out = pipe(
                conditions=conditions,
                frame_rate=self._local.frame_rate,
                max_sequence_length=min(1024, int(pipe.tokenizer.model_max_length)),
                **self._pipeline_args(request, num_frames=num_frames, width=width,
                                      height=height, seed=seed, output_type="latent"),
            )  # fmt: skip
        video, audio = out
        return {"video": video, "audio": audio}

    def _decode_window(self, tensors: dict[str, Any], request: ClipRequest) -> Iterator[np.ndarray]:
        """The window's sound (kept for the soundtrack), then its frames chunk by chunk."""
        import torch

        pipe = self.pipe
        lock = self._lock
        assert lock is not None
        with lock, torch.inference_mode():
            audio_latents = tensors["audio"].to(pipe._execution_device, pipe.audio_vae.dtype)
            mel = pipe.audio_vae.decode(audio_latents, return_dict=False)[0]
            audio = pipe.vocoder(mel)
        audio = audio[0] if audio.ndim == 3 else audio
        self._local.audio.append(audio.float().cpu().numpy())
        video = tensors["video"]
        if self.upsample:
            from reelflow.motion.upsample import upsample_latents

            with lock:
                video = upsample_latents(pipe.vae, self.upsampler, video)
        yield from self._decode_video(video)

    def condition_indices(
        self, first: Image.Image, last: Image.Image | None, num_frames: int
    ) -> list[tuple[int, Image.Image]]:
        """(latent index, image) of each condition of a call: the first frame at 0 and, for a
        transition, the last frame at the last latent index (pixel frame ``num_frames - 1``)."""
        pinned = [(0, first)]
        if last is not None:
            pinned.append(((num_frames - 1) // self.constraints.frame_step, last))
        return pinned

    def _recompressed(self, image: Image.Image) -> Image.Image:
        """``image`` through H.264 at ``condition_crf``, like the stills LTX-2 learned from."""
        if not self.condition_crf:
            return image
        with tempfile.TemporaryDirectory(prefix="reelflow-ltx2-crf-") as work:
            path = Path(work) / "still.mp4"
            with VideoWriter(path, width=image.width, height=image.height, fps=1,
                             crf=self.condition_crf, preset="veryfast") as writer:  # fmt: skip
                writer.write(np.asarray(image.convert("RGB")))
            frame = next(iter(read_frames(path)))
        return Image.fromarray(np.array(frame))


def write_wav(path: Path, audio: np.ndarray, rate: int) -> Path:
    """Write ``audio`` ((channels, samples) floats in [-1, 1]) as 16-bit PCM WAV at ``path``."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(pcm.shape[0])
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.ascontiguousarray(pcm.T).tobytes())
    return path


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV as ((channels, samples) floats, rate)."""
    with wave.open(str(path), "rb") as src:
        channels, rate = src.getnchannels(), src.getframerate()
        pcm = np.frombuffer(src.readframes(src.getnframes()), dtype="<i2")
    return pcm.reshape(-1, channels).T.astype(np.float32) / 32767.0, rate
