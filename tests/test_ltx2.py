"""LTX-2 as a video backend: a tiny LTX-2 (transformer, video and audio VAEs, vocoder, a
Gemma-3 text encoder and tokenizer, all built from configs) saved with `save_pretrained` and
loaded through `from_pretrained(..., local_files_only=True)`, like a real checkpoint.

The seed film's winter -> spring transition (s04 -> s05 of examples/su7-winter-spring.yaml)
renders through the `test-ltx2` profile: the transition conditions on both frames, each clip
keeps its own sound as a stem beside it, and the film (no music) carries that sound, as long
as the picture. The same clips then make a film with a Chinese voice-over line and a music bed:
the clips' sound, the voice and the ducked music are each measured in the delivered audio.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from reelflow.media.ffmpeg import run
from reelflow.media.probe import probe
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings

ROOT = Path(__file__).resolve().parents[1]


def _audio_seconds(path: Path, tmp: Path) -> float:
    """Length of ``path``'s first audio stream, from its decoded samples."""
    raw = tmp / f"{path.stem}.pcm"
    run(["-i", str(path), "-map", "0:a:0", "-f", "s16le", "-ac", "1", "-ar", "48000", str(raw)],
        what="decode audio")  # fmt: skip
    return raw.stat().st_size / 2 / 48000


def _winter_to_spring() -> str:
    """The seed film's s04 (summit, winter) and s05 (its last frame, then spring), small."""
    board = yaml.safe_load((ROOT / "examples" / "su7-winter-spring.yaml").read_text())
    shots = [s for s in board["shots"] if s["id"] in ("s04-summit", "s05-winter-to-spring")]
    for shot in shots:
        shot["duration"] = 1.0
    shots[0].pop("transition_in", None)
    board.update(project="ltx2-film", width=128, height=72, fps=12, shots=shots)
    return yaml.safe_dump(board, allow_unicode=True)


def test_ltx2_conditions_a_transition_at_the_first_and_last_latent_frame(tmp_path: Path) -> None:
    from reelflow.motion.backends import get_backend
    from reelflow.motion.tiny import build_tiny_ltx2

    model = build_tiny_ltx2(tmp_path / "tiny-ltx2")
    backend = get_backend("ltx2", model=str(model), steps=2)
    assert (backend.constraints.size_multiple, backend.constraints.frame_step) == (32, 8)
    first, last = Image.new("RGB", (64, 32)), Image.new("RGB", (64, 32), "white")
    assert [i for i, _ in backend.condition_indices(first, last, 9)] == [0, 1]
    assert [i for i, _ in backend.condition_indices(first, last, 17)] == [0, 2]
    assert [i for i, _ in backend.condition_indices(first, None, 17)] == [0]
    assert backend.pipe.text_encoder.__class__.__name__ == "Gemma3ForConditionalGeneration"
    assert backend.sample_rate == backend.pipe.vocoder.config.output_sampling_rate


def test_tiny_ltx2_renders_the_winter_to_spring_transition_with_its_own_sound(
    film_env: dict[str, str], s3_settings: S3Settings, tmp_path: Path
) -> None:
    from flows.produce_video import produce_video

    result = produce_video(
        storyboard=_winter_to_spring(), approval="auto", profile="test-ltx2", exports=[]
    )
    store = ArtifactStore(s3_settings.with_bucket("film"))
    manifest = json.loads(store.get_bytes(result.manifest_key))
    clips = manifest["clips"]
    assert set(clips) == {"s04-summit", "s05-winter-to-spring"}
    for shot, key in clips.items():
        clip = store.lineage(key)
        assert clip.extra["backend"] == "ltx2", shot
        assert clip.spec["backend_options"]["model"] == "@models/tiny-ltx2"
        stem_key = keys.clip_audio_key(key)
        stem = store.lineage(stem_key)  # the clip's own sound, beside it
        assert stem.kind == "clip-audio" and stem.extra["clip"] == key
        assert stem.spec_hash == clip.spec_hash  # named by the clip's job
        assert abs(stem.extra["duration"] - 1.0) < 1e-3
        local = store.get_file(key, tmp_path / f"{shot}.mp4")
        info = probe(local)
        assert info.has_audio and info.frame_count == 12
        assert abs(_audio_seconds(local, tmp_path) - info.duration) <= 1 / 12

    # the transition conditions on both frames: the summit's last frame and its spring restyle
    frames = manifest["frames"]["s05-winter-to-spring"]
    transition = store.lineage(clips["s05-winter-to-spring"])
    assert transition.parents == frames and len(frames) == 2
    assert transition.spec["first_frame_key"] == frames[0]
    assert transition.spec["last_frame_key"] == frames[1]
    assert store.lineage(frames[1]).extra["step"] == "restyle"

    # no music: the film carries the clips' sound, as long as its picture (within one frame)
    film = store.get_file(result.film_key, tmp_path / "film.mp4")
    picture = probe(film)
    assert picture.has_audio
    assert abs(picture.duration - 2.0) <= 1 / 12
    assert abs(_audio_seconds(film, tmp_path) - picture.duration) <= 1 / 12
    sound, rate = _stem_samples(store, clips["s04-summit"], tmp_path)
    assert rate == 16000 and np.abs(sound).max() > 0  # the model's sound, not silence
    _with_voice_and_music(clips, store, tmp_path)


