"""The other speech sources: an OpenAI-compatible endpoint (a loopback server speaking the wire
format and answering real WAV audio), a recorded take per line, and a VITS model from a local
folder (a tiny one built from its config, saved and loaded back like a real checkpoint). Each
line is a step keyed by its text, voice, engine and engine version; one film uses all three
through the flow, and its captions start where each sentence is heard.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from pydantic import SecretStr

from reelflow.errors import ConfigError
from reelflow.render.jobs import ExportSpec, speech_jobs
from reelflow.sound.endpoint import EndpointEngine, SpeechEndpointConfig, SpeechRefused
from reelflow.sound.neural import make_tiny_vits, romanize
from reelflow.sound.recorded import take_speech
from reelflow.sound.sources import Take, speak_line
from reelflow.sound.speech import SpeechError
from reelflow.store.artifacts import ArtifactStore
from reelflow.store.keys import spec_hash
from reelflow.store.settings import S3Settings
from reelflow.storyboard import parse_storyboard
from tests.support.deployed import task_states
from tests.support.speech_server import TONE_SECONDS, SpeechReply, SpeechServer
from tests.test_sound import FPS, film_audio, speech_onsets, srt_starts

API_KEY = f"sk-speech-secret-{uuid.uuid4().hex}"
BLOCK = "tts-loopback"
TAKE_RATE = 44100


def take_file(path: Path, bursts: list[tuple[float, float]], seconds: float) -> Path:
    """A 'recorded' take: noise bursts (a voice's broadband energy) at the given spans."""
    rng = np.random.default_rng(7)
    audio = 0.002 * rng.standard_normal(int(seconds * TAKE_RATE))  # room tone
    for start, end in bursts:
        a, b = int(start * TAKE_RATE), int(end * TAKE_RATE)
        audio[a:b] += 0.4 * np.sin(2 * np.pi * 220 * np.arange(b - a) / TAKE_RATE)
    soundfile.write(str(path), audio, TAKE_RATE, subtype="PCM_16")
    return path


@pytest.fixture
def one_thread() -> Iterator[None]:
    """The tiny VITS runs in a blink on one thread; on a busy CI machine torch's thread pool
    makes it many times slower (restored afterwards)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def config(url: str, **extra: Any) -> SpeechEndpointConfig:
    return SpeechEndpointConfig(name=BLOCK, base_url=url, model="tts-mini",
                                api_key=SecretStr(API_KEY), **extra)  # fmt: skip


# -- the endpoint -----------------------------------------------------------------------------


@pytest.mark.integration
def test_endpoint_retries_429_and_5xx_then_speaks(tmp_path: Path) -> None:
    with SpeechServer(SpeechReply(429, {"Retry-After": "0.4"}), SpeechReply(503)) as server:
        engine = EndpointEngine(config(server.url, backoff=0.05))
        speech = speak_line("endpoint", "城市醒了。春天来了。", "nova", 1.25, tmp_path / "a.wav",
                            endpoint=engine.config)  # fmt: skip
    statuses = [r.status for r in server.requests]
    assert statuses == [429, 503, 200, 200], statuses
    assert server.requests[1].at - server.requests[0].at >= 0.4  # Retry-After was respected
    assert server.requests[2].json == {"model": "tts-mini", "input": "城市醒了。",
                                       "voice": "nova", "response_format": "wav", "speed": 1.25}
    assert server.requests[3].json["input"] == "春天来了。"
    assert {r.headers["Authorization"] for r in server.requests} == {f"Bearer {API_KEY}"}
    # each sentence is the tone the server sent, trimmed of its padding, 0.4 s at speed 1.25
    assert [s.text for s in speech.sentences] == ["城市醒了。", "春天来了。"]
    for sentence in speech.sentences:
        assert abs(sentence.end - sentence.start - TONE_SECONDS / 1.25) < 0.01, sentence
    samples, rate = soundfile.read(str(tmp_path / "a.wav"))
    assert rate == 24000 and abs(samples.size / rate - speech.duration) < 1e-6
    assert engine.version() == f"tts-mini at {server.url}"
    assert API_KEY not in repr(engine) and API_KEY not in repr(engine.config)


@pytest.mark.integration
def test_endpoint_refusing_the_key_is_one_line_naming_the_block(tmp_path: Path) -> None:
    with SpeechServer(SpeechReply(401, echo_key=True)) as server:
        with pytest.raises(SpeechRefused) as failure:
            speak_line("endpoint", "Hello.", "alloy", 1.0, tmp_path / "a.wav",
                       endpoint=config(server.url))  # fmt: skip
        assert len(server.requests) == 1  # never retried
        message = str(failure.value)
        assert "\n" not in message and f"speech endpoint block '{BLOCK}'" in message
        assert "401" in message and API_KEY not in message
        assert isinstance(failure.value, ConfigError)  # the step is not retried either
        # a server that keeps answering 503 gives up within the budget, in one line
        server.queue(*[SpeechReply(503, echo_key=True)] * 5)
        started = time.monotonic()
        with pytest.raises(SpeechError, match=r"answered 503 after \d attempts") as failure:
            speak_line("endpoint", "Hello.", "alloy", 1.0, tmp_path / "b.wav",
                       endpoint=config(server.url, backoff=0.1, retry_budget=0.5))  # fmt: skip
        assert time.monotonic() - started < 1.0 and API_KEY not in str(failure.value)


# -- recorded takes and the VITS folder (no servers) -------------------------------------------


def test_a_recorded_take_is_timed_by_its_pauses(tmp_path: Path) -> None:
    take = take_file(tmp_path / "take.wav", [(0.3, 1.0), (1.05, 1.3), (1.8, 2.4)], 3.0)
    speech = take_speech("春天来了。鸟儿在唱。", take, tmp_path / "line.wav")
    # the short 0.05 s stop inside the first sentence is bridged; the 0.5 s pause splits them
    assert [s.text for s in speech.sentences] == ["春天来了。", "鸟儿在唱。"]
    (first, second) = speech.sentences
    assert first.start == 0.0 and abs(first.end - 1.0) < 0.02  # trimmed: the voice starts at 0
    assert abs(second.start - 1.5) < 0.02 and abs(second.end - 2.1) < 0.02
    assert abs(speech.duration - 2.1) < 0.02 and speech.sample_rate == 48000
    # more sentences than voiced stretches: one cue for the whole line
    single = take_speech("One. Two. Three.", take, tmp_path / "one.wav")
    assert [(s.text, s.start) for s in single.sentences] == [("One. Two. Three.", 0.0)]
    assert abs(single.sentences[0].end - 2.1) < 0.02
    fast = take_speech("春天来了。鸟儿在唱。", take, tmp_path / "fast.wav", speed=1.5)
    assert abs(fast.duration - 2.1 / 1.5) < 0.03


def test_a_vits_folder_speaks_chinese_and_english(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    monkeypatch.setenv("REELFLOW_MODELS", str(tmp_path / "models"))
    folder = make_tiny_vits(tmp_path / "models" / "tts-tiny")
    assert {"config.json", "vocab.json", "model.safetensors"} <= {p.name for p in
                                                                  folder.iterdir()}  # fmt: skip
    assert romanize("城市醒了。春天！") == "cheng shi xing le. chun tian!"
    for text in ("城市醒了。春天来了。", "The city wakes. Spring is here."):
        out = tmp_path / f"{len(text)}.wav"
        speech = speak_line("vits", text, "0", 1.0, out, source="@models/tts-tiny")
        samples, rate = soundfile.read(str(out), dtype="int16")
        assert rate == speech.sample_rate == 16000 and samples.size / rate == speech.duration
        assert len(speech.sentences) == 2 and np.abs(samples).max() > 1000
        speak_line("vits", text, "0", 1.0, tmp_path / "again.wav", source="@models/tts-tiny")
        assert (tmp_path / "again.wav").read_bytes() == out.read_bytes()  # same line, same audio
    slow = speak_line("vits", "城市醒了。", "0", 0.5, tmp_path / "s.wav", source="@models/tts-tiny")
    fast = speak_line("vits", "城市醒了。", "0", 2.0, tmp_path / "f.wav", source="@models/tts-tiny")
    assert fast.duration < slow.duration * 0.6
    with pytest.raises(SpeechError, match="has 1 speaker"):
        speak_line("vits", "Hi.", "3", 1.0, tmp_path / "x.wav", source="@models/tts-tiny")


BOARD = """
title: 声音
project: speech-keys
width: 192
height: 108
sound: {engine: vits, model: "@models/tts-tiny", endpoint: tts-loopback}
shots:
  - {id: a, description: peaks, duration: 3, voiceover: {zh: 雪山很静。}}
  - {id: b, description: city, duration: 3, voiceover: {zh: 城市醒了。, engine: espeak}}
  - {id: c, description: river, duration: 3, voiceover: {zh: 河水流。, engine: endpoint}}
  - {id: d, description: birds, duration: 3,
     voiceover: {zh: 鸟儿在唱。, en: Birds sing., recording: {zh: take.wav}}}
"""


def test_each_line_is_keyed_by_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REELFLOW_MODELS", str(tmp_path / "models"))
    make_tiny_vits(tmp_path / "models" / "tts-tiny")
    board = parse_storyboard(BOARD)
    takes = {"d": Take(key="projects/speech-keys/inputs/0123456789abcdef.wav", sha256="ab" * 32)}
    jobs = {j.shot: j for j in speech_jobs(board, endpoint="tts-mini at http://x/v1", takes=takes)}
    assert {s: (j.engine, j.voice) for s, j in jobs.items()} == {
        "a": ("vits", "0"), "b": ("espeak", "cmn"), "c": ("endpoint", "alloy"),
        "d": ("recorded", "recorded")}
    assert jobs["d"].engine_version == "ab" * 32 and jobs["d"].source == takes["d"].key
    assert jobs["c"].endpoint == BLOCK and jobs["a"].engine_version.startswith("vits ")
    # an eSpeak line's key is what it was before the other sources existed
    b = jobs["b"]
    assert b.spec_hash() == spec_hash({k: v for k, v in b.model_dump(mode="json").items()
                                       if k not in ("source", "endpoint")})  # fmt: skip
    # the key follows the content, not where it lies or which block names the endpoint
    moved = Take(key="projects/speech-keys/inputs/fedcba9876543210.wav", sha256="ab" * 32)
    other = speech_jobs(board, endpoint="tts-mini at http://x/v1", takes={"d": moved})
    assert other[3].output_key() == jobs["d"].output_key()
    retaken = speech_jobs(board, endpoint="tts-mini at http://x/v1",
                          takes={"d": Take(key=moved.key, sha256="cd" * 32)})  # fmt: skip
    assert retaken[3].output_key() != jobs["d"].output_key()
    renamed = speech_jobs(board, endpoint="tts-hd at http://x/v1", takes=takes)
    assert renamed[2].output_key() != jobs["c"].output_key()  # another model: spoken again
    assert [j.output_key() for j in renamed[:2]] == [jobs["a"].output_key(),
                                                     jobs["b"].output_key()]  # fmt: skip
    with pytest.raises(SpeechError, match="shot c: the speech endpoint is not resolved"):
        speech_jobs(board, takes=takes)


BILINGUAL = """
title: 两种声音
project: speech-folders
width: 192
height: 108
sound: {engine: vits, model: {zh: "@models/tts-zh", en: "@models/tts-en"}}
shots:
  - {id: a, description: peaks, duration: 3, voiceover: {zh: 雪山很静。, en: The peaks are quiet.}}
  - {id: b, description: city, duration: 3, voiceover: {zh: 城市醒了。春天来了。,
                                                       en: The city wakes. Spring is here.}}
"""


def test_each_language_speaks_with_its_own_vits_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    one_thread: None,
) -> None:
    """`sound.model: {zh: ..., en: ...}`: each line is spoken by its language's folder, whose
    hash is in that line's key alone (retraining the English model leaves the Chinese lines);
    the single-folder form still speaks both; validate names a missing folder or language."""
    from cli.main import main
    from reelflow.sound.check import check_lines
    from reelflow.sound.neural import folder_hash

    models = tmp_path / "models"
    monkeypatch.setenv("REELFLOW_MODELS", str(models))
    zh, en = make_tiny_vits(models / "tts-zh", seed=1), make_tiny_vits(models / "tts-en", seed=2)
    board = parse_storyboard(BILINGUAL)
    jobs = {lang: {j.shot: j for j in speech_jobs(board, lang)} for lang in ("zh", "en")}
    assert {j.source for j in jobs["zh"].values()} == {"@models/tts-zh"}
    assert {j.source for j in jobs["en"].values()} == {"@models/tts-en"}
    assert folder_hash(zh)[:16] in jobs["zh"]["a"].engine_version
    assert folder_hash(en)[:16] in jobs["en"]["a"].engine_version
    for lang in ("zh", "en"):
        for job in jobs[lang].values():  # each line as the speech step speaks it
            out = tmp_path / f"{lang}-{job.shot}.wav"
            speech = speak_line(job.engine, job.text, job.voice, job.speed, out, source=job.source)
            samples, _ = soundfile.read(str(out), dtype="float32")
            rms = float(np.sqrt(np.mean(samples**2)))
            assert rms > 0.01 and len(speech.sentences) == job.text.count("。") + \
                job.text.count("."), (rms, speech.sentences)
    # the Chinese line spoken by the English folder is other audio: the folders are each used
    speak_line("vits", "雪山很静。", "0", 1.0, tmp_path / "other.wav", source="@models/tts-en")
    assert (tmp_path / "zh-a.wav").read_bytes() != (tmp_path / "other.wav").read_bytes()
    make_tiny_vits(models / "tts-en", seed=3)  # the English model retrained
    again = {lang: {j.shot: j.output_key() for j in speech_jobs(board, lang)} for lang in jobs}
    assert again["zh"] == {s: j.output_key() for s, j in jobs["zh"].items()}
    assert set(again["en"].values()).isdisjoint(j.output_key() for j in jobs["en"].values())
    one = parse_storyboard(BILINGUAL.replace(
        '{zh: "@models/tts-zh", en: "@models/tts-en"}', '"@models/tts-zh"'))
    assert {j.source for lang in ("zh", "en") for j in speech_jobs(one, lang)} == {
        "@models/tts-zh"}
    check_lines(board, languages=["zh", "en"])  # both folders there: nothing to refuse
    path = tmp_path / "board.yaml"
    for text, expected in (
        (BILINGUAL.replace("@models/tts-en", "@models/mms-en").replace(
            "engine: vits,", "engine: vits, language: en,"),
         r"board\.yaml: sound\.model\.en '@models/mms-en': no VITS model folder at .*mms-en"),
        (BILINGUAL.replace('zh: "@models/tts-zh", ', ""),
         r"board\.yaml:\d+ sound\.model: no zh folder, and the film speaks zh with the vits "
         r"engine \(sound\.model gives en\)"),
    ):
        path.write_text(text, encoding="utf-8")
        capsys.readouterr()
        assert main(["validate", str(path)]) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and re.search(expected, lines[0]), lines
    with pytest.raises(SpeechError, match=r"^sound\.model: no en folder for the vits engine's "
                       r"en lines \(it gives zh\)$"):  # fmt: skip
        speech_jobs(parse_storyboard(BILINGUAL.replace(', en: "@models/tts-en"', "")), "en")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("engine: vits,", "engine: piper,"), r"board\.yaml:\d+ sound\.engine: .*'espeak'"),
        (("recording: {zh: take.wav}", "recording: {zh: missing.wav}"),
         r"board\.yaml:1[2-5] shots\[3\]\.voiceover\.recording\.zh: 'missing\.wav': no such file"),
        (("model: \"@models/tts-tiny\", ", ""), r"board\.yaml:\d+ sound\.model: the vits speech "
         r"engine needs sound\.model"),
        ((", endpoint: tts-loopback", ""), r"sound\.endpoint: the endpoint speech engine needs"),
        (("@models/tts-tiny", "@models/nowhere"),
         r"board\.yaml: sound\.model '@models/nowhere': no VITS model folder at .*nowhere"),
    ],
    ids=["unknown-engine", "missing-take", "no-model", "no-endpoint", "missing-model-folder"],
)
def test_bad_speech_config_is_one_line_at_validate(
    edit: tuple[str, str], expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], one_thread: None,
) -> None:
    from cli.main import main

    monkeypatch.setenv("REELFLOW_MODELS", str(tmp_path / "models"))
    make_tiny_vits(tmp_path / "models" / "tts-tiny")
    take_file(tmp_path / "take.wav", [(0.1, 0.8)], 1.0)
    path = tmp_path / "board.yaml"
    path.write_text(BOARD, encoding="utf-8")
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    path.write_text(BOARD.replace(*edit), encoding="utf-8")
    assert main(["validate", str(path)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and re.search(expected, lines[0]), lines


# -- one film, three sources, through the flow -------------------------------------------------

FILM = """
title: 三种声音
project: speech-sources
width: 192
height: 108
fps: 24
style: {palette: ["#f5c518"]}
sound: {engine: endpoint, endpoint: tts-loopback, model: "@models/tts-tiny"}
shots:
  - {id: a, description: snowy peaks, duration: 2.0, voiceover: {zh: 雪山很静。城市醒了。}}
  - {id: b, description: the city, duration: 2.5,
     voiceover: {zh: 春天来了。鸟儿在唱。, recording: {zh: take.wav}}}
  - {id: c, description: a river, duration: 2.0, voiceover: {zh: 河水在流。, engine: vits}}
"""


@pytest.mark.flows
def test_one_film_speaks_from_endpoint_take_and_vits(
    film_env: dict[str, str], s3_settings: S3Settings, tmp_path: Path, one_thread: None
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    from blocks.speech_endpoint import SpeechEndpoint, load_speech_endpoint
    from flows.produce_video import produce_video
    from reelflow.render.jobs.resolve import models_dir

    make_tiny_vits(models_dir() / "tts-tiny")
    take = take_file(tmp_path / "take.wav", [(0.2, 0.9), (1.4, 2.0)], 2.3)
    board = tmp_path / "board.yaml"
    board.write_text(FILM, encoding="utf-8")
    started = datetime.now(UTC) - timedelta(seconds=1)  # S3 times are whole seconds
    with SpeechServer(SpeechReply(429, {"Retry-After": "0.3"})) as server:
        SpeechEndpoint(base_url=server.url, model="tts-mini", api_key=SecretStr(API_KEY),
                       timeout=10).save(BLOCK, overwrite=True)  # fmt: skip
        state = produce_video(storyboard=str(board), approval="auto", profile="previz",
                              exports=[ExportSpec(captions="soft")], return_state=True)
    assert state.is_completed(), state.message
    assert [r.status for r in server.requests] == [429, 200, 200]  # the 429 was retried
    assert [r.json["input"] for r in server.requests[1:]] == ["雪山很静。", "城市醒了。"]
    run_id = state.state_details.flow_run_id
    states = task_states(run_id)
    assert {s: states[f"speech-{s}"] for s in "abc"} == {s: ["Completed"] for s in "abc"}
    result = state.result()
    store = ArtifactStore(s3_settings.with_bucket("film"))
    voice = store.lineage(store.lineage(result.master_key).parents[1]).parents  # the mix's
    lines = {store.lineage(k).spec["shot"]: store.lineage(k) for k in voice}
    assert {s: lin.spec["engine"] for s, lin in lines.items()} == {
        "a": "endpoint", "b": "recorded", "c": "vits"}
    assert lines["a"].spec["engine_version"] == f"tts-mini at {server.url}"
    assert lines["b"].spec["engine_version"] == hashlib.sha256(take.read_bytes()).hexdigest()
    assert lines["b"].parents and store.lineage(lines["b"].parents[0]).kind == "input"

    # captions start where each sentence is heard, for every source
    film = store.get_file(result.film_key, tmp_path / "film.mp4")
    samples, rate = film_audio(film, tmp_path / "film.wav")
    cues = srt_starts(film, tmp_path)
    assert [t for _, t in cues] == ["雪山很静。", "城市醒了。", "春天来了。", "鸟儿在唱。",
                                    "河水在流。"]  # fmt: skip
    onsets = speech_onsets(samples, rate)
    assert len(onsets) == len(cues), (onsets, cues)
    for onset, (start, text) in zip(onsets, cues, strict=True):
        assert abs(onset - start) <= 1 / FPS, (text, onset, start)
    assert abs(cues[1][0] - cues[0][0] - (TONE_SECONDS + 0.3)) < 1 / FPS  # sentence pause

    # a storyboard naming a block that is not there: one line naming the field and the block
    with pytest.raises(ConfigError, match=r"^sound\.endpoint: no speech endpoint block named "
                       r"'nowhere' \(type reelflow-speech-endpoint\)"):  # fmt: skip
        load_speech_endpoint("nowhere")

    # the key is nowhere but the Authorization header
    assert {r.headers["Authorization"] for r in server.requests} == {f"Bearer {API_KEY}"}
    secret, raw, scanned = API_KEY.encode(), store.client, 0
    for obj in raw.list_objects("film", recursive=True):
        if obj.last_modified and obj.last_modified >= started:
            assert secret not in raw.get_object("film", obj.object_name).read(), obj.object_name
            scanned += 1
    assert scanned >= 10
    with get_client(sync_client=True) as client:
        for log in client.read_logs(log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[run_id]))):
            assert API_KEY not in log.message
        for artifact in client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))):
            assert API_KEY not in json.dumps(artifact.data) + (artifact.description or "")
        assert API_KEY not in json.dumps(client.read_flow_run(run_id).parameters)
        for task_run in client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))):
            assert API_KEY not in json.dumps(task_run.task_inputs, default=str)
