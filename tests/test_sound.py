"""The film's sound: voice-over lines spoken offline (eSpeak NG), captions that start where each
sentence is heard, the music ducked under the voice, and one changed line re-spoken alone.

Speech onsets are measured from the delivered audio (energy below 8 kHz after a silence); the
music is a 13 kHz tone, above anything the 22.05 kHz voice can hold, so its level is read from
that band even while the voice speaks.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from reelflow.editing.audio import loudness
from reelflow.errors import InputError
from reelflow.media.ffmpeg import ffmpeg_exe
from reelflow.render.jobs import ExportSpec
from reelflow.sound.check import check_lines, measure_lines
from reelflow.sound.lines import check_line_lengths, place_lines, voiced_cues
from reelflow.sound.speech import EspeakEngine, speak, split_sentences
from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings
from reelflow.storyboard import StoryboardError, parse_storyboard
from tests.support.deployed import task_states

FPS = 24
TONE = 13000.0

STORYBOARD = """
title: 声音
project: sound-film
width: 192
height: 108
fps: 24
style: {palette: ["#f5c518"]}
music: {path: tone.wav, snap_cuts: false}
shots:
  - {id: a, description: snowy peaks, duration: 2.5, voiceover: {zh: 雪山很静。}}
  - {id: b, description: the city, duration: 2.5,
     voiceover: {zh: 城市醒了。春天来了。, en: The city wakes. Spring is here.}}
