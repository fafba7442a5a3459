"""The write-script flow on a real Prefect server, a real S3 server and a loopback chat endpoint.

Brief -> three LLM versions with calibration reports and emotion curves in the bucket -> the
director picks version 1 and sends notes (after one unusable answer) -> a revised, recalibrated
version -> approval; every round is in rounds.json, and the API key is nowhere: not in the bucket,
the artifacts, the logs or the run's parameters. Also: a malformed answer is repaired, a 429 waits
for its Retry-After, an answer beyond repair fails the run with one clear line, and with no
endpoint the template planner and auto-approval give a storyboard produce-video can read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml
from pydantic import SecretStr

from reelflow.script.calibration import ACTS, CalibrationReport
from reelflow.script.drafts import Brief, plan_acts, template_plan
from reelflow.script.rounds import ScriptRounds, rounds_key
from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings
from reelflow.storyboard import Storyboard, load_storyboard
from tests.support.chat_server import ChatServer, Reply, Request
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
API_KEY = f"sk-reelflow-secret-{uuid.uuid4().hex}"
ENDPOINT = "script-doctor"
BUCKET = "scripts"
SHOTS = 5
CURVE = [2, 3, 5, 8, 4]
CAMERAS = [("extreme-wide", "high", "push-in"), ("wide", "eye-level", "static"),
           ("medium", "low", "tracking"), ("close-up", "low", "push-in"),
           ("wide", "high", "pull-out")]


def make_brief(project: str) -> Brief:
    return Brief(
        title="Last Light", project=project,
        subjects=["mei: young woman with short black hair in a long red wool coat"],
        scenes=["a snowed-in railway station at night", "a spring market at dawn"],
        mood="bittersweet", shots=SHOTS, total_seconds=15.0,
    )


# -- the loopback model ----------------------------------------------------------------------


def _draft(k: int) -> dict[str, Any]:
    acts = plan_acts(SHOTS)
    return {
        "direction": f"direction {k}",
        "title": f"Last Light, version {k}",
        "logline": f"Mei waits for a train that never comes (take {k}).",
        "characters": [{"name": "mei", "description": "young woman, short black hair, red coat"}],
        "shots": [
            {"id": f"s{i + 1:02d}-v{k}", "act": acts[i],
             "description": f"mei on the platform, beat {i + 1} of version {k}",
             "scene": "station", "duration": 2.0 + i * 0.5,
             "camera": dict(zip(("size", "angle", "movement"), CAMERAS[i], strict=True)),
             "characters": ["mei"]}
            for i in range(SHOTS)
        ],
    }


def _calibration(request: Request) -> dict[str, Any]:
    story = json.loads(request.last_user)
    ids = [s["id"] for s in story["shots"]]
    acts = plan_acts(len(ids))
    return {
        "acts": {act: [i for i, a in zip(ids, acts, strict=True) if a == act] for act in ACTS},
        "logic_breaks": [],
        "characters": [{"name": "mei", "consistent": True, "notes": ""}],
        "emotion_curve": [{"shot": i, "intensity": v, "note": ""}
                          for i, v in zip(ids, CURVE, strict=True)],
        "problems": [],
        "summary": f"{story['title']}: the turn lands.",
    }


def _revision(request: Request) -> dict[str, Any]:
    text = request.last_user
    story = json.loads(text.split("Storyboard:\n", 1)[1].split("\n\nDirector's notes:", 1)[0])
    acts = plan_acts(len(story["shots"]))
    for shot, act in zip(story["shots"], acts, strict=True):
        shot["act"] = act
        camera = shot.get("camera", {})
        shot["camera"] = {"size": camera.get("size", "wide"),
                          "angle": camera.get("angle", "eye-level"),
                          "movement": camera.get("movement", "static")}
    story["shots"][3]["description"] = "close on mei as the train doors close without her"
    story["shots"][3]["duration"] = 4.0
    return {"summary": "The turn is longer.", "title": story["title"],
            "logline": story["logline"], "characters": story["characters"],
            "shots": story["shots"]}


def responder(request: Request) -> Reply:
    name = request.schema_name
    if name == "DraftSet":
        return Reply({"versions": [_draft(k) for k in range(3)]},
                     prompt_tokens=500, completion_tokens=1500)
    if name == "LLMCalibration":
        return Reply(_calibration(request), prompt_tokens=300, completion_tokens=200)
    if name == "RevisedStory":
        return Reply(_revision(request), prompt_tokens=400, completion_tokens=600)
    return Reply(status=400, body={"error": {"message": f"unexpected schema {name}"}})


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chat() -> Iterator[ChatServer]:
    with ChatServer(responder=responder) as server:
        yield server


@pytest.fixture(scope="module")
def script_env(prefect_server: str, s3_settings: S3Settings,
               chat: ChatServer) -> Iterator[dict[str, str]]:
    """S3 and Prefect for the flow (in this process and in subprocesses), the results block, and
    an LLMEndpoint block pointing at the loopback server with a recognisable key."""
    from blocks.llm_endpoint import LLMEndpoint
    from blocks.minio_storage import MinIOStorage
    from tasks.common import RESULTS_BLOCK, get_store

    settings = s3_settings.with_bucket(BUCKET)
    env = {
        "REELFLOW_S3_ENDPOINT": settings.endpoint,
        "REELFLOW_S3_ACCESS_KEY": settings.access_key,
        "REELFLOW_S3_SECRET_KEY": settings.secret_key.get_secret_value(),
        "REELFLOW_S3_BUCKET": settings.bucket,
        "REELFLOW_POLL_INTERVAL": "1",
        "PREFECT_API_URL": prefect_server,
    }
    saved = {k: os.environ.get(k) for k in env if k != "PREFECT_API_URL"}
    os.environ.update({k: v for k, v in env.items() if k != "PREFECT_API_URL"})
    get_store.cache_clear()
    block = MinIOStorage.from_settings(settings.with_bucket("script-results"))
    block.to_store().ensure_bucket()
    block.save(RESULTS_BLOCK.split("/", 1)[1], overwrite=True)
    LLMEndpoint(base_url=chat.url, model="script-editor", api_key=SecretStr(API_KEY),
                timeout=30).save(ENDPOINT, overwrite=True)
    yield env
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    get_store.cache_clear()


@pytest.fixture
def bucket(script_env: dict[str, str], s3_settings: S3Settings) -> ArtifactStore:
    return ArtifactStore(s3_settings.with_bucket(BUCKET))


def _rounds(store: ArtifactStore, project: str, run_id: str) -> ScriptRounds:
    return store.get_json(rounds_key(project, run_id), ScriptRounds)


def _task_states(flow_run_id: UUID) -> dict[str, list[str]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    states: dict[str, list[str]] = {}
    for run in runs:
        states.setdefault(run.name.rsplit("-", 1)[0], []).append(
            run.state.name if run.state else "?")
    return states


def _wait_for_gate(flow_run_id: UUID, key: str, process: subprocess.Popen[str],
                   timeout: float = 120) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        def paused_at_key() -> bool:
            state = client.read_flow_run(flow_run_id).state
            if state and state.is_paused() and state.state_details.pause_key == key:
                return True
            if process.poll() is not None:
                raise AssertionError(f"the flow exited before {key}: {process.stdout.read()}")
            return False

        wait_until(f"run {flow_run_id} to reach {key}", paused_at_key, timeout)


def _find_run(project: str, process: subprocess.Popen[str], timeout: float = 120) -> UUID:
    """The write-script run the subprocess started: paused, with our brief's project."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterStateName

    with get_client(sync_client=True) as client:
        def ours() -> UUID | None:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                state=dict(name=FlowRunFilterStateName(any_=["Paused"]))))
            for run in runs:
                brief = run.parameters.get("brief") or {}
                if isinstance(brief, dict) and brief.get("project") == project:
                    return run.id
            if process.poll() is not None:
                raise AssertionError(f"the flow exited early: {process.stdout.read()}")
            return None

        return wait_until("the write-script run to pause", ours, timeout)


