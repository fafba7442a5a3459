"""Approvals that keep every decision: answers checked against the run before it resumes,
earlier rounds' picks carried into the next round's defaults, `pending` and the printed command."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from reelflow.render.decisions import AnswerError, GateSpec, carry_picks, check_answer
from tests.support.waiting import wait_for_pending

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
        counts = {"a": 2, "b": 2}
        earlier: dict[str, int] = {}
        regenerated: set[str] = set()
        for round_ in (1, 2):
            picks = carry_picks({"a": 0, "b": 0}, earlier, regenerated=regenerated, counts=counts)
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

    result["picks"] = gate_toy()


def _wait(gate: str, timeout: float = 60) -> dict[str, str]:
    return wait_for_pending(gate, timeout, project="春日短片")


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_approve_refuses_bad_answers_without_consuming_the_gate_and_picks_carry_over(
    prefect_server: str,
) -> None:
    os.environ["REELFLOW_POLL_INTERVAL"] = "1"
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    result: dict[str, Any] = {}
    thread = threading.Thread(target=_toy_flow, args=(result,), daemon=True)
    thread.start()
    run = _wait("images-1")
    run_id = run["id"]
    for bad in (["--pick", "s02=1"], ["--pick", "a=5"], ["--new-seed", "a=3"]):
        done = _cli("approve", run_id, *bad, env=env)
        assert done.returncode == 2, (bad, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert _wait("images-1")["id"] == run_id  # still waiting at the same gate
    listed = _cli("pending", env=env).stdout
    assert f"{run_id}  春日短片  waiting at images-1 for " in listed
    # round 1: reject a, pick b=1; round 2: approve without picks -> b stays 1
    done = _cli("approve", run_id, "--reject", "a=warmer", "--pick", "b=1", env=env)
    assert done.returncode == 0, done.stderr
    _wait("images-2")
    done = _cli("approve", run_id, env=env)
    assert done.returncode == 0, done.stderr
    thread.join(timeout=60)
    assert result["picks"] == {"a": 0, "b": 1}