"""


def tone(path: Path, seconds: float = 8.0, rate: int = 48000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(str(path), 0.3 * np.sin(2 * np.pi * TONE * t), rate, subtype="PCM_16")
    return path


def film_audio(video: Path, out: Path) -> tuple[np.ndarray, int]:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(video), "-map", "0:a:0",
                    "-ac", "1", "-ar", "48000", str(out)], check=True)  # fmt: skip
    samples, rate = soundfile.read(str(out), dtype="float32")
    return samples, rate


def band_levels(samples: np.ndarray, rate: int, low: float, high: float, hop: float = 0.01):
    """(times, dB) of the energy between ``low`` and ``high`` Hz in windows of ``hop`` s."""
    n = round(hop * rate)
    frames = samples[: samples.size // n * n].reshape(-1, n) * np.hanning(n)
    spectrum = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(n, 1 / rate)
    band = spectrum[:, (freqs >= low) & (freqs < high)].sum(axis=1)
    return np.arange(band.size) * hop, 10 * np.log10(band + 1e-12)


def speech_onsets(samples: np.ndarray, rate: int, min_silence: float = 0.2) -> list[float]:
    """Where the voice starts after at least ``min_silence`` s of quiet (below 8 kHz)."""
    times, level = band_levels(samples, rate, 60, 8000)
    loud = level > level.max() - 35
    onsets, quiet = [], min_silence
    for t, on in zip(times, loud, strict=True):
        if on and quiet >= min_silence:
            onsets.append(float(t))
        quiet = 0.0 if on else quiet + 0.01
    return onsets


def srt_starts(video: Path, tmp: Path) -> list[tuple[float, str]]:
    srt = tmp / "cues.srt"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(video), "-map", "0:s:0",
                    str(srt)], check=True)  # fmt: skip
    found = re.findall(r"(\d+):(\d+):(\d+),(\d+) --> .*\n(.+)", srt.read_text(encoding="utf-8"))
    return [(int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000, text)
            for h, m, s, ms, text in found]  # fmt: skip


def music_drop(samples: np.ndarray, rate: int, speaking: list[tuple[float, float]],
               between: tuple[float, float]) -> float:  # fmt: skip
    """dB by which the tone is lower while the voice speaks than between the lines."""
    times, level = band_levels(samples, rate, TONE - 300, TONE + 300)
    during = np.concatenate([level[(times > a + 0.2) & (times < b - 0.2)] for a, b in speaking])
    gap = level[(times > between[0]) & (times < between[1])]
    return float(np.median(gap) - np.median(during))


# -- the engine and the storyboard (no servers) ------------------------------------------------


def test_espeak_speaks_chinese_and_english_sentence_by_sentence(tmp_path: Path) -> None:
    engine = EspeakEngine()
    assert re.match(r"\d+\.\d+", engine.version())
    assert split_sentences("城市醒了。春天来了！Go. Now?") == [
        "城市醒了。", "春天来了！", "Go.", "Now?"]
    for text, voice in [("城市醒了。春天来了。", "cmn"), ("The city wakes. Spring is here.", "en")]:
        speech = speak(engine, text, voice, 1.0, tmp_path / f"{voice}.wav")
        samples, rate = soundfile.read(str(tmp_path / f"{voice}.wav"), dtype="float32")
        assert rate == speech.sample_rate == 22050 and samples.size / rate == speech.duration
        assert len(speech.sentences) == 2 and speech.sentences[0].start == 0.0
        onsets = speech_onsets(samples, rate)
        assert len(onsets) == 2, onsets
        for onset, sentence in zip(onsets, speech.sentences, strict=True):
            assert abs(onset - sentence.start) <= 1 / FPS, (onset, sentence)
    fast = speak(engine, "城市醒了。", "cmn", 1.6, tmp_path / "fast.wav")
    slow = speak(engine, "城市醒了。", "cmn", 0.8, tmp_path / "slow.wav")
    assert fast.duration < slow.duration * 0.7


def test_voiceover_is_strict_and_a_long_line_is_refused_or_held() -> None:
    with pytest.raises(StoryboardError, match=r"voiceover.*(tone|Extra)"):
        parse_storyboard(STORYBOARD.replace("{zh: 雪山很静。}", "{zh: 雪山很静。, tone: calm}"))
    with pytest.raises(StoryboardError, match="sound.duck_db"):
        parse_storyboard(STORYBOARD + "sound: {duck_db: -3}\n")
    with pytest.raises(StoryboardError, match="no en line"):  # shot a speaks only zh
        parse_storyboard(STORYBOARD + "sound: {language: en}\n")
    board = parse_storyboard(STORYBOARD)
    assert board.voice_language == "zh"
    check_lines(board)  # both lines fit their shots
    short = STORYBOARD.replace("id: b, description: the city, duration: 2.5",
                               "id: b, description: the city, duration: 1.0")
    with pytest.raises(InputError, match=r"^shot b: .* lasts 2\.\d\d s, longer than the shot "
                       r"\(1 s\)"):  # fmt: skip
        check_lines(parse_storyboard(short))
    held = parse_storyboard(short + "sound: {line_too_long: extend}\n")
    check_lines(held)  # extend: never refused
    lines = measure_lines(held)
    durations = check_line_lengths(held, [2.5, 1.0], lines)
    assert durations[0] == 2.5 and durations[1] > lines["b"].duration  # held, never cut


def test_validate_refuses_a_long_line_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    tone(tmp_path / "tone.wav", seconds=1.0)
    path = tmp_path / "board.yaml"
    path.write_text(STORYBOARD.replace("id: b, description: the city, duration: 2.5",
                                       "id: b, description: the city, duration: 1.0"),
                    encoding="utf-8")  # fmt: skip
    assert main(["validate", str(path)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and re.match(rf"{re.escape(str(path))}: shot b: .* lasts 2\.\d\d s",
                                         lines[0]), lines  # fmt: skip
    path.write_text(STORYBOARD, encoding="utf-8")
    assert main(["validate", str(path)]) == 0


def test_captions_follow_the_placed_lines() -> None:
    board = parse_storyboard(STORYBOARD)
    lines = measure_lines(board)
    placed = place_lines(board, [2.5, 2.5], lines)
    assert [(c.shot, c.start) for c in placed] == [("a", 0.0), ("b", 2.5)]
    cues = voiced_cues(board, [2.5, 2.5], lines)
    assert abs(sum(c.duration for c in cues) - 5.0) < 1e-6
    spoken = [c for c in cues if c.zh]
    assert [c.zh for c in spoken] == ["雪山很静。", "城市醒了。", "春天来了。"]
    assert [c.en for c in spoken] == ["", "The city wakes.", "Spring is here."]  # paired
    # a shorter cut: line b would start before line a ends; it waits instead of overlapping
    tight = place_lines(board, [0.5, 2.5], lines)
    assert tight[1].start >= tight[0].start + tight[0].duration


# -- English, through the speech step and the master (S3) -------------------------------------


def test_english_line_mixed_over_music(store: ArtifactStore, tmp_path: Path) -> None:
    from reelflow.render.edit import master_with_music, synthesize_line
    from reelflow.render.jobs import MasterJob, VoiceClip, speech_jobs
    from reelflow.store import keys

    text = STORYBOARD.replace("project: sound-film", "project: sound-en").replace(
        "{zh: 雪山很静。}", "{zh: 雪山很静。, en: The peaks are quiet.}")
    text += "sound: {language: en}\n"
    board = parse_storyboard(text)
    jobs = speech_jobs(board)
    assert [(j.shot, j.language, j.voice, j.engine) for j in jobs] == [
        ("a", "en", "en", "espeak"), ("b", "en", "en", "espeak")]
    lines = {job.shot: synthesize_line(store, job) for job in jobs}
    assert store.lineage(lines["b"].key).kind == "speech"
    assert synthesize_line(store, jobs[1]) == lines["b"]  # found again, timings from the sidecar
    edit = tmp_path / "edit.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    "color=c=gray:s=192x108:r=24:d=5", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(edit)], check=True)  # fmt: skip
    edit_key = store.put_file(keys.edit_key("sound-en", "0" * 16), edit, "video/mp4")
    music_key = store.put_file(keys.input_key("sound-en", "1" * 16, "wav"),
                               tone(tmp_path / "tone.wav"), "audio/wav")  # fmt: skip
    placed = [VoiceClip(shot=s, key=lines[s].key, start=at, duration=lines[s].duration)
              for s, at in (("a", 0.0), ("b", 2.5))]  # fmt: skip
    job = MasterJob(project="sound-en", edit_key=edit_key, music_key=music_key, voice=placed)
    master = store.get_file(master_with_music(store, job), tmp_path / "master.mp4")
    assert store.lineage(job.mix_key()).parents == [c.key for c in placed] + [music_key]
    samples, rate = film_audio(master, tmp_path / "master.wav")
    starts = [c.start + s.start for c in placed for s in lines[c.shot].sentences]
    onsets = speech_onsets(samples, rate)
    assert len(onsets) == len(starts) == 3, (onsets, starts)
    assert all(abs(o - s) <= 1 / FPS for o, s in zip(onsets, starts, strict=True)), onsets
    end_a = placed[0].start + placed[0].duration
    drop = music_drop(samples, rate, [(c.start, c.start + c.duration) for c in placed],
                      (end_a + 0.25, 2.5 - 0.25))  # fmt: skip
    assert drop >= 6.0, drop
    assert abs(loudness(master) - (-14.0)) <= 1.0


def test_a_music_prompt_is_an_alternative_to_a_file_and_snaps_only_when_asked() -> None:
    head = "title: t\nproject: p\nshots: [{id: a, description: d, duration: 2}]\n"
    board = parse_storyboard(head + "music: {prompt: 雪山上的钢琴, seed: 7}\n")
    assert board.music is not None and board.music.prompt == "雪山上的钢琴"
    assert board.music.model == "@models/stable-audio-open-1.0" and board.music.seed == 7
    assert board.music.snap_cuts is False  # its beats move with its prompt
    asked = parse_storyboard(head + "music: {prompt: drums, snap_cuts: true}\n")
    assert asked.music is not None and asked.music.snap_cuts is True
    filed = parse_storyboard(head + "music: {path: tone.wav}\n")
    assert filed.music is not None and filed.music.snap_cuts is True and filed.music.prompt is None


def test_windows_cover_the_film_and_join_at_a_constant_level() -> None:
    from reelflow.sound.music_model import crossfade_join, remove_rumble, window_lengths

    assert window_lengths(1.5, 2.0, 0.5) == [1.5]
    lengths = window_lengths(5.0, 2.0, 0.5)
    assert len(lengths) == 3 and max(lengths) <= 2.0
    assert sum(lengths) - 2 * 0.5 == pytest.approx(5.0)
    assert window_lengths(120.0, 47.55, 2.0) == [pytest.approx(41.33, abs=0.01)] * 3
    rng = np.random.default_rng(0)
    overlap = 500
    windows = [rng.standard_normal((2, 2000)).astype(np.float32) for _ in range(3)]
    joined = crossfade_join(windows, overlap)
    assert joined.shape == (2, 3 * 2000 - 2 * overlap)
    # uncorrelated windows keep their level through an equal-power crossfade
    fade = joined[:, 2000 - overlap + 100: 2000 - 100]
    assert np.sqrt(np.mean(fade**2)) == pytest.approx(1.0, abs=0.1)
    assert np.array_equal(joined[:, :1500], windows[0][:, :1500])
    # a bed's DC offset and drift go (they would spend the mix's headroom), what is heard stays
    rate = 8000
    t = np.arange(4 * rate) / rate
    low, tone = 0.3 + 0.2 * np.sin(2 * np.pi * 2 * t), 0.1 * np.sin(2 * np.pi * 440 * t)
    clean = remove_rumble(np.stack([low + tone, low + tone]), rate)[0, rate:-rate]
    assert np.abs(clean - tone[rate:-rate]).max() < 0.01


def test_tiny_stable_audio_makes_a_bed_from_a_chinese_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built from configs, saved, loaded back by `from_pretrained` like a real checkpoint;
    its byte-level tokenizer reads Chinese (no token unknown), and the bed it makes for 2.5 s
    is two crossfaded windows of noise: finite, not silent, another for another seed."""
    from reelflow.render.weights import content_hash
    from reelflow.sound.music_model import (
        byte_tokenizer,
        ensure_tiny_music_model,
        generate_bed,
        music_model_folder,
    )

    tokenizer = byte_tokenizer()
    ids = tokenizer("雪山上的钢琴 piano").input_ids
    assert tokenizer.unk_token_id not in ids and len(ids) == 6 * 3 + 6
    assert tokenizer.decode(ids) == "雪山上的钢琴 piano"
    monkeypatch.setenv("REELFLOW_MODELS", str(tmp_path / "models"))
    ensure_tiny_music_model("@models/tiny-stable-audio")
    folder = music_model_folder("@models/tiny-stable-audio")
    sha = content_hash(str(folder))
    beds = []
    for seed in (3, 4):
        out = tmp_path / f"bed{len(beds)}.wav"
        info = generate_bed(folder, sha, out, prompt="雪山上的钢琴", seed=seed, seconds=2.5,
                            steps=1, guidance=7.0)  # fmt: skip
        assert info.sample_rate == 8000 and info.channels == 2 and len(info.windows) == 2
        samples, rate = soundfile.read(str(out))
        assert samples.shape == (20000, 2) and rate == 8000
        assert np.isfinite(samples).all() and np.abs(samples).max() == pytest.approx(0.99, 1e-3)
        assert abs(samples.mean()) < 0.01 and np.sqrt(np.mean(samples**2)) > 0.05
        beds.append(samples)
    assert not np.array_equal(beds[0], beds[1])  # the seed is the window's noise


