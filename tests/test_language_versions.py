"""One film, two languages: `--export 9:16,lang=zh --export 16:9,lang=en` delivers two films
over one picture (the same edit, the same frames) with their own voice, mix and captions; and
the mix takes the clips' own sound (LTX-2's stems) beside the voice and the music.

Speech is measured below 8 kHz; the music is a 13 kHz tone and the clips' sound a 440 Hz tone,
so each stem's level is read from its own band of the delivered audio.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from reelflow.editing.audio import loudness
from reelflow.errors import InputError
from reelflow.media.ffmpeg import ffmpeg_exe
from reelflow.media.probe import probe
from reelflow.render.jobs import parse_export
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings
from reelflow.storyboard import parse_storyboard
from tests.test_sound import band_levels, film_audio, tone

STORYBOARD = """
title: 双语
project: two-tongues
width: 384
height: 216
fps: 24
style: {palette: ["#f5c518", "#6fae5a"]}
music: {path: tone.wav, snap_cuts: false}
shots:
  - {id: a, description: snowy peaks, duration: 2.5,
     voiceover: {zh: 雪山很静很静。, en: The peaks are still.}}
  - {id: b, description: the city, duration: 2.5, caption: {zh: 城市, en: The city},
     voiceover: {zh: 城市醒了。, en: The city wakes up.}}
