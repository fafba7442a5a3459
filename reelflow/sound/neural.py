"""Neural speech offline: a VITS model (the MMS-TTS architecture, `transformers.VitsModel`)
loaded from a local folder, like the image models: `@models/NAME` in the machine's models
folder, never a hub id (the worker may have no network).

The folder holds what `save_pretrained` writes: `config.json`, the weights and the tokenizer's
`vocab.json` (a character vocabulary, as MMS-TTS uses). Chinese is romanised to tone-less
pinyin first (pypinyin), as MMS romanises non-Latin scripts with uroman, so one character
vocabulary speaks Chinese and English. `make_tiny_vits` builds a tiny random model from its
config with that vocabulary, for tests and demos: it says nothing intelligible, but it goes
through the same loader, tokenizer and synthesis a real checkpoint does.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from reelflow.sound.speech import SpeechError

__all__ = ["VitsEngine", "make_tiny_vits", "model_folder", "romanize", "vits_vocabulary"]

_HAN = re.compile(r"[\u3400-\u9fff]")
_CHINESE_PUNCTUATION = str.maketrans("。！？；，、：…", ".!?;,,:.")


def romanize(text: str) -> str:
    """Chinese characters as tone-less pinyin syllables (words apart), the rest as it is."""
    if not _HAN.search(text):
        return text
    from pypinyin import Style, lazy_pinyin

    syllables = lazy_pinyin(text.translate(_CHINESE_PUNCTUATION), style=Style.NORMAL,
                            errors="default")  # fmt: skip
    spaced = re.sub(r"\s+", " ", " ".join(syllables)).strip()
    return re.sub(r" ([.!?,;:])", r"\1", spaced)


def vits_vocabulary() -> dict[str, int]:
    """The character vocabulary of the built-in tokenizer: lower-case Latin letters (pinyin
    included), digits, space and a little punctuation, after a padding token."""
    chars = ["<pad>", " ", *"abcdefghijklmnopqrstuvwxyz", *"0123456789", *"'-,.!?", "<unk>"]
    return {c: i for i, c in enumerate(chars)}


def model_folder(source: str, field: str = "sound.model") -> Path:
    """The folder `sound.model` (or, per language, ``field`` `sound.model.en`) names:
    `@models/NAME` (or a bare relative NAME) in the models folder. SpeechError, naming the
    field, when it is not a model folder."""
    from reelflow.render.jobs.resolve import MODELS_PREFIX, models_dir

    rel = source.removeprefix(MODELS_PREFIX)
    parts = rel.replace("\\", "/").split("/")
    if not rel or rel.startswith(("/", "~")) or "://" in rel or ".." in parts:
        raise SpeechError(f"{field} {source!r}: name a folder in the models folder "
                          f"({MODELS_PREFIX}NAME)")
    folder = models_dir() / rel
    if not (folder / "config.json").is_file():
        raise SpeechError(f"{field} {source!r}: no VITS model folder at {folder} (it needs "
                          "the config.json, weights and vocab.json that save_pretrained writes)")
    return folder


@lru_cache(maxsize=64)
def _folder_hash(folder: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in stamp:
        digest.update(name.encode() + b"\0")
        with (Path(folder) / name).open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def folder_hash(folder: Path) -> str:
    """Content hash of a model folder's files (re-read only when a file's size or time moves)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _folder_hash(str(folder), stamp)


_loaded: dict[str, tuple[Any, Any]] = {}
_load_lock = threading.Lock()


def _load(folder: Path) -> tuple[Any, Any]:
    """The model and tokenizer of a folder, once per process (local files only)."""
    with _load_lock:
        key = f"{folder}:{folder_hash(folder)}"
        if key not in _loaded:
            from transformers import VitsModel, VitsTokenizer

            try:
                model = VitsModel.from_pretrained(str(folder), local_files_only=True).eval()
                tokenizer = VitsTokenizer.from_pretrained(str(folder), local_files_only=True)
            except (OSError, ValueError) as exc:
                raise SpeechError(f"VITS model folder {folder}: {exc}".splitlines()[0]) from None
            _loaded[key] = (model, tokenizer)
        return _loaded[key]


class VitsEngine:
    """A speech engine (`reelflow.sound.speech.SpeechEngine`) over a local VITS folder. The
    voice is the speaker id of a multi-speaker model ('0' for a single-speaker one)."""

    name = "vits"
    _lock = threading.Lock()

    def __init__(self, source: str, field: str = "sound.model") -> None:
        self.source = source
        self.folder = model_folder(source, field)

    def version(self) -> str:
        import transformers

        return f"vits {folder_hash(self.folder)[:16]} transformers {transformers.__version__}"

    def voice_for(self, language: str, voice: str | None) -> str:
        return voice or "0"

    def synthesize_sentence(self, text: str, voice: str, speed: float) -> tuple[np.ndarray, int]:
        import torch

        model, tokenizer = _load(self.folder)
        if not voice.isdigit():
            raise SpeechError(f"VITS voice {voice!r}: give a speaker id (0, 1, ...)")
        speaker = int(voice)
        speakers = model.config.num_speakers
        if speaker >= max(1, speakers):
            raise SpeechError(f"VITS model {self.source} has {speakers} speaker(s); no voice "
                              f"{voice}")
        inputs = tokenizer(romanize(text), return_tensors="pt")
        if inputs.input_ids.shape[-1] == 0:
            raise SpeechError(f"VITS model {self.source}: nothing it can read in {text!r}")
        with self._lock, torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(0)  # the same line sounds the same in every run (it is cached)
            model.speaking_rate = speed
            waveform = model(**inputs, speaker_id=speaker if speakers > 1 else None).waveform
        audio = np.clip(waveform[0].float().numpy(), -1.0, 1.0)
        return (audio * 32767).astype(np.int16), int(model.config.sampling_rate)


def make_tiny_vits(folder: Path, *, seed: int = 0) -> Path:
    """A tiny random VITS (tens of thousands of weights) with the built-in vocabulary, saved
    like a real checkpoint: for tests and demos, loaded back by the same loader."""
    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = vits_vocabulary()
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    config = VitsConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        ffn_dim=32, flow_size=16, spectrogram_bins=33, upsample_initial_channel=8,
        upsample_rates=[8, 8], upsample_kernel_sizes=[16, 16], resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]], prior_encoder_num_flows=1,
        prior_encoder_num_wavenet_layers=1, posterior_encoder_num_wavenet_layers=1,
        duration_predictor_num_flows=1, duration_predictor_filter_channels=16,
        depth_separable_num_layers=1, sampling_rate=16000,
    )  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = VitsModel(config).eval()
    model.save_pretrained(str(folder))
    tokenizer = VitsTokenizer(str(folder / "vocab.json"), language=None, add_blank=True,
                              normalize=True, phonemize=False)  # fmt: skip
    tokenizer.save_pretrained(str(folder))
    return folder