# -- the flow: a Chinese voice-over film, then one line changed ------------------------------


@pytest.fixture(scope="module")
def voiced(
    film_env: dict[str, str], s3_settings: S3Settings, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    """The film rendered with manual gates, its lines reviewed at the clips gate: bad re-takes
    refused, a re-take too long for its shot refused by the run, then a faster line a and line
    b in another voice (the same words: the captions stay), heard at a second round. What the
    gates showed and answered is kept for the tests."""
    import os
    import threading

    from flows.produce_video import produce_video
    from flows.reviewer import approve_run
    from tests.support.waiting import wait_for_pending, wait_until

    folder = tmp_path_factory.mktemp("sound")
    tone(folder / "tone.wav")
    board = folder / "board.yaml"
    board.write_text(STORYBOARD, encoding="utf-8")
    os.environ["REELFLOW_POLL_INTERVAL"] = "1"
    done: dict[str, Any] = {}

    def run() -> None:
        done["state"] = produce_video(storyboard=str(board), approval="manual", profile="previz",
                                      exports=[ExportSpec(captions="soft")], return_state=True)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    seen: dict[str, Any] = {}
    run_id = seen["run_id"] = wait_for_pending("storyboard-1", 300, project="sound-film")["id"]
    approve_run(run_id, reviewer="张导")
    wait_for_pending("images-1", 300, project="sound-film")
    approve_run(run_id, reviewer="张导")
    wait_for_pending("clips-1", 300, project="sound-film")
    seen["clips-1"] = _gate_text(run_id, "clips-1")
    seen["form"] = _form_schema(run_id, "clips-1")
    store = ArtifactStore(s3_settings.with_bucket("film"))
    seen["before"] = {shot: store.lineage(key).extra["speech"]["duration"] for shot, key in
                      _line_keys(seen["clips-1"], store).items()}  # fmt: skip
    seen["refused"] = _refused_retakes(run_id, film_env)  # bad answers: the run keeps waiting
    seen["long"] = _cli_approve(run_id, film_env, "--retake", f"b={LONG_LINE}")
    wait_until("the gate asking again", lambda: _paused_key(run_id) == "clips-1-retry1", 120)
    seen["clips-1-retry1"] = _gate_text(run_id, "clips-1-retry1")
    approve_run(run_id, speeds={"a": 1.4}, voices={"b": "yue"}, reviewer="张导")
    wait_for_pending("clips-2", 300, project="sound-film")
    seen["clips-2"] = _gate_text(run_id, "clips-2")
    approve_run(run_id, reviewer="张导")
    thread.join(timeout=300)
    state = done["state"]
    assert state.is_completed(), state.message
    return folder, state, state.result(), seen


LONG_LINE = "城市醒了，街上的人越来越多，春天的风吹过每一条小巷。" * 2


def _gate_text(run_id: str, key: str) -> str:
    """What the gate shows at pause ``key``: its description (the review, and why the last
    answer was refused)."""
    import json
    from uuid import UUID

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        value = client.read_flow_run_input(UUID(run_id), f"paused-{key}-description")
    return json.loads(value) if value.startswith('"') else value


def _form_schema(run_id: str, key: str) -> dict[str, Any]:
    import json
    from uuid import UUID

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        value = client.read_flow_run_input(UUID(run_id), f"paused-{key}-schema")
    return json.loads(value) if isinstance(value, str) else value


def _line_keys(shown: str, store: ArtifactStore) -> dict[str, str]:
    """shot -> the line's object, read from the s3:// URIs the gate shows."""
    found = re.findall(r"\| \*\*(\w+)\*\* \| zh \| .*?`s3://[^/]+/([^`]+)`", shown)
    return {shot: key for shot, key in found}


def _paused_key(run_id: str) -> str:
    from uuid import UUID

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(run_id)).state
    return (state.state_details.pause_key or "") if state and state.is_paused() else ""