# -- manual: two rounds through the loopback model --------------------------------------------


def test_manual_rounds_with_notes_and_no_key_anywhere(
    script_env: dict[str, str], chat: ChatServer, bucket: ArtifactStore,
    s3_settings: S3Settings, tmp_path: Path,
) -> None:
    """Through the CLI (`reelflow script`, then the gate answered as `reelflow approve` does)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    from flows.reviewer import approve_run

    brief = make_brief("last-light-manual")
    brief_file = tmp_path / "brief.yaml"
    brief_file.write_text(yaml.safe_dump(brief.model_dump(mode="json")), encoding="utf-8")
    env = {**os.environ, **script_env}
    first_request = len(chat.requests)
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "script", str(brief_file), "--llm", ENDPOINT],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        run_id = _find_run("last-light-manual", process)
        _wait_for_gate(run_id, "storyboard-1", process)

        # round 1 is in the bucket before anyone answers: three versions, reports and curves
        record = _rounds(bucket, brief.project or "", str(run_id))
        (draft_round,) = record.rounds
        assert draft_round.kind == "drafts" and len(draft_round.versions) == 3
        for k, version in enumerate(draft_round.versions):
            assert version.storyboard_key.startswith("projects/last-light-manual/storyboards/")
            board = bucket.get_json(version.storyboard_key, Storyboard)
            assert board.title == f"Last Light, version {k}"
            assert board.duration == pytest.approx(15.0)
            report = bucket.get_json(version.calibration_key, CalibrationReport)
            assert report.source == "llm+rules" and report.intensities == CURVE
            assert report.storyboard_hash == board.content_hash()
            assert version.calibration_key.startswith(version.storyboard_key[:-len(".json")])
            png = bucket.get_bytes(version.curve_key)
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
        assert draft_round.usage.requests == 4
        assert draft_round.usage.prompt_tokens == 500 + 3 * 300

        # an answer that does not fit the gate is refused before the run resumes
        from reelflow.render.decisions import AnswerError

        with pytest.raises(AnswerError, match="--version 7: out of range"):
            approve_run(str(run_id), version=7, notes="x", reviewer="director")
        _wait_for_gate(run_id, "storyboard-1", process)
        notes = "Make the turn longer: hold on mei as the doors close."
        assert approve_run(str(run_id), version=1, notes=notes, reviewer="director") \
            == "storyboard"
        _wait_for_gate(run_id, "storyboard-2", process)
        # round 2 offers the revision and every earlier version: 1 + 3 (0..3), not 4 and more
        with pytest.raises(AnswerError, match=r"--version 4: out of range.*\(0\.\.3\)"):
            approve_run(str(run_id), version=4, reviewer="director")
        assert approve_run(str(run_id), reviewer="director") == "storyboard"
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    uri = output.split("storyboard: ", 1)[1].split()[0]

    record = _rounds(bucket, brief.project or "", str(run_id))
    first, second = record.rounds
    assert (first.chosen, first.notes, first.reviewer, first.approved) == (1, notes, "director",
                                                                            False)
    assert first.chosen_key == first.versions[1].storyboard_key
    assert first.decided_at is not None and first.policy == "manual"
    assert second.kind == "revision" and second.revised_from == first.versions[1].storyboard_key
    assert second.storyboard_keys[1:] == first.storyboard_keys  # earlier ones: choosable
    assert output.count("waiting at the storyboard gate") == 2  # once per round
    assert second.revision_summary == "The turn is longer."
    assert (second.chosen, second.approved, second.reviewer) == (0, True, "director")
    assert second.usage.requests == 2 and second.usage.completion_tokens == 600 + 200
    assert record.approved_key == second.versions[0].storyboard_key
    assert uri == f"s3://{BUCKET}/{record.approved_key}"
    assert record.usage.requests == 6
    assert record.endpoint is not None and record.endpoint.model == "script-editor"

    revised = bucket.get_json(record.approved_key, Storyboard)
    chosen = bucket.get_json(first.versions[1].storyboard_key, Storyboard)
    assert revised.shots[3].description == "close on mei as the train doors close without her"
    assert [s.id for s in revised.shots] == [s.id for s in chosen.shots]
    assert bucket.lineage(record.approved_key).parents == [first.versions[1].storyboard_key]
    assert bucket.get_json(second.versions[0].calibration_key, CalibrationReport) \
        .storyboard_hash == revised.content_hash()

    # produce-video reads the approved URI as it is
    from flows.stages.run import read_storyboard

    assert read_storyboard(uri)[0] == revised
    # ...and the creator gets it as YAML beside the brief, to edit and render
    beside = tmp_path / "brief.storyboard.yaml"
    assert f"editable:   {beside}" in output
    assert load_storyboard(beside) == revised

    # what the model was asked, and with which key: the key did travel, in the header only
    requests = chat.requests[first_request:]
    schemas = [r.schema_name for r in requests]
    assert schemas == ["DraftSet", *["LLMCalibration"] * 3, "RevisedStory", "LLMCalibration"]
    assert "version 1" in requests[4].last_user and "doors close" in requests[4].last_user
    assert {r.headers.get("Authorization") for r in requests} == {f"Bearer {API_KEY}"}

    # ...and nowhere else: bucket objects (sidecars and Prefect results too), artifacts, logs
    secret = API_KEY.encode()
    raw = ArtifactStore(s3_settings).client
    scanned = 0
    for name in (BUCKET, "script-results"):  # `reelflow script` keeps results in BUCKET
        for obj in raw.list_objects(name, recursive=True):
            data = raw.get_object(name, obj.object_name).read()
            assert secret not in data, f"API key in s3://{name}/{obj.object_name}"
            scanned += 1
    assert scanned >= 14 + 5  # 4 storyboards, 4 reports, 4 curves, rounds, sidecars, results
    assert API_KEY not in output
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
        assert len([a for a in artifacts if a.key == "script-review"]) == 2
        for artifact in artifacts:
            assert API_KEY not in json.dumps(artifact.data) + (artifact.description or "")
        review = next(a for a in artifacts if "round 1" in str(a.data))
        assert str(review.data).count("X-Amz-Signature") >= 6  # curves + storyboards presigned
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        assert any("approved version 0 of round 2 by director" in log.message for log in logs)
        for log in logs:
            assert API_KEY not in log.message
        flow_run = client.read_flow_run(run_id)
        assert API_KEY not in json.dumps(flow_run.parameters)
        assert flow_run.parameters["llm_endpoint"] == ENDPOINT


def test_offline_notes_are_refused_at_the_gate_in_one_line(
    script_env: dict[str, str], bucket: ArtifactStore, tmp_path: Path,
) -> None:
    """With no LLM (the template planner) notes cannot be acted on: `reelflow approve --notes`
    is refused in one line and the run keeps waiting at the same gate (nothing is dropped
    after a "resumed"); each gate message is printed once."""
    from flows.reviewer import approve_run
    from reelflow.render.decisions import NO_REVISIONS, AnswerError

    brief = {**make_brief("last-light-offline-gate").model_dump(mode="json"), "title": "Off"}
    brief_file = tmp_path / "brief.yaml"
    brief_file.write_text(yaml.safe_dump(brief), encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "script", str(brief_file), "--versions", "2"],
        cwd=ROOT, env={**os.environ, **script_env}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )
    try:
        run_id = _find_run("last-light-offline-gate", process)
        _wait_for_gate(run_id, "storyboard-1", process)
        with pytest.raises(AnswerError) as refused:
            approve_run(str(run_id), version=1, notes="warmer light", reviewer="director")
        assert str(refused.value) == f"--notes: {NO_REVISIONS}"
        _wait_for_gate(run_id, "storyboard-1", process)  # still waiting, at the same gate
        assert approve_run(str(run_id), version=1, reviewer="director") == "storyboard"
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    record = _rounds(bucket, "last-light-offline-gate", str(run_id))
    (only,) = record.rounds
    assert (only.chosen, only.notes, only.approved) == (1, "", True)
    assert output.count("waiting at the storyboard gate") == 1
    assert "notes recorded, storyboard unchanged" not in output


# -- the model misbehaves ----------------------------------------------------------------------


def test_rate_limit_waits_for_retry_after_and_malformed_answer_is_repaired(
    script_env: dict[str, str], chat: ChatServer, bucket: ArtifactStore
) -> None:
    from flows.write_script import write_script

    brief = make_brief("last-light-flaky")
    first_request = len(chat.requests)
    chat.queue(Reply(status=429, headers={"Retry-After": "2"}),
               Reply(content="Sure! Here are three versions: {\"versions\": [", prompt_tokens=50,
                     completion_tokens=9))
    state = write_script(brief, versions=3, approval="auto", llm_endpoint=ENDPOINT,
                         return_state=True)
    assert state.is_completed(), state.message
    requests = chat.requests[first_request:]
    limited, broken, repaired = requests[:3]
    # the client's own first backoff is 1 s: a gap of 2 s is the server's Retry-After
    assert repaired.schema_name == broken.schema_name == limited.schema_name == "DraftSet"
    assert broken.at - limited.at >= 1.9
    assert "Your answer not valid JSON" in repaired.last_user
    assert [r.schema_name for r in requests[3:]] == ["LLMCalibration"] * 3

    record = _rounds(bucket, "last-light-flaky", str(state.state_details.flow_run_id))
    (only,) = record.rounds
    assert (only.approved, only.chosen, only.reviewer, only.policy) == (True, 0, "auto", "auto")
    assert only.usage.requests == 5  # the 429 is not an answer; the broken one is paid for
    assert only.usage.prompt_tokens == 50 + 500 + 3 * 300
    assert state.result() == f"s3://{BUCKET}/{only.versions[0].storyboard_key}"


def test_answer_beyond_repair_fails_the_run_with_one_clear_line(
    script_env: dict[str, str], chat: ChatServer, bucket: ArtifactStore
) -> None:
    from flows.write_script import write_script

    chat.queue(*[Reply(content="I cannot write JSON today.") for _ in range(3)])
    state = write_script(make_brief("last-light-broken"), approval="auto",
                         llm_endpoint=ENDPOINT, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match=r"LLM gave no valid DraftSet after 3 attempts; last "
                                        r"answer not valid JSON") as failure:
        state.result()
    assert API_KEY not in str(failure.value)
    assert bucket.list("projects/last-light-broken/") == []


def test_cli_llm_failure_prints_no_traceback_only_the_line(
    script_env: dict[str, str], chat: ChatServer, tmp_path: Path
) -> None:
    """The console shows the one-line reason, not Prefect's task/flow tracebacks of it."""
    brief = tmp_path / "brief.yaml"
    brief.write_text(yaml.safe_dump(make_brief("last-light-cli").model_dump(mode="json")))
    chat.queue(*[Reply(content="I cannot write JSON today.") for _ in range(3)])
    done = subprocess.run(
        [sys.executable, "-m", "cli", "script", str(brief), "--llm", ENDPOINT,
         "--auto-approve"], cwd=ROOT, env={**os.environ, **script_env}, capture_output=True,
        text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    last = [line for line in done.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("reelflow: LLM gave no valid DraftSet after 3 attempts"), last
    assert API_KEY not in output


def test_missing_endpoint_block_is_named(script_env: dict[str, str]) -> None:
    from flows.write_script import write_script

    state = write_script(make_brief("last-light-nowhere"), approval="auto",
                         llm_endpoint="no-such-endpoint", return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match="no LLM endpoint block named 'no-such-endpoint'"):
        state.result()


# -- offline ----------------------------------------------------------------------------------


def test_offline_template_drafts_auto_approved_and_cached_on_rerun(
    script_env: dict[str, str], chat: ChatServer, bucket: ArtifactStore
) -> None:
    from flows.stages.run import read_storyboard
    from flows.write_script import write_script

    brief = {**make_brief("last-light-offline").model_dump(), "title": "Offline"}
    requests_before = len(chat.requests)
    state = write_script(brief, versions=3, approval="auto", return_state=True)
    assert state.is_completed(), state.message
    uri = state.result()
    expected = template_plan(Brief.model_validate(brief), "classic")
    board, _ = read_storyboard(uri)
    assert board == expected
    assert len(chat.requests) == requests_before

    run_id = state.state_details.flow_run_id
    record = _rounds(bucket, "last-light-offline", str(run_id))
    (only,) = record.rounds
    assert record.endpoint is None and record.usage.requests == 0
    assert len(only.versions) == 3 and only.approved and only.reviewer == "auto"
    titles = [bucket.get_json(v.storyboard_key, Storyboard).logline for v in only.versions]
    assert len(set(titles)) == 3  # three directions, not three copies
    for version in only.versions:
        assert bucket.get_json(version.calibration_key, CalibrationReport).source == "rules"
        assert bucket.get_bytes(version.curve_key)[:4] == b"\x89PNG"

    again = write_script(brief, versions=3, approval="auto", return_state=True)
    assert again.result() == uri
    states = _task_states(again.state_details.flow_run_id)
    assert states["draft-versions"] == ["Cached"], states
    assert states["calibrate-version"] == ["Cached"] * 3, states


def test_llm_answers_are_cached_on_url_and_model_not_on_name_or_key(
    script_env: dict[str, str], chat: ChatServer
) -> None:
    """A rerun, a second block for the same model and a rotated key pay nothing; another model
    pays again."""
    from blocks.llm_endpoint import LLMEndpoint
    from flows.write_script import write_script

    brief = make_brief("last-light-cached")
    first = write_script(brief, approval="auto", llm_endpoint=ENDPOINT, return_state=True)
    paid = len(chat.requests)
    LLMEndpoint(base_url=chat.url, model="script-editor",
                api_key=SecretStr("sk-rotated")).save("same-model", overwrite=True)
    for name in (ENDPOINT, "same-model"):
        again = write_script(brief, approval="auto", llm_endpoint=name, return_state=True)
        assert again.result() == first.result()
        states = _task_states(again.state_details.flow_run_id)
        assert states["draft-versions"] == ["Cached"], states
        assert states["calibrate-version"] == ["Cached"] * 3, states
    assert len(chat.requests) == paid

    LLMEndpoint(base_url=chat.url, model="another-model",
                api_key=SecretStr(API_KEY)).save("other-model", overwrite=True)
    other = write_script(brief, approval="auto", llm_endpoint="other-model", return_state=True)
    assert other.is_completed(), other.message
    assert [r.schema_name for r in chat.requests[paid:]] == ["DraftSet", *["LLMCalibration"] * 3]
    assert {r.json["model"] for r in chat.requests[paid:]} == {"another-model"}


def test_cli_names_the_bad_field_of_a_brief(tmp_path: Path) -> None:
    brief = tmp_path / "brief.yaml"
    brief.write_text("subjects: [a red kite]\nscenes: []\nshots: 3\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "cli", "script", str(brief)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{brief}: scenes: List should have at least 1 item" in done.stderr
