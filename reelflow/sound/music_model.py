"""A music bed generated from a prompt, offline: diffusers' `StableAudioPipeline` (Stable
Audio Open) loaded from a local folder, like the image and video models: `@models/NAME` in
the machine's models folder, never a hub id (the worker may have no network).

The folder holds what `save_pretrained` writes (`model_index.json` and one sub-folder per
component). The model makes at most `max_seconds` (47.55 s for Stable Audio Open) at once, so
a longer film gets several windows, each from its own seed (`seed + i`), joined with an
equal-power crossfade. `make_tiny_stable_audio` builds a tiny random pipeline from configs
(shaped after diffusers' own `get_dummy_components`) with a byte-level tokenizer made in code,
so any script, Chinese included, tokenises without a vocabulary file: it plays noise, but it
goes through the same loader and pipeline call a real checkpoint does.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from reelflow.errors import InputError, StageError

__all__ = [
    "TINY_MUSIC_MODEL",
    "BedInfo",
    "MusicModelError",
    "byte_tokenizer",
    "check_music_model",
    "crossfade_join",
    "ensure_tiny_music_model",
    "generate_bed",
    "make_tiny_stable_audio",
    "music_model_folder",
    "remove_rumble",
    "window_lengths",
]

log = logging.getLogger("reelflow.sound")

#: the name (`@models/tiny-stable-audio`) of the tiny model tests and demos build on first use
TINY_MUSIC_MODEL = "tiny-stable-audio"
#: the longest crossfade between two windows (shorter when windows are short)
CROSSFADE_SECONDS = 2.0
#: seconds of fade at the bed's two ends (a model's first samples may start with a step)
EDGE_FADE = 0.01
#: the bed's peak in the file (peak-normalised, as stable-audio-tools writes its output)
PEAK = 0.99


class MusicModelError(InputError):
    """The storyboard's `music.model` names no usable folder: missing, not a Stable Audio
    pipeline, or one that cannot load here."""


class BedInfo(BaseModel):
    """What a generated bed is: its sample rate, channels, windows and level."""

    sample_rate: int
    channels: int
    seconds: float
    windows: list[float]  # each window's length, in seconds
    crossfade: float
    peak: float  # the model's own peak, before the bed was normalised to PEAK


# -- the model folder --------------------------------------------------------------------------


def music_model_folder(source: str, *, must_exist: bool = True) -> Path:
    """The folder `music.model` names: `@models/NAME` in the models folder. MusicModelError,
    naming the field, when it names something else or (``must_exist``) no pipeline folder."""
    from reelflow.render.jobs.resolve import MODELS_PREFIX, models_dir

    rel = source.removeprefix(MODELS_PREFIX)
    parts = rel.replace("\\", "/").split("/")
    if (not source.startswith(MODELS_PREFIX) or not rel or rel.startswith(("/", "~"))
            or "://" in rel or ".." in parts or "\x00" in rel):  # fmt: skip
        raise MusicModelError(f"music.model {source!r}: name a folder in the models folder "
                              f"({MODELS_PREFIX}NAME)")
    folder = models_dir() / rel
    if must_exist and not (folder / "model_index.json").is_file():
        raise MusicModelError(f"music.model {source!r}: no text-to-music model folder at "
                              f"{folder} (a StableAudioPipeline saved with save_pretrained: "
                              "model_index.json and its components)")
    return folder


def is_tiny(source: str) -> bool:
    return source.removeprefix("@models/") == TINY_MUSIC_MODEL


def check_music_model(storyboard: Any) -> None:
    """Before a run: a generated bed's model folder is there (the tiny one is built on first
    use). MusicModelError naming `music.model` otherwise."""
    music = storyboard.music
    if music is not None and music.prompt is not None:
        music_model_folder(music.model, must_exist=not is_tiny(music.model))


def ensure_tiny_music_model(source: str) -> None:
    """Build the tiny model where the storyboard names it and it is not there yet."""
    if is_tiny(source):
        folder = music_model_folder(source, must_exist=False)
        if not (folder / "model_index.json").is_file():
            make_tiny_stable_audio(folder)


# -- the tiny model ----------------------------------------------------------------------------


def byte_tokenizer(model_max_length: int = 128) -> Any:
    """A T5-style tokenizer made in code: one token per UTF-8 byte (a BPE without merges over
    the byte-level alphabet), so every text tokenises, Chinese included, and none is unknown."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(["<pad>", "</s>", "<unk>", *alphabet])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=model_max_length)