def _cli_approve(run_id: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`reelflow approve` as installed (its own process)."""
    import os
    import sys

    return subprocess.run([sys.executable, "-m", "cli", "approve", run_id, *args],
                          cwd=Path(__file__).resolve().parents[1], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def _refused_retakes(run_id: str, env: dict[str, str]) -> list[tuple[str, str]]:
    """The table of bad re-takes (tests/test_approvals.py), each given to `reelflow approve`
    (its one-line refusal) and, as the UI's form sends it, to the Prefect server (which refuses
    it against the form's schema): (message expected, line printed) per answer."""
    import contextlib
    import io
    from uuid import UUID

    from prefect.flow_runs import resume_flow_run

    from cli.main import main
    from tests.test_approvals import CLIPS_BAD_ANSWERS

    out = []
    first = _cli_approve(run_id, env, *CLIPS_BAD_ANSWERS[0][0])
    assert first.returncode == 2, first.stderr
    out.append((CLIPS_BAD_ANSWERS[0][2], first.stderr.strip()))
    for args, ui, message in CLIPS_BAD_ANSWERS:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main(["approve", run_id, *args]) == 2, args
        out.append((message, err.getvalue().strip()))
        with pytest.raises(RuntimeError, match="Reason"):
            resume_flow_run(UUID(run_id), run_input=ui)
        assert _paused_key(run_id) == "clips-1"
    return out


def test_captions_start_where_each_sentence_is_spoken_and_music_ducks(
    voiced: Any, s3_settings: S3Settings, tmp_path: Path
) -> None:
    _, _, result, _ = voiced
    store = ArtifactStore(s3_settings.with_bucket("film"))
    film = store.get_file(result.film_key, tmp_path / "film.mp4")
    samples, rate = film_audio(film, tmp_path / "film.wav")
    onsets = speech_onsets(samples, rate)
    cues = srt_starts(film, tmp_path)
    assert [text for _, text in cues] == ["雪山很静。", "城市醒了。", "春天来了。"]
    assert len(onsets) == 3, onsets
    for onset, (start, text) in zip(onsets, cues, strict=True):
        assert abs(onset - start) <= 1 / FPS, (text, onset, start)
    master = store.lineage(result.master_key)
    mix_key = master.parents[1]
    assert store.lineage(mix_key).kind == "mix"
    voice = master.spec["voice"]
    end_a = voice[0]["start"] + voice[0]["duration"]
    drop = music_drop(samples, rate, [(v["start"], v["start"] + v["duration"]) for v in voice],
                      (end_a + 0.25, 2.5 - 0.25))  # fmt: skip
    assert drop >= 6.0, drop


def test_changing_one_line_respeaks_only_it_and_remixes(
    voiced: Any, s3_settings: S3Settings, tmp_path: Path
) -> None:
    from flows.produce_video import produce_video

    folder, first, result, _ = voiced
    board = folder / "board.yaml"
    board.write_text(STORYBOARD.replace("雪山很静。", "雪山醒了。"), encoding="utf-8")
    state = produce_video(storyboard=str(board), approval="auto", profile="previz",
                          exports=[ExportSpec(captions="soft")], return_state=True)  # fmt: skip
    assert state.is_completed(), state.message
    states = task_states(state.state_details.flow_run_id)
    assert states["speech-a"] == ["Completed"]
    assert states["speech-b"] == ["Cached"]
    assert states["assemble-film"] == ["Cached"]  # the picture is untouched
    assert all(s == ["Cached"] for name, s in states.items() if name.startswith("clip-")), states
    assert states["master-with-music"] == ["Completed"]
    again = state.result()
    store = ArtifactStore(s3_settings.with_bucket("film"))
    edit_key = store.lineage(result.master_key).parents[0]
    assert store.lineage(again.master_key).parents[0] == edit_key  # the same picture
    assert again.master_key != result.master_key
    # the version is joined from the edit's own parts (soft captions, the film's framing):
    # no picture part was encoded for the new line
    assert store.lineage(again.film_key).extra["encoded"] == []
    cues = srt_starts(store.get_file(again.film_key, tmp_path / "film.mp4"), tmp_path)
    assert cues[0][1] == "雪山醒了。"


def test_each_line_is_heard_and_retaken_at_the_clips_gate_without_touching_the_picture(
    voiced: Any, s3_settings: S3Settings, tmp_path: Path
) -> None:
    """The clips gate lists each line (a link to hear it, its s3:// object, text, length) and
    its form each line's text, voice and speed. Through `reelflow approve`: bad re-takes are
    refused in one line before the run resumes; one longer than its shot is refused by the run
    (line_too_long: refuse) and the gate asks again saying why; a faster a and b in another
    voice are spoken again alone, the gate comes back with them, and the film is mixed from
    them while round 2 finds every clip Cached; the manifest keeps both re-takes. (That the
    edit is the picture of a run without re-takes: test_changing_one_line... below.)"""
    folder, state, result, seen = voiced
    shown = seen["clips-1"]
    assert "## Voice-over" in shown and "雪山很静。" in shown and "城市醒了。春天来了。" in shown
    assert set(seen["before"]) == {"a", "b"}
    for shot, duration in seen["before"].items():
        assert f"| **{shot}** | zh | [listen](http" in shown and f"{duration:.2f} s" in shown
    line_b = seen["form"]["definitions"]["Line_b_zh"]["properties"]
    assert line_b["text"]["default"] == "城市醒了。春天来了。"
    assert line_b["voice"]["default"] == "cmn" and line_b["speed"]["maximum"] == 2.0
    for message, printed in seen["refused"]:
        assert len(printed.splitlines()) == 1 and message in printed, (message, printed)
    assert seen["long"].returncode == 0, seen["long"].stderr  # it fits the form: the run decides
    assert ("**The last answer was invalid:** re-take of b (zh): shot b: its zh voice-over lasts"
            in seen["clips-1-retry1"]) and "longer than the shot (2.5 s)" in seen["clips-1-retry1"]
    assert seen["clips-2"].count("re-taken in round 1; replaced:") == 2
    assert "cmn · 1.4x" in seen["clips-2"] and "yue · 1x" in seen["clips-2"]

    states = task_states(state.state_details.flow_run_id)
    assert len(states["speech-a"]) == 2 and states["speech-a"][-1] == "Completed"
    assert len(states["speech-b"]) == 3 and states["speech-b"][1:] == ["Completed"] * 2
    clip_states = [s for name, s in states.items() if name.startswith("clip-")]
    assert clip_states and all(len(s) == 2 and s[1] == "Cached" for s in clip_states), states
    assert len(states["assemble-film"]) == 1  # the picture is made once, after the gate
    store = ArtifactStore(s3_settings.with_bucket("film"))
    manifest = store.get_json(result.manifest_key)
    retakes = {r["shot"]: r for r in manifest["retakes"]}
    assert set(retakes) == {"a", "b"} and {r["round"] for r in retakes.values()} == {1}
    assert (retakes["a"]["speed"], retakes["b"]["voice"]) == (1.4, "yue")
    assert retakes["a"]["reviewer"] == "张导"
    mixed = {v["shot"]: v for v in store.lineage(result.master_key).spec["voice"]}
    assert {s: v["key"] for s, v in mixed.items()} == {s: r["key"] for s, r in retakes.items()}
    assert {r["replaces"] for r in retakes.values()}.isdisjoint(r["key"] for r in retakes.values())
    assert mixed["a"]["duration"] < seen["before"]["a"] / 1.2  # spoken faster
    assert store.lineage(mixed["b"]["key"]).spec["voice"] == "yue"
    for shot in ("a", "b"):  # the new takes are speech, not silence
        wav = store.get_file(mixed[shot]["key"], tmp_path / f"{shot}.wav")
        samples, _ = soundfile.read(str(wav), dtype="float32")
        assert np.sqrt(np.mean(samples**2)) > 0.02 and np.abs(samples).max() > 0.1


@pytest.mark.slow
def test_a_retake_longer_than_its_shot_under_extend_lengthens_the_shot_and_remakes_its_clip(
    film_env: dict[str, str], s3_settings: S3Settings, tmp_path: Path
) -> None:
    """`sound.line_too_long: extend`: a re-taken line longer than its shot is taken, not
    refused; the gate comes back with it, that shot's clip is made again at the line's length
    (the other comes back Cached) and the delivered film is longer by as much."""
    import threading

    from flows.produce_video import produce_video
    from flows.reviewer import approve_run
    from reelflow.media.probe import probe
    from reelflow.sound.lines import HOLD_TAIL
    from tests.support.waiting import wait_for_pending

    tone(tmp_path / "tone.wav")
    board = tmp_path / "board.yaml"
    board.write_text(STORYBOARD.replace("project: sound-film", "project: sound-extend")
                     + "sound: {line_too_long: extend}\n", encoding="utf-8")
    done: dict[str, Any] = {}

    def run() -> None:
        done["state"] = produce_video(storyboard=str(board), approval="manual", profile="previz",
                                      exports=[ExportSpec(captions="soft")], return_state=True)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    run_id = wait_for_pending("storyboard-1", 300, project="sound-extend")["id"]
    for gate in ("images-1", "clips-1"):
        approve_run(run_id, reviewer="张导")
        wait_for_pending(gate, 300, project="sound-extend")
    approve_run(run_id, retakes={"b": LONG_LINE}, reviewer="张导")  # taken: the run extends b
    wait_for_pending("clips-2", 300, project="sound-extend")
    shown = _gate_text(run_id, "clips-2")
    assert "re-taken in round 1; replaced:" in shown and "**The last answer was invalid" \
        not in shown
    approve_run(run_id, reviewer="张导")
    thread.join(timeout=300)
    state = done["state"]
    assert state.is_completed(), state.message

    states = task_states(state.state_details.flow_run_id)
    assert states["clip-a"] == ["Completed", "Cached"], states
    assert states["clip-b"] == ["Completed", "Completed"], states  # made again, longer
    store = ArtifactStore(s3_settings.with_bucket("film"))
    result = state.result()
    retake = store.get_json(result.manifest_key)["retakes"][0]
    assert (retake["shot"], retake["text"]) == ("b", LONG_LINE) and retake["duration"] > 2.5
    held = retake["duration"] + HOLD_TAIL
    film = probe(store.get_file(result.film_key, tmp_path / "film.mp4"))
    assert film.duration == pytest.approx(2.5 + held, abs=2 / 24), (film.duration, held)


# -- a music bed generated from a prompt (tiny Stable Audio), changed: only the sound re-runs --

BED = "music: {{prompt: {prompt}, model: '@models/tiny-stable-audio', seed: 3, steps: 2}}"


def test_a_bed_generated_from_a_chinese_prompt_is_mixed_and_a_new_prompt_remixes_only_it(
    voiced: Any, s3_settings: S3Settings, tmp_path: Path
) -> None:
    """The file's music swapped for a bed from a Chinese prompt, then the prompt changed: each
    time the bed and the mix run again, and the speech, clips and edit come back Cached. The
    tiny model plays noise: the bed is finite, fills the film (crossfaded windows), is heard
    between the lines, and the film is loudness-normalised."""
    from flows.produce_video import produce_video

    folder, _, first, _ = voiced
    board = folder / "board.yaml"
    store = ArtifactStore(s3_settings.with_bucket("film"))
    edit_key = store.lineage(first.master_key).parents[0]
    beds = []
    for prompt in ("雪山上的钢琴，春风吹过", "城市的鼓点和霓虹"):
        music = BED.format(prompt=prompt)
        board.write_text(STORYBOARD.replace("music: {path: tone.wav, snap_cuts: false}", music),
                         encoding="utf-8")  # fmt: skip
        state = produce_video(storyboard=str(board), approval="auto", profile="previz",
                              exports=[ExportSpec(captions="soft")], return_state=True)  # fmt: skip
        assert state.is_completed(), state.message
        states = task_states(state.state_details.flow_run_id)
        assert states["music-bed"] == ["Completed"], states
        assert states["master-with-music"] == ["Completed"]
        assert states["speech-a"] == states["speech-b"] == ["Cached"]
        assert states["assemble-film"] == ["Cached"]  # the picture is untouched
        assert all(s == ["Cached"] for name, s in states.items() if name.startswith("clip-"))
        result = state.result()
        master = store.lineage(result.master_key)
        assert master.parents[0] == edit_key  # the same picture
        mix = store.lineage(master.parents[1])
        bed_key = mix.parents[-1]
        bed = store.lineage(bed_key)
        assert bed.kind == "music" and bed.extra["step"] == "music-bed"
        assert bed.extra["prompt"] == prompt and bed.spec["prompt"] == prompt
        assert bed.extra["model"] == "@models/tiny-stable-audio"
        assert len(bed.extra["model_sha256"]) == 64 and bed.spec["seed"] == 3
        assert len(bed.extra["bed"]["windows"]) == 3  # 5 s in windows of at most 2.048 s
        samples, rate = soundfile.read(str(store.get_file(bed_key, tmp_path / "bed.wav")))
        assert np.isfinite(samples).all() and abs(len(samples) / rate - 5.0) < 0.01
        assert np.sqrt(np.mean(samples**2)) > 0.05
        film = store.get_file(result.film_key, tmp_path / "film.mp4")
        assert abs(loudness(film) - (-14.0)) <= 1.0
        audio, rate = film_audio(film, tmp_path / "film.wav")
        voice = master.spec["voice"]
        gap = audio[int((voice[0]["start"] + voice[0]["duration"] + 0.25) * rate):
                    int((2.5 - 0.25) * rate)]  # fmt: skip
        assert 20 * np.log10(np.sqrt(np.mean(gap**2))) > -45  # the bed is heard between lines
        beds.append(bed_key)
    assert beds[0] != beds[1]
    # `reelflow lineage` of the delivered film reaches the bed: its prompt, seed and model
    from reelflow.render.lineage import lineage_tree, render_text

    text = render_text(lineage_tree(store, result.film_key))
    assert "城市的鼓点和霓虹" in text and "@models/tiny-stable-audio" in text, text