def _with_voice_and_music(clips: dict[str, str], store: ArtifactStore, tmp: Path) -> None:
    """The same two clips (Cached: a line and a music bed change no picture) with a Chinese
    line on the spring shot and a 13 kHz music bed: the delivered film holds the clips' own
    sound (where no one speaks it is the clip stem, measured by correlation), the voice where
    its line is placed, and the music at least 6 dB lower while the voice speaks."""
    from flows.produce_video import produce_video
    from tests.support.deployed import task_states
    from tests.test_sound import TONE, band_levels, film_audio, tone

    board = yaml.safe_load(_winter_to_spring())
    board["shots"][1]["voiceover"] = {"zh": "春天。"}
    board["music"] = {"path": "tone.wav", "snap_cuts": False}
    tone(tmp / "tone.wav", seconds=4.0)
    path = tmp / "voiced.yaml"
    path.write_text(yaml.safe_dump(board, allow_unicode=True), encoding="utf-8")
    state = produce_video(storyboard=str(path), approval="auto", profile="test-ltx2",
                          exports=[], return_state=True)  # fmt: skip
    assert state.is_completed(), state.message
    states = task_states(state.state_details.flow_run_id)
    assert states["speech-s05-winter-to-spring"] == ["Completed"]
    assert [states[f"clip-{shot}"] for shot in clips] == [["Cached"]] * 2, states
    assert states["assemble-film"] == ["Cached"]  # the pictures are the first film's
    result = state.result()
    assert json.loads(store.get_bytes(result.manifest_key))["clips"] == clips
    master = store.lineage(result.master_key)
    line, stem, music = store.lineage(master.parents[1]).parents  # the mix: voice, clips, music
    assert store.lineage(stem).kind != "speech" and store.lineage(line).kind == "speech"
    (placed,) = master.spec["voice"]
    assert placed["start"] == 1.0  # at the spring shot's start
    film = store.get_file(result.film_key, tmp / "voiced.mp4")
    samples, rate = film_audio(film, tmp / "voiced.wav")
    assert abs(samples.size / rate - 2.0) <= 1 / 12

    # the clips' sound: before the line the film's sound below 7 kHz (the music's tone above
    # it) is the clip stem's, at one gain; after the line's start, less the stem at that gain,
    # it is the spoken line, where it was placed and nowhere earlier
    clip_sound = _at_rate(*_read(store, stem, tmp / "stem.wav"), rate)
    voice = _at_rate(*_read(store, line, tmp / "line.wav"), rate)
    film_low, stem_low = _low(samples, rate), _low(clip_sound[: samples.size], rate)
    quiet = slice(int(0.05 * rate), int(0.8 * rate))  # no one speaks
    measured = {"clip": _similarity(film_low[quiet], stem_low[quiet], rate)}
    gain = np.dot(film_low[quiet], stem_low[quiet]) / np.dot(stem_low[quiet], stem_low[quiet])
    rest = film_low - gain * stem_low
    start = int(placed["start"] * rate)
    measured["voice"] = _similarity(rest[start:start + voice.size], _low(voice, rate), rate)
    measured["earlier"] = _similarity(rest[start - voice.size:start], _low(voice, rate), rate)
    measured["rest_before_db"] = float(20 * np.log10(_rms(rest[quiet]) / _rms(film_low[quiet])))
    # the music: ducked under the voice by at least 6 dB (its fade-out over the last 2 s,
    # linear in amplitude, taken out)
    times, level = band_levels(samples, rate, TONE - 300, TONE + 300)
    level = level - 20 * np.log10(np.clip((2.0 - times) / 2.0, 1e-3, None))
    end = placed["start"] + placed["duration"]
    before = level[(times > 0.2) & (times < 0.7)]
    during = level[(times > placed["start"] + 0.15) & (times < end - 0.15)]
    measured["duck_db"] = float(np.median(before) - np.median(during))
    assert measured["clip"] > 0.95 and measured["rest_before_db"] < -20, measured
    assert measured["voice"] > 0.9 and measured["earlier"] < 0.5, measured
    assert measured["duck_db"] >= 6.0, measured


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def _low(x: np.ndarray, rate: int, cutoff: float = 7000) -> np.ndarray:
    """``x`` below ``cutoff`` Hz: the music's 13 kHz tone left out."""
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(x.size, 1 / rate) > cutoff] = 0
    return np.fft.irfft(spectrum, x.size)


