"""Approvals that keep every decision: answers checked against the run before it resumes,
earlier rounds' picks carried into the next round's defaults, `pending` and the printed command."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from reelflow.render.decisions import (
    AnswerError,
    GateSpec,
    LineOnTable,
    carry_picks,
    check_answer,
)
from tests.support.waiting import form_published, wait_for_pending, wait_until

ROOT = Path(__file__).resolve().parents[1]
SPEC = GateSpec(gate="images", project="春", shots={"a": 2, "b": 2, "c": 3})


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"picks": {"s02": 1}}, "--pick s02: no such shot at the images gate (shots: a, b, c)"),
        ({"picks": {"a": 5}}, "--pick a=5: out of range, shot a has 2 variant(s) (0..1)"),
        ({"picks": {"a": -1}}, "--pick a=-1: out of range"),
        ({"reject": {"zz": "x"}}, "--reject zz: no such shot"),
        ({"new_seeds": {"a": 3}}, "--new-seed is not taken at the images gate"),
        ({"notes": "x"}, "--notes is not taken at the images gate (it takes --pick, --reject)"),
        ({"reject": {"a": ""}}, '--reject a=: empty notes; say what to change (--reject a="'),
        ({"reject": {"a": " \n"}}, "--reject a=: empty notes"),
    ],
)
def test_answers_that_do_not_fit_the_gate_are_refused(answer: dict, message: str) -> None:
    with pytest.raises(AnswerError) as info:
        check_answer(SPEC, answer)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_answers_that_fit_pass_and_other_gates_check_their_own_fields() -> None:
    check_answer(SPEC, {"picks": {"c": 2}, "reject": {"a": "warmer"}, "reviewer": "x"})
    clips = GateSpec(gate="clips", shots={"a": 1})
    check_answer(clips, {"regenerate": {"a": "slower"}, "new_seeds": {"a": 9}})
    with pytest.raises(AnswerError, match="--pick is not taken at the clips gate"):
        check_answer(clips, {"picks": {"a": 0}})
    with pytest.raises(AnswerError, match="--version 3: out of range"):
        check_answer(GateSpec(gate="storyboard", versions=2), {"version": 3})


def test_empty_notes_are_refused_where_notes_are_what_the_option_means() -> None:
    clips = GateSpec(gate="clips", shots={"a": 1})
    with pytest.raises(AnswerError, match="--reject a=: empty notes.*--new-seed a=SEED"):
        check_answer(clips, {"regenerate": {"a": "  "}, "new_seeds": {"a": 9}})
    check_answer(clips, {"new_seeds": {"a": 9}})  # a new seed alone needs no notes
    storyboard = GateSpec(gate="storyboard")
    for revision in ({"approve": False, "notes": ""}, {"approve": False}, {"notes": "   "},
                     {"notes": ""}):  # `approve --notes ""`
        with pytest.raises(AnswerError, match="^--notes: empty; a revision needs notes"):
            check_answer(storyboard, revision)
    check_answer(storyboard, {"approve": True, "notes": ""})
    check_answer(storyboard, {"approve": False, "notes": "more snow"})


def test_without_an_llm_the_storyboard_gate_refuses_notes_in_one_line() -> None:
    """The offline planner cannot act on notes: they are refused, not dropped; approving any
    version passes."""
    from reelflow.render.decisions import NO_REVISIONS

    offline = GateSpec(gate="storyboard", versions=3, revisions=False)
    for revision in ({"notes": "warmer light"}, {"approve": False, "notes": "x", "version": 2}):
        with pytest.raises(AnswerError) as refused:
            check_answer(offline, revision)
        assert str(refused.value) == f"--notes: {NO_REVISIONS}"
        assert "\n" not in str(refused.value)
    check_answer(offline, {"version": 2})
    check_answer(GateSpec(gate="storyboard", versions=3), {"notes": "warmer light"})


#: bad answers, as `reelflow approve` takes them and as the UI's form would send them: the CLI,
#: the form's model and the Prefect server (the form's JSON schema) refuse every one.
BAD_ANSWERS = [
    (["--pick", "s02=1"], {"s02": {"pick": "#1"}},
     "--pick s02: no such shot at the images gate (shots: a, b, c)"),
    (["--pick", "a=5"], {"a": {"pick": "#5"}},
     "--pick a=5: out of range, shot a has 2 variant(s) (0..1)"),
    (["--pick", "a=-1"], {"a": {"pick": "#-1"}}, "--pick a=-1: out of range"),
    (["--reject", "zz=warmer"], {"zz": {"notes": "warmer"}},
     "--reject zz: no such shot at the images gate"),
    (["--reject", "a= "], {"a": {"notes": " "}}, "--reject a=: empty notes"),
    (["--reject", "b=\n"], {"b": {"notes": " \n"}}, "--reject b=: empty notes"),
    (["--new-seed", "a=3"], {"a": {"seed": 3}}, "--new-seed is not taken at the images gate"),
    (["--notes", "x"], {"notes": "x"},
     "--notes is not taken at the images gate (it takes --pick, --reject)"),
]  # fmt: skip
#: the clips gate's voice-over re-takes: bad answers as `reelflow approve` takes them and as the
#: UI's form sends them, for a gate with lines in zh for shots a and b (tests/test_sound.py
#: sends both to a real run waiting at its clips gate)
CLIPS_BAD_ANSWERS = [
    (["--retake", "zz=雪"], {"zz": {"zh": {"text": "雪"}}},
     "--retake zz: no such shot at the clips gate (shots: a, b)"),
    (["--retake", "a= "], {"a": {"zh": {"text": " "}}}, "--retake a=: empty text"),
    (["--voice", "b=\n"], {"b": {"zh": {"voice": "\n"}}}, "--voice b=: empty voice"),
    (["--speed", "a=3"], {"a": {"zh": {"speed": 3}}},
     "--speed a=3.0: Input should be less than or equal to 2"),
    (["--speed", "b=0.2"], {"b": {"zh": {"speed": 0.2}}},
     "--speed b=0.2: Input should be greater than or equal to 0.5"),
    (["--lang", "en", "--retake", "a=Snow."], {"a": {"en": {"text": "Snow."}}},
     "--lang en: this run speaks zh"),
]  # fmt: skip
CLIPS_SPEC = GateSpec(gate="clips", shots={"a": 1, "b": 1}, seeds={"a": 1, "b": 2}, lines={
    "a": {"zh": LineOnTable(key="k/a.wav", text="雪山很静。", voice="cmn", speed=1.0,
                            duration=1.1, engine="espeak")},
    "b": {"zh": LineOnTable(key="k/b.wav", text="城市醒了。", voice="cmn", speed=1.0,
                            duration=1.0, engine="espeak")},
})  # fmt: skip
FORM_SPEC = SPEC.model_copy(update={
    "quality": {"a": [0.54, 0.61]}, "identity": {"a": [0.81, 0.42]},
    "descriptions": {"a": "a yellow car on a snowy road", "b": "雪中的红灯笼"},
    "defaults": {"picks": {"b": 1}},
})  # fmt: skip


def test_the_form_is_made_from_the_gate_dropdowns_labelled_with_scores_defaults_carried() -> None:
    from prefect._internal.pydantic.v2_schema import create_v2_schema

    from flows.forms import review_form
    from reelflow.render.decisions import decision

    form = review_form(FORM_SPEC)
    schema = create_v2_schema(form.__name__, model_base=form)  # what Prefect saves for the UI
    assert set(schema["properties"]) == {"a", "b", "c", "reviewer"}
    assert schema["properties"]["a"]["title"] == "a: a yellow car on a snowy road"
    shot_a = schema["definitions"][schema["properties"]["a"]["$ref"].rsplit("/", 1)[1]]
    assert shot_a["properties"]["pick"]["enum"] == [
        "#0 · identity 0.81 · quality 0.54", "#1 · identity 0.42 · quality 0.61"]
    assert shot_a["additionalProperties"] is False
    assert schema["properties"]["b"]["default"] == {"pick": "#1", "notes": ""}  # carried pick
    answer = form(**{"a": {"pick": "#1 · identity 0.42 · quality 0.61"},
                     "c": {"notes": "warmer light"}, "reviewer": "ui"})
    assert decision(FORM_SPEC, answer) == {
        "picks": {"a": 1, "b": 1, "c": 0}, "reject": {"c": "warmer light"}, "reviewer": "ui"}
    clips = GateSpec(gate="clips", shots={"a": 1, "b": 1, "c": 1}, seeds={"a": 5, "b": 6, "c": 7})
    taken = review_form(clips)(**{"a": {"regenerate": True}, "b": {"seed": 9},
                                  "c": {"notes": "slower"}})
    assert decision(clips, taken) == {"regenerate": {"c": "slower"}, "new_seeds": {"b": 9},
                                      "again": ["a"], "retakes": [], "reviewer": ""}
    board = GateSpec(gate="storyboard", versions=2, version_names=["雪夜归途", "Dawn"])
    enum = review_form(board).model_json_schema()["properties"]["version"]["enum"]
    assert enum == ["#0 · 雪夜归途", "#1 · Dawn"]
    assert decision(board, review_form(board)(version="#1 · Dawn"))["version"] == 1


@pytest.mark.parametrize(("args", "ui", "message"), BAD_ANSWERS)
def test_the_form_model_and_its_schema_refuse_the_bad_answers(
    args: list[str], ui: dict, message: str
) -> None:
    from prefect._internal.pydantic.v2_schema import create_v2_schema
    from prefect.utilities import schema_tools  # what the server checks a resume against
    from pydantic import ValidationError

    from flows.forms import review_form

    form = review_form(FORM_SPEC)
    with pytest.raises(ValidationError):
        form(**ui)
    schema = create_v2_schema(form.__name__, model_base=form)
    with pytest.raises(schema_tools.ValidationError):
        schema_tools.validate(ui, schema, raise_on_error=True)


@pytest.mark.parametrize(("args", "ui", "message"), CLIPS_BAD_ANSWERS)
def test_the_clips_form_and_its_schema_refuse_bad_retakes(
    args: list[str], ui: dict, message: str
) -> None:
    from prefect._internal.pydantic.v2_schema import create_v2_schema
    from prefect.utilities import schema_tools
    from pydantic import ValidationError

    from flows.forms import review_form

    form = review_form(CLIPS_SPEC)
    with pytest.raises(ValidationError):
        form(**ui)
    schema = create_v2_schema(form.__name__, model_base=form)
    with pytest.raises(schema_tools.ValidationError):
        schema_tools.validate(ui, schema, raise_on_error=True)


def test_a_line_retaken_in_the_form_or_the_cli_is_one_decision_in_either_language() -> None:
    """The form shows each line's text, voice and speed as it is spoken now; a changed field
    is a re-take of that line in that language, the others stay; the CLI's options make the
    same decision (`--lang en` for the English line)."""
    from flows.forms import review_form
    from reelflow.render.decisions import decision, form_data

    spec = CLIPS_SPEC.model_copy(deep=True)
    spec.lines["a"]["en"] = LineOnTable(key="k/a-en.wav", text="The peaks are quiet.",
                                        voice="en", speed=1.0, duration=1.3)  # fmt: skip
    form = review_form(spec)
    line = form.model_json_schema()["$defs"]["Line_a_en"]["properties"]
    assert line["text"]["default"] == "The peaks are quiet." and line["speed"]["maximum"] == 2.0
    ui = form(**{"a": {"zh": {"speed": 1.3}, "en": {"text": "Quiet peaks."}}, "reviewer": "ui"})
    retakes = decision(spec, ui)["retakes"]
    assert retakes == [
        {"shot": "a", "language": "zh", "text": "雪山很静。", "voice": "cmn", "speed": 1.3},
        {"shot": "a", "language": "en", "text": "Quiet peaks.", "voice": "en", "speed": 1.0},
    ]
    cli = form(**form_data(spec, {"speeds": {"a": 1.3}}))
    assert decision(spec, cli)["retakes"] == retakes[:1]
    cli = form(**form_data(spec, {"retake": {"a": "Quiet peaks."}, "lang": "en"}))
    assert decision(spec, cli)["retakes"] == retakes[1:]
    assert decision(spec, form())["retakes"] == []  # approving re-takes nothing
    with pytest.raises(AnswerError, match="^--retake b: shot b has no en voice-over line "
                       r"\(lines: a\)$"):  # fmt: skip
        check_answer(spec, {"retake": {"b": "The city."}, "lang": "en"})
    assert '--retake a="new text"' in spec.approve_command("RUN")


def test_pause_keys_are_bounded_and_name_their_gate_and_round() -> None:
    from flows.forms import MAX_ATTEMPTS, gate_of, pause_key, round_of

    keys = [pause_key("images", 2, attempt) for attempt in range(MAX_ATTEMPTS)]
    assert keys[:2] == ["images-2", "images-2-retry1"]
    assert max(len(k) for k in keys) == len(f"images-2-retry{MAX_ATTEMPTS - 1}")
    assert {gate_of(k) for k in keys} == {"images"} and {round_of(k) for k in keys} == {"images-2"}


def test_picks_of_earlier_rounds_survive_except_for_regenerated_shots() -> None:
    fresh = {"a": 0, "b": 0, "c": 0}
    # round 1: reject a, pick b=1 -> round 2's defaults keep b=1, a starts over
    assert carry_picks(fresh, {"a": 1, "b": 1, "c": 2}, regenerated={"a"}, counts=SPEC.shots) == {
        "a": 0,
        "b": 1,
        "c": 2,
    }
    # a pick no longer in range falls back to the fresh default
    assert carry_picks(fresh, {"c": 2}, counts={"c": 2})["c"] == 0


def test_approve_command_names_the_run_and_a_real_shot() -> None:
    assert SPEC.approve_command("RID") == 'reelflow approve RID [--pick a=N] [--reject a="notes"]'


# -- against a real Prefect server: a paused run, the CLI's code path --------------------------


def _toy_flow(result: dict[str, Any]) -> None:
    """Two rounds of an images gate, as produce_video runs them."""
    from prefect import flow

    from flows.gates import ImagesReview, wait_for_review

    @flow(name="gate-toy")
    def gate_toy() -> dict[str, int]:
        counts = SPEC.shots
        earlier: dict[str, int] = {}
        regenerated: set[str] = set()
        for round_ in (1, 2):
            fresh = dict.fromkeys(counts, 0)
            picks = carry_picks(fresh, earlier, regenerated=regenerated, counts=counts)
            answer, _ = wait_for_review(
                "images",
                round_,
                ImagesReview,
                description="pick",
                policy="manual",
                spec=GateSpec(gate="images", round=round_, project="春日短片", shots=counts),
                picks=picks,
            )
            if not answer.reject:
                break
            earlier, regenerated = {**picks, **answer.picks}, set(answer.reject)
        return {s: answer.picks.get(s, picks[s]) for s in counts}

    try:
        result["picks"] = gate_toy()
    except Exception as exc:  # noqa: BLE001 - the test reads it
        result["error"] = exc


def _wait(gate: str, timeout: float = 60) -> dict[str, str]:
    return wait_for_pending(gate, timeout, project="春日短片")


def _paused_at(run_id: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(run_id)).state
    assert state is not None and state.is_paused(), state
    return state.state_details.pause_key or ""


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_approve_refuses_bad_answers_without_consuming_the_gate_and_picks_carry_over(
    prefect_server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    os.environ["REELFLOW_POLL_INTERVAL"] = "1"
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    result: dict[str, Any] = {}
    thread = threading.Thread(target=_toy_flow, args=(result,), daemon=True)
    thread.start()
    run = _wait("images-1")
    run_id = run["id"]
    done = _cli("approve", run_id, "--pick", "s02=1", env=env)  # the installed command
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.strip().endswith(BAD_ANSWERS[0][2])
    # the same table of bad answers: refused by `reelflow approve` and, sent as the UI's form
    # sends them, by the Prefect server (the form's schema); the run keeps waiting
    from prefect.flow_runs import resume_flow_run

    from cli.main import main

    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    for args, ui, message in BAD_ANSWERS:
        capsys.readouterr()
        assert main(["approve", run_id, *args]) == 2, args
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert message in line, (args, line)
        with pytest.raises(RuntimeError, match="Reason"):
            resume_flow_run(UUID(run_id), run_input=ui)
        assert _paused_at(run_id) == "images-1"
    listed = _cli("pending", env=env).stdout
    assert f"{run_id}  春日短片  waiting at images-1 for " in listed
    # an empty rejection: refused in one line by the reviewer client and the CLI alike
    from flows.reviewer import approve_run

    with pytest.raises(AnswerError, match="^--reject a=: empty notes"):
        approve_run(run_id, rejects={"a": ""})
    done = _cli("approve", run_id, "--reject", "a=", env=env)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.endswith('--reject a=: empty notes; say what to change (--reject a="warmer light")')
    assert _wait("images-1")["id"] == run_id and _paused_at(run_id) == "images-1"
    # round 1: reject a, pick b=1; round 2: approve without picks -> b stays 1
    done = _cli("approve", run_id, "--reject", "a=warmer", "--pick", "b=1", env=env)
    assert done.returncode == 0, done.stderr
    _wait("images-2")
    done = _cli("approve", run_id, env=env)
    assert done.returncode == 0, done.stderr
    thread.join(timeout=60)
    assert result["picks"] == {"a": 0, "b": 1, "c": 0}


def _wait_key(run_id: str, key: str, timeout: float = 60) -> None:
    from prefect.client.orchestration import get_client

    def paused_at_key() -> bool:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(run_id)).state
        return bool(state and state.is_paused() and state.state_details.pause_key == key
                    and form_published(run_id))

    wait_until(f"run {run_id} paused at {key}", paused_at_key, timeout, interval=0.3)


def _storyboard_toy(result: dict[str, Any]) -> None:
    from prefect import flow

    from flows.gates import StoryboardReview, wait_for_review

    @flow(name="gate-toy")
    def gate_toy() -> None:
        wait_for_review(
            "storyboard", 1, StoryboardReview, description="approve?", policy="manual",
            spec=GateSpec(gate="storyboard", project="春日短片", versions=2,
                          version_names=["雪夜", "dawn"]),
        )  # fmt: skip

    try:
        gate_toy()
    except Exception as exc:  # noqa: BLE001 - the test reads it
        result["error"] = exc


def test_ui_answers_refused_by_the_schema_or_asked_again_under_bounded_keys(
    prefect_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers as the UI sends them (straight to the server): a version not on the form is
    refused by the server against the form's schema; one that fits the schema but not the
    form's model (no approval and no notes) is asked again under the next numbered key, and
    the round gives up after MAX_ATTEMPTS."""
    from prefect import flow
    from prefect.context import get_run_context
    from prefect.flow_runs import pause_flow_run, resume_flow_run

    from flows.reviewer import pending_runs

    os.environ["REELFLOW_POLL_INTERVAL"] = "1"
    monkeypatch.setattr("flows.gates.MAX_ATTEMPTS", 2)
    foreign: dict[str, str] = {}

    @flow(name="not-reelflow")
    def not_reelflow() -> None:
        foreign["id"] = str(get_run_context().flow_run.id)  # type: ignore[union-attr]
        pause_flow_run(key="foreign", timeout=120, poll_interval=1)

    other = threading.Thread(target=not_reelflow, daemon=True)
    other.start()
    result: dict[str, Any] = {}
    thread = threading.Thread(target=_storyboard_toy, args=(result,), daemon=True)
    thread.start()
    run_id = _wait("storyboard-1")["id"]
    wait_until("the other flow's run id", lambda: "id" in foreign, 60, interval=0.2)
    _wait_key(foreign["id"], "foreign")
    # `pending` lists reelflow's runs only: the other paused run is filtered out on the server
    listed = {run["id"] for run in pending_runs()}
    assert run_id in listed and foreign["id"] not in listed

    with pytest.raises(RuntimeError):  # the server checks the form's schema: no such version
        resume_flow_run(UUID(run_id), run_input={"version": "#2 · dusk"})
    assert _paused_at(run_id) == "storyboard-1"

    resume_flow_run(UUID(run_id), run_input={"version": "#1 · dawn", "approve": False})
    _wait_key(run_id, "storyboard-1-retry1")
    assert [r["gate"] for r in pending_runs() if r["id"] == run_id] == ["storyboard-1"]
    resume_flow_run(UUID(run_id), run_input={"approve": False, "notes": ""})
    thread.join(timeout=60)
    assert str(result.get("error")).startswith(
        "the storyboard gate (round 1) got 2 invalid answers in a row; the last: empty; a "
        "revision needs notes"
    ), result
    resume_flow_run(UUID(foreign["id"]))
    other.join(timeout=60)