"""
EXPORTS = ["9:16,lang=zh", "16:9,lang=en", "9:16,lang=en,captions=none,lufs=-20"]
ZH, EN, EN_QUIET = "9x16-h264-zh", "16x9-h264-en", "9x16-h264-no-captions-en-lufs-20"


def frame(video: Path, at: float) -> np.ndarray:
    """The decoded RGB frame of ``video`` at ``at`` seconds."""
    info = probe(video)
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", f"{at}", "-i", str(video),
                          "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         check=True, capture_output=True).stdout  # fmt: skip
    return np.frombuffer(raw, np.uint8).reshape(info.height, info.width, 3).astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def voice_ends(samples: np.ndarray, rate: int) -> list[float]:
    """Where the voice stops (below 8 kHz) before at least 0.3 s of quiet."""
    times, level = band_levels(samples, rate, 60, 8000)
    loud = level > level.max() - 35
    ends = [float(times[i] + 0.01) for i in range(loud.size - 30)
            if loud[i] and not loud[i + 1 : i + 31].any()]  # fmt: skip
    return ends


def test_a_language_without_lines_is_refused_naming_the_export(tmp_path: Path) -> None:
    from reelflow.render.inputs import check_inputs

    tone(tmp_path / "tone.wav", seconds=1.0)
    path = tmp_path / "board.yaml"
    path.write_text(STORYBOARD.replace(", en: The city wakes up.", ""), encoding="utf-8")
    with pytest.raises(InputError, match=r"^--export 16:9,lang=en \(version 16x9-h264-en\): "
                       r"shot b has a voice-over but no en line"):  # fmt: skip
        check_inputs(str(path), exports=[parse_export("16:9,lang=en")])
    zh_only = STORYBOARD.replace(", en: The city wakes up.", "").replace(
        ", en: The peaks are still.", "")
    path.write_text(zh_only, encoding="utf-8")
    with pytest.raises(InputError, match=r"^--export 9:16,lang=en .*: the storyboard has no en "
                       r"voice-over lines"):  # fmt: skip
        check_inputs(str(path), exports=[parse_export("9:16,lang=en")])
    check_inputs(str(path), exports=[parse_export("9:16,lang=zh"), parse_export("16:9")])
    # every language a version speaks is measured: a long English line is refused too
    long = "The peaks are still and white and cold and quiet tonight."
    path.write_text(STORYBOARD.replace("The peaks are still.", long), encoding="utf-8")
    check_inputs(str(path), exports=[parse_export("9:16,lang=zh")])
    both = [parse_export("9:16,lang=zh"), parse_export("16:9,lang=en")]
    with pytest.raises(InputError, match=r"^shot a: its en voice-over lasts"):
        check_inputs(str(path), exports=both)


def test_export_names_hold_the_language_and_the_loudness() -> None:
    names = [parse_export(text).name for text in EXPORTS]
    assert names == [ZH, EN, EN_QUIET]
    assert parse_export("9:16").name == "9x16-h264"  # without lang=, as before
    with pytest.raises(InputError, match=r"--export '16:9,lang=fr': lang: "):
        parse_export("16:9,lang=fr")
    with pytest.raises(InputError, match=r"--export '16:9,lufs=-2': lufs: "):
        parse_export("16:9,lufs=-2")


@pytest.fixture(scope="module")
def bilingual(film_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Any:
    from flows.produce_video import produce_video

    folder = tmp_path_factory.mktemp("bilingual")
    tone(folder / "tone.wav")
    board = folder / "board.yaml"
    board.write_text(STORYBOARD, encoding="utf-8")
    state = produce_video(storyboard=str(board), approval="auto", profile="previz",
                          exports=[parse_export(text) for text in EXPORTS],
                          return_state=True)  # fmt: skip
    assert state.is_completed(), state.message
    return state.result()


def test_zh_and_en_versions_share_the_picture_and_differ_in_voice_and_captions(
    bilingual: Any, s3_settings: S3Settings, tmp_path: Path
) -> None:
    store = ArtifactStore(s3_settings.with_bucket("film"))
    assert set(bilingual.versions) == {ZH, EN, EN_QUIET}
    films = {name: store.get_file(key, tmp_path / f"{name}.mp4")
             for name, key in bilingual.versions.items()}  # fmt: skip
    masters = {name: store.lineage(key).parents[0] for name, key in bilingual.versions.items()}
    edits = {store.lineage(master).parents[0] for master in masters.values()}
    assert len(edits) == 1  # one picture under every language and loudness
    assert len(set(masters.values())) == 3  # a master (mix) per language and loudness

    # the same picture frames: 9:16 zh against 9:16 en (no captions) above the caption band,
    # 16:9 en against the edit itself; captions make the difference below it
    edit = store.get_file(edits.pop(), tmp_path / "edit.mp4")
    for name, other in ((ZH, films[EN_QUIET]), (EN, edit)):
        a, b = frame(films[name], 0.5), frame(other, 0.5)  # while the first line is spoken
        assert a.shape == b.shape, name
        top = a.shape[0] // 2
        assert psnr(a[:top], b[:top]) >= 35.0, (name, psnr(a[:top], b[:top]))
        changed = (np.abs(a[top:] - b[top:]).max(axis=2) > 60).mean()
        assert changed > 0.002, (name, changed)  # this one's captions are burned in
    assert probe(films[ZH]).width < probe(films[ZH]).height

    # captions in the version's language alone, one per spoken sentence
    cues = {name: store.lineage(bilingual.versions[name]).spec["captions"] for name in (ZH, EN)}
    assert [c["zh"] for c in cues[ZH] if c["zh"]] == ["雪山很静很静。", "城市醒了。"]
    assert not any(c["en"] for c in cues[ZH])
    assert [c["en"] for c in cues[EN] if c["en"]] == ["The peaks are still.", "The city wakes up."]
    assert not any(c["zh"] for c in cues[EN])

    # each version speaks its own lines: measured where its voice stops in each shot
    for name, language in ((ZH, "zh"), (EN, "en"), (EN_QUIET, "en")):
        master = store.lineage(masters[name])
        mix = store.lineage(master.parents[1])
        assert mix.kind == "mix" and len(mix.parents) == 3  # two lines and the music
        spoken = [store.lineage(key) for key in mix.parents[:2]]
        assert all(line.spec["language"] == language for line in spoken), name
        expected = [clip["start"] + clip["duration"] for clip in master.spec["voice"]]
        samples, rate = film_audio(films[name], tmp_path / f"{name}.wav")
        ends = voice_ends(samples, rate)
        assert len(ends) == 2 and all(abs(e - x) <= 2 / 24 for e, x in zip(ends, expected,
                                                                              strict=True)), (
            name, ends, expected)  # fmt: skip
    zh_voice = store.lineage(masters[ZH]).spec["voice"]
    en_voice = store.lineage(masters[EN]).spec["voice"]
    assert abs(zh_voice[0]["duration"] - en_voice[0]["duration"]) > 0.2  # really other speech
    assert abs(loudness(films[ZH]) - (-14.0)) <= 1.0
    assert abs(loudness(films[EN]) - (-14.0)) <= 1.0
    assert abs(loudness(films[EN_QUIET]) - (-20.0)) <= 1.0  # lufs= per export


# -- the clips' own sound in the mix (S3 and ffmpeg; no model) ---------------------------------


def test_clip_stems_join_the_mix_at_their_level_and_are_not_ducked(
    store: ArtifactStore, tmp_path: Path
) -> None:
    from reelflow.motion.ltx2 import write_wav
    from reelflow.render.edit import clip_sound_stem, master_with_music, synthesize_line
    from reelflow.render.jobs import EditClip, MasterJob, VoiceClip, speech_jobs
    from reelflow.render.jobs.specs import ClipStemJob

    project = "clip-mix"
    board = parse_storyboard(STORYBOARD.replace("project: two-tongues", f"project: {project}"))
    line = synthesize_line(store, speech_jobs(board, "en")[0])  # shot a's line, ~1.3 s
    edit = tmp_path / "edit.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    "color=c=gray:s=192x108:r=24:d=5", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(edit)], check=True)  # fmt: skip
    edit_key = store.put_file(keys.edit_key(project, "0" * 16), edit, "video/mp4")
    music_key = store.put_file(keys.input_key(project, "1" * 16, "wav"),
                               tone(tmp_path / "tone.wav"), "audio/wav")  # fmt: skip
    # two 2.5 s clips: the first (LTX-2) made a 440 Hz sound at 16 kHz, the second none
    clips = [EditClip(shot=s, key=keys.clip_key(project, s, f"{i}" * 16), duration=2.5,
                      transition="cut", transition_duration=0.0)
             for i, s in ((2, "a"), (3, "b"))]  # fmt: skip
    t = np.arange(16000 * 3) / 16000
    write_wav(tmp_path / "a.wav", np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * 2), 16000)
    stem_of_a = store.put_file(keys.clip_audio_key(clips[0].key), tmp_path / "a.wav", "audio/wav")
    stem_job = ClipStemJob(project=project, edit_key=edit_key, clips=clips, fps=24)
    stem = clip_sound_stem(store, stem_job)
    assert stem == stem_job.output_key() and store.lineage(stem).parents == [stem_of_a]
    track, rate = soundfile.read(str(store.get_file(stem, tmp_path / "stem.wav")))
    assert abs(track.shape[0] / rate - 5.0) < 0.01  # as long as the picture, silent in b
    assert np.abs(track[: rate * 2]).max() > 0.1 and np.abs(track[int(rate * 2.6):]).max() < 1e-3

    voice = [VoiceClip(shot="a", key=line.key, start=0.0, duration=line.duration)]
    levels = {}
    for clip_db in (-10.0, -20.0):
        job = MasterJob(project=project, edit_key=edit_key, music_key=music_key, voice=voice,
                        clip_sound_key=stem, clip_level_db=clip_db)  # fmt: skip
        master = store.get_file(master_with_music(store, job), tmp_path / f"m{clip_db}.mp4")
        assert store.lineage(job.mix_key()).parents == [line.key, stem, music_key]
        samples, rate = film_audio(master, tmp_path / f"m{clip_db}.wav")
        times, clip_band = band_levels(samples, rate, 400, 480)
        _, music_band = band_levels(samples, rate, 12700, 13300)
        speaking = (times > 0.2) & (times < line.duration - 0.2)
        between = (times > line.duration + 0.3) & (times < 2.3)
        silent = times > 2.7  # shot b: its clip made no sound
        levels[clip_db] = float(np.median(clip_band[between]) - np.median(music_band[between]))
        # the clips' sound belongs to the picture: not ducked while the voice speaks; the
        # music is, by at least 6 dB
        assert abs(np.median(clip_band[speaking]) - np.median(clip_band[between])) <= 1.5
        assert np.median(music_band[between]) - np.median(music_band[speaking]) >= 6.0
        assert np.median(clip_band[between]) - np.median(clip_band[silent]) >= 30.0  # audible
        assert abs(loudness(master) - (-14.0)) <= 1.0
    assert abs(levels[-10.0] - levels[-20.0] - 10.0) <= 1.5, levels  # each stem at its level