def _read(store: ArtifactStore, key: str, path: Path) -> tuple[np.ndarray, int]:
    import soundfile

    samples, rate = soundfile.read(str(store.get_file(key, path)), dtype="float32")
    return (samples.mean(axis=1) if samples.ndim == 2 else samples), rate


def _at_rate(samples: np.ndarray, rate: int, to: int) -> np.ndarray:
    """``samples`` resampled to ``to`` Hz (linear: enough below 7 kHz, where they are compared)."""
    t = np.arange(round(samples.size * to / rate)) / to
    return np.interp(t, np.arange(samples.size) / rate, samples)


def _similarity(a: np.ndarray, b: np.ndarray, rate: int, lag: float = 0.03) -> float:
    """The best normalised correlation of two sounds within ``lag`` s of each other (the
    encoder's delay)."""
    n = min(a.size, b.size)
    a, b = a[:n], b[:n]
    best = 0.0
    for shift in range(-int(lag * rate), int(lag * rate) + 1, 4):
        x, y = (a[shift:], b[: n - shift]) if shift >= 0 else (a[: n + shift], b[-shift:])
        best = max(best, float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12)))
    return best


def _stem_samples(store: ArtifactStore, clip_key: str, tmp: Path) -> tuple[np.ndarray, int]:
    from reelflow.motion.ltx2 import read_wav

    return read_wav(store.get_file(keys.clip_audio_key(clip_key), tmp / "stem.wav"))


def test_clip_sound_is_laid_shot_by_shot_silence_where_a_clip_has_none(tmp_path: Path) -> None:
    from reelflow.editing.clip_sound import ShotSound, lay_clip_sound
    from reelflow.media.frames import VideoWriter
    from reelflow.motion.ltx2 import write_wav

    fps, frames = 12, [12, 6, 9]  # three shots: 1 s, 0.5 s, 0.75 s
    with VideoWriter(tmp_path / "edit.mp4", width=32, height=32, fps=fps) as writer:
        for _ in range(sum(frames)):
            writer.write(np.zeros((32, 32, 3), np.uint8))
    t = np.arange(16000 * 2) / 16000
    tone = np.stack([0.5 * np.sin(2 * np.pi * 440 * t)] * 2)  # 2 s: longer than its shot
    write_wav(tmp_path / "a.wav", tone, 16000)
    write_wav(tmp_path / "c.wav", tone[:, :4000], 16000)  # 0.25 s: shorter, padded
    shots = [
        ShotSound(tmp_path / "a.wav", frames[0] / fps, start=0.5),
        ShotSound(None, frames[1] / fps),
        ShotSound(tmp_path / "c.wav", frames[2] / fps),
    ]
    film = lay_clip_sound(tmp_path / "edit.mp4", shots, tmp_path / "master.mp4")
    picture = probe(film)
    assert picture.frame_count == sum(frames) and picture.has_audio
    assert abs(_audio_seconds(film, tmp_path) - picture.duration) <= 1 / fps
    raw = np.fromfile(tmp_path / "master.pcm", dtype="<i2") / 32767.0
    rms = [float(np.sqrt(np.mean(raw[int(a * 48000) : int(b * 48000)] ** 2)))
           for a, b in ((0.1, 0.9), (1.1, 1.4), (1.55, 1.7), (1.85, 2.2))]  # fmt: skip
    assert rms[0] > 0.2 and rms[2] > 0.2  # the stems, where their shots are
    assert rms[1] < 0.01 and rms[3] < 0.01  # silence: no stem, and past a short stem's end