def make_tiny_stable_audio(folder: Path, *, seed: int = 0) -> Path:
    """A tiny random Stable Audio pipeline (8 kHz stereo, windows of at most 2.048 s) saved
    like a real checkpoint, for tests and demos. Built in a temporary folder beside ``folder``
    and moved into place, so a second process never loads a half-written one.

    Its scheduler is the real checkpoint's: the cosine DPM-Solver with Stable Audio's sigmas
    (its noise sampler is `torchsde`'s Brownian tree)."""
    import torch
    from diffusers import (
        AutoencoderOobleck,
        CosineDPMSolverMultistepScheduler,
        StableAudioDiTModel,
        StableAudioPipeline,
        StableAudioProjectionModel,
    )
    from transformers import T5Config, T5EncoderModel

    tokenizer = byte_tokenizer()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        text_encoder = T5EncoderModel(T5Config(
            vocab_size=len(tokenizer), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
            relative_attention_num_buckets=8))
        projection = StableAudioProjectionModel(text_encoder_dim=16, conditioning_dim=8,
                                                min_value=0, max_value=512)
        transformer = StableAudioDiTModel(
            sample_size=256, in_channels=4, out_channels=4, num_layers=1, attention_head_dim=8,
            num_attention_heads=2, num_key_value_attention_heads=1, cross_attention_dim=8,
            time_proj_dim=8, global_states_input_dim=16, cross_attention_input_dim=8)
        vae = AutoencoderOobleck(encoder_hidden_size=4, downsampling_ratios=[2, 4, 8],
                                 channel_multiples=[1, 2, 2], decoder_channels=4,
                                 decoder_input_channels=4, audio_channels=2, sampling_rate=8000)
    scheduler = CosineDPMSolverMultistepScheduler(sigma_min=0.3, sigma_max=500.0, sigma_data=1.0,
                                                  sigma_schedule="exponential", solver_order=2,
                                                  prediction_type="v_prediction")
    pipe = StableAudioPipeline(vae=vae, text_encoder=text_encoder, projection_model=projection,
                               tokenizer=tokenizer, transformer=transformer, scheduler=scheduler)
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        pipe.save_pretrained(str(building))
        try:
            os.rename(building, folder)
        except OSError:  # another process finished first: keep its folder
            if not (folder / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return folder


# -- loading and generation --------------------------------------------------------------------

_loaded: dict[str, Any] = {}
_load_lock = threading.Lock()
_run_lock = threading.Lock()


def _load(folder: Path, model_sha256: str) -> Any:
    """The pipeline of a folder, once per process and content (local files only): on CUDA in
    float16 when there is one, else on the CPU in float32."""
    with _load_lock:
        key = f"{folder}:{model_sha256}"
        if key not in _loaded:
            import torch
            from diffusers import StableAudioPipeline

            cuda = torch.cuda.is_available()
            try:
                pipe = StableAudioPipeline.from_pretrained(
                    str(folder), local_files_only=True,
                    dtype=torch.float16 if cuda else torch.float32)
            except ImportError as exc:  # a component that needs a package (torchsde)
                raise MusicModelError(f"music model {folder.name}: "
                                      f"{str(exc).strip().splitlines()[0]}") from None
            except (OSError, ValueError) as exc:
                raise MusicModelError(f"music model folder {folder}: "
                                      f"{str(exc).splitlines()[0]}") from None
            pipe.set_progress_bar_config(disable=True)
            _loaded.clear()  # one music model resident at a time
            _loaded[key] = pipe.to("cuda" if cuda else "cpu")
        return _loaded[key]


def max_seconds(pipe: Any) -> float:
    """The longest audio the pipeline makes in one call (its latent length in seconds)."""
    return pipe.transformer.config.sample_size * pipe.vae.hop_length / pipe.vae.sampling_rate


def window_lengths(seconds: float, longest: float, crossfade: float) -> list[float]:
    """Equal windows, none longer than ``longest``, that cover ``seconds`` once their
    ``crossfade`` overlaps are taken off: one window when the model makes it all at once."""
    if seconds <= longest:
        return [seconds]
    count = math.ceil((seconds - crossfade) / (longest - crossfade))
    return [(seconds + (count - 1) * crossfade) / count] * count


def remove_rumble(audio: np.ndarray, rate: int, seconds: float = 0.05) -> np.ndarray:
    """``audio`` (channels, samples) less its DC offset and sub-audible drift: minus its
    moving average taken twice over ``seconds`` (a triangle low-pass, centred, its first null
    at 20 Hz for 50 ms). A bed that drifts would spend the mix's headroom on what no one hears
    (the tiny random model's output is mostly that)."""
    width = max(1, round(seconds * rate))
    if audio.shape[1] < 2 * width:
        return audio - audio.mean(axis=1, keepdims=True)
    smooth = audio
    for _ in range(2):
        padded = np.pad(smooth, ((0, 0), (width // 2, width - width // 2)), mode="reflect")
        total = np.cumsum(padded, axis=1, dtype=np.float64)
        total = np.concatenate([np.zeros((audio.shape[0], 1)), total], axis=1)
        smooth = ((total[:, width:] - total[:, :-width]) / width)[:, : audio.shape[1]]
    return (audio - smooth).astype(np.float32)


def crossfade_join(windows: list[np.ndarray], overlap: int) -> np.ndarray:
    """Windows of shape (channels, samples) joined end to start, each pair overlapping by
    ``overlap`` samples under an equal-power crossfade (uncorrelated sounds keep their level)."""
    out = windows[0]
    ramp = np.linspace(0.0, np.pi / 2, overlap, dtype=np.float32) if overlap else None
    for window in windows[1:]:
        if ramp is None:
            out = np.concatenate([out, window], axis=1)
            continue
        mixed = out[:, -overlap:] * np.cos(ramp) + window[:, :overlap] * np.sin(ramp)
        out = np.concatenate([out[:, :-overlap], mixed, window[:, overlap:]], axis=1)
    return out


def generate_bed(
    folder: Path,
    model_sha256: str,
    out: Path,
    *,
    prompt: str,
    seed: int,
    seconds: float,
    steps: int,
    guidance: float,
) -> BedInfo:
    """Write a bed of ``seconds`` for ``prompt`` to ``out`` (16-bit WAV at the model's rate):
    one pipeline call per window (seed, seed + 1, ...), its rumble removed, the windows
    crossfaded, 10 ms fades at the ends, peak-normalised. A bed that is not finite, or
    silent, is refused."""
    import soundfile
    import torch

    pipe = _load(folder, model_sha256)
    rate = int(pipe.vae.sampling_rate)
    longest = max_seconds(pipe)
    crossfade = min(CROSSFADE_SECONDS, longest / 4)
    lengths = window_lengths(seconds, longest, crossfade)
    device = pipe._execution_device
    windows = []
    with _run_lock, torch.no_grad():
        for index, length in enumerate(lengths):
            generator = torch.Generator(device="cpu").manual_seed(seed + index)
            audio = pipe(prompt, audio_end_in_s=length, num_inference_steps=steps,
                         guidance_scale=guidance, generator=generator).audios[0]
            windows.append(remove_rumble(audio.float().cpu().numpy(), rate))
    log.info("music bed: %d window(s) of %.2f s on %s", len(lengths), lengths[0], device)
    bed = crossfade_join(windows, round(crossfade * rate) if len(windows) > 1 else 0)
    edge = min(round(EDGE_FADE * rate), bed.shape[1] // 2)  # no click where the bed starts/ends
    if edge:
        ramp = np.linspace(0.0, 1.0, edge, dtype=np.float32)
        bed[:, :edge] *= ramp
        bed[:, -edge:] *= ramp[::-1]
    if not np.isfinite(bed).all():
        raise StageError(f"music model {folder.name}: the bed for {prompt!r} is not finite "
                         "(NaN or infinity)")
    peak = float(np.abs(bed).max(initial=0.0))
    if peak < 1e-5:
        raise StageError(f"music model {folder.name}: the bed for {prompt!r} is silent")
    bed = bed * (PEAK / peak)  # the mix sets its level; the file keeps its 16 bits' range
    soundfile.write(str(out), bed.T, rate, subtype="PCM_16", format="WAV")
    return BedInfo(sample_rate=rate, channels=bed.shape[0], seconds=bed.shape[1] / rate,
                   windows=lengths, crossfade=crossfade if len(lengths) > 1 else 0.0,
                   peak=peak)