def test_an_answer_sent_before_prefect_publishes_the_form_waits_for_it(
    prefect_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefect writes a paused run's form (its run-input schema) just after the pause, and the
    server refuses a resume in between ("Run input schema not found"). `approve` sent in that
    window (a reviewer quick on the gate message, a busy server) waits for the form and lands,
    instead of failing; the CI run that found it had the schema write held up by a locked
    database."""
    import json

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.input.run_input import keyset_from_paused_state
    from prefect.states import Paused

    from flows.forms import StoryboardReview
    from flows.reviewer import approve_run

    @flow(name="form-race")
    def form_race() -> None: ...

    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    with get_client(sync_client=True) as client:  # a run paused as Prefect pauses, no form yet
        run = client.create_flow_run(form_race)
        paused = Paused(timeout_seconds=300, pause_key="storyboard-1")
        keyset = keyset_from_paused_state(paused)
        paused.state_details.run_input_keyset = keyset
        client.set_flow_run_state(run.id, paused, force=True)
    answered: dict[str, Any] = {}

    def answer() -> None:
        try:
            answered["gate"] = approve_run(str(run.id), reviewer="director")
        except Exception as exc:  # noqa: BLE001 - the test reads it
            answered["error"] = exc

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    thread.join(timeout=1.5)
    assert thread.is_alive(), answered  # no form yet: the answer waits instead of failing
    with get_client(sync_client=True) as client:
        schema = json.dumps(StoryboardReview.model_json_schema())
        client.create_flow_run_input(run.id, keyset["schema"], schema)
    thread.join(timeout=30)
    assert answered == {"gate": "storyboard"}
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state
        sent = json.loads(client.read_flow_run_input(run.id, keyset["response"]))
    assert state is not None and state.type != StateType.PAUSED
    assert sent["approve"] is True and sent["reviewer"] == "director"
