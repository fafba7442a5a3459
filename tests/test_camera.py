"""Camera sequence checks and proposals (rules and LLM through the loopback server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from reelflow.llm import ChatClient, LLMConfig
from reelflow.script.camera import check_sequence, keyword_camera, propose_camera
from reelflow.storyboard import Storyboard, load_storyboard
from tests.support.boards import shot, storyboard
from tests.support.chat_server import ChatServer, Reply, Request

SEED = Path(__file__).resolve().parents[1] / "examples" / "su7-winter-spring.yaml"


def board(*shots: dict) -> Storyboard:
    return storyboard(list(shots), project="cam-test")


def test_same_size_and_angle_on_a_cut_is_flagged_with_both_shots() -> None:
    sb = board(shot("a", {"size": "medium", "angle": "low"}),
               shot("b", {"size": "medium", "angle": "low", "movement": "push-in"}))
    (problem,) = check_sequence(sb)
    assert problem.startswith("a -> b:")
    assert "same size (medium) and angle (low)" in problem


def test_repeated_framing_is_fine_through_a_dissolve_or_a_continuous_frame() -> None:
    dissolve = board(shot("a", {"size": "medium"}),
                     shot("b", {"size": "medium"}, transition_in="crossfade"))
    continuous = board(shot("a", {"size": "full"}),
                       shot("b", {"size": "full"}, first_frame={"shot": "a"}))
    assert check_sequence(dissolve) == []
    assert check_sequence(continuous) == []


def test_size_jump_threshold() -> None:
    five = board(shot("wide-one", {"size": "extreme-wide"}), shot("tight", {"size": "close-up"}))
    four = board(shot("wide-one", {"size": "wide"}), shot("tight", {"size": "close-up"}))
    (problem,) = check_sequence(five)
    assert "wide-one -> tight" in problem and "5 steps" in problem
    assert check_sequence(four) == []
    assert len(check_sequence(four, max_size_jump=3)) == 1


def test_reversed_camera_move_across_a_cut() -> None:
    sb = board(shot("a", {"size": "wide", "movement": "pan-left"}),
               shot("b", {"size": "medium", "movement": "pan-right"}))
    (problem,) = check_sequence(sb)
    assert "a -> b" in problem and "pan-left then pan-right" in problem


def test_seed_film_has_only_its_big_jump_flagged() -> None:
    problems = check_sequence(load_storyboard(SEED))
    assert len(problems) == 1
    assert problems[0].startswith("s01-mountain-aerial -> s02-rear-closeup")


def test_keywords_imply_camera() -> None:
    assert keyword_camera("aerial view of a winding mountain road")["angle"] == "aerial"
    assert keyword_camera("close-up of her hands on the wheel")["size"] == "close-up"
    assert keyword_camera("the car driving through the city")["movement"] == "tracking"
    assert keyword_camera("an empty room") == {}


def test_rules_fill_only_what_is_missing() -> None:
    sb = board(
        shot("s1", description="aerial view of the valley at dawn"),
        shot("s2", {"size": "close-up"}, description="her hands grip the wheel"),
        shot("s3", description="the car driving through the quiet street"),
        shot("s4", {"size": "medium", "angle": "high", "movement": "orbit"},
             description="she finally smiles"),
        shot("s5", description="the car drives away into the distance"),
    )
    out = propose_camera(sb)
    cams = {s.id: s.camera for s in out.shots}
    assert cams["s1"].angle == "aerial" and cams["s1"].size == "extreme-wide"
    assert cams["s2"].size == "close-up"  # kept: set explicitly
    assert cams["s3"].movement == "tracking"
    assert cams["s4"] == sb.shot("s4").camera  # fully explicit: untouched
    assert cams["s5"].movement == "pull-out"
    assert not [p for p in check_sequence(out) if "same size" in p]
    assert sb.shot("s1").camera.size == "wide"  # the input was not modified
    assert propose_camera(out) == out  # nothing left to fill


def test_repeated_proposal_is_nudged_off_the_previous_framing() -> None:
    sb = board(shot("a", {"size": "wide", "angle": "eye-level", "movement": "static"},
                    description="a street"),
               shot("b", description="a busy street"))
    out = propose_camera(sb)
    first, second = out.shots[0].camera, out.shots[1].camera
    assert (second.size, second.angle) != (first.size, first.angle)


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer() as srv:
        yield srv


@pytest.mark.integration  # a loopback chat server
def test_llm_proposal_respects_explicit_fields_and_is_repaired(server: ChatServer) -> None:
    sb = board(shot("s1"), shot("s2", {"angle": "dutch"}), shot("s3"))
    plan = {"shots": [
        {"id": "s1", "size": "extreme-wide", "angle": "high", "movement": "push-in",
         "reason": "establish"},
        {"id": "s2", "size": "close-up", "angle": "low", "movement": "static", "reason": "tension"},
        {"id": "s3", "size": "wide", "angle": "eye-level", "movement": "pull-out",
         "reason": "release"},
    ]}
    incomplete = {"shots": plan["shots"][:2]}
    server.queue(Reply(incomplete), Reply(plan))
    config = LLMConfig(base_url=server.url, model="m", api_key=SecretStr("k"), backoff=0)
    with ChatClient(config) as client:
        out = propose_camera(sb, client)
    cams = [s.camera for s in out.shots]
    assert (cams[0].size, cams[0].angle, cams[0].movement) == ("extreme-wide", "high", "push-in")
    assert (cams[1].size, cams[1].angle) == ("close-up", "dutch")  # dutch was the director's
    assert cams[2].movement == "pull-out"
    assert len(server.requests) == 2
    assert "one entry per shot id" in server.requests[1].last_user
    request: Request = server.requests[0]
    assert request.schema_name == "CameraPlan"
    assert '"fixed": {\n   "angle": "dutch"' in request.last_user


@pytest.mark.integration  # a loopback chat server
def test_nothing_missing_means_no_llm_call(server: ChatServer) -> None:
    sb = load_storyboard(SEED)
    config = LLMConfig(base_url=server.url, model="m")
    with ChatClient(config) as client:
        assert propose_camera(sb, client) == sb
    assert server.requests == []
