"""Brief -> drafts -> calibration -> choice -> notes -> revision, offline and through a real
loopback chat server; plus prompt refinement and Chinese renderings."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pydantic import SecretStr, ValidationError

from reelflow.llm import ChatClient, LLMConfig
from reelflow.script.calibration import ACTS, calibrate, plot_emotion_curve
from reelflow.script.camera import check_sequence
from reelflow.script.drafts import (
    DIRECTIONS,
    Brief,
    brief_characters,
    refine_shot_prompt,
    replace_shot,
    revise,
    split_tenths,
    template_plan,
    write_drafts,
)
from reelflow.script.translate import prompt_hash, zh_rendering
from reelflow.storyboard import Storyboard, load_storyboard
from tests.support.boards import storyboard
from tests.support.chat_server import ChatServer, Reply, Request

SEED = Path(__file__).resolve().parents[1] / "examples" / "su7-winter-spring.yaml"

BRIEF = Brief(
    subjects=["mei: young woman with short black hair in a long red wool coat",
              "a grey stray cat with a torn ear"],
    scenes=["a snowed-in railway station at night", "a train crossing a frozen lake",
            "a spring market at dawn"],
    mood="bittersweet, hopeful",
    shots=7,
    total_seconds=21.5,
    language="zh",
)


# -- offline: the template planner ------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3, 4, 7, 12])
@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_template_plan_has_requested_shots_and_total(n: int, direction: str) -> None:
    brief = BRIEF.model_copy(update={"shots": n, "total_seconds": round(n * 2.7, 1)})
    sb = template_plan(brief, direction)
    assert isinstance(Storyboard.model_validate(sb.model_dump()), Storyboard)
    assert len(sb.shots) == n
    assert sum(round(s.duration * 10) for s in sb.shots) == round(n * 27)  # exact in tenths
    assert sb.duration == pytest.approx(n * 2.7)
    assert all(s.duration >= 0.5 for s in sb.shots)
    assert check_sequence(sb) == []
    assert sb.shots[0].camera.size == "extreme-wide"  # establishing first
    report = calibrate(sb)
    if n >= 4:
        assert report.structure_complete
        assert [p for p in report.problems if p.category in ("rhythm", "camera", "structure")
                and p.severity != "info"] == []


def test_template_acts_follow_the_four_part_order() -> None:
    sb = template_plan(BRIEF)
    acts = [s.id.split("-", 1)[1] for s in sb.shots]
    assert acts == ["setup", "setup", "development", "development", "turn", "payoff", "payoff"]
    assert sb.shots[-1].camera.movement == "pull-out"
    assert (sb.aspect, sb.width, sb.height) == ("16:9", 1280, 720)


def test_directions_differ_and_are_deterministic() -> None:
    drafts = write_drafts(BRIEF)
    assert len(drafts) == 3
    assert write_drafts(BRIEF) == drafts
    signatures = {tuple((s.duration, s.camera.size) for s in d.shots) for d in drafts}
    assert len(signatures) == 3
    with pytest.raises(ValueError, match="1-3 versions"):
        write_drafts(BRIEF, versions=4)


def test_subjects_become_characters() -> None:
    (mei, mei_phrase), (cat, cat_phrase) = brief_characters(BRIEF)
    assert mei.name == "mei" and mei.description.startswith("young woman") and mei_phrase == "mei"
    assert cat.name == "a-grey-stray" and cat_phrase == "a grey stray cat with a torn ear"
    sb = template_plan(BRIEF)
    assert {c.name for c in sb.characters} == {"mei", "a-grey-stray"}
    assert any("a-grey-stray" in s.characters for s in sb.shots)


def test_split_tenths_is_exact_and_proportional() -> None:
    assert sum(split_tenths([1, 1, 1], 100)) == 100
    assert split_tenths([1, 3], 40) == [13, 27]
    with pytest.raises(ValueError):
        split_tenths([1, 1], 9)


def test_brief_rejects_impossible_timing() -> None:
    with pytest.raises(ValidationError, match="at least 5 s"):
        Brief(subjects=["x"], scenes=["y"], shots=10, total_seconds=3)


def test_revise_without_llm_records_notes_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    sb = load_storyboard(SEED)
    with caplog.at_level(logging.WARNING, logger="reelflow.script.drafts"):
        revision = revise(sb, "make the turn land harder", None)
    assert revision.storyboard == sb
    assert (revision.applied, revision.notes) == (False, "make the turn land harder")
    assert "no LLM" in revision.warnings[0]
    assert "no LLM" in caplog.text


def test_refine_without_llm_appends_the_notes_as_a_clause() -> None:
    sb = load_storyboard(SEED)
    shot, diff = refine_shot_prompt(sb, "s04-summit", "  heavier clouds over the valley. ", None)
    assert shot.prompt == (sb.shot("s04-summit").description + ", heavier clouds over the valley")
    assert shot.id == "s04-summit" and shot.camera == sb.shot("s04-summit").camera
    assert "--- s04-summit (before)" in diff and "+++ s04-summit (after)" in diff
    assert "+heavier clouds over the valley" in diff.splitlines()
    updated = replace_shot(sb, shot)
    assert updated.shot("s04-summit").prompt == shot.prompt
    assert sb.shot("s04-summit").prompt is None
    with pytest.raises(KeyError, match="no shot 'nope'"):
        refine_shot_prompt(sb, "nope", "x", None)


def test_zh_rendering_without_client_is_missing() -> None:
    assert zh_rendering("a yellow car", None, {}) is None
    cache = {prompt_hash("a yellow car"): "黄色的车"}
    assert zh_rendering("a yellow car", None, cache) == "黄色的车"


# -- through the loopback LLM -----------------------------------------------------------------

CAMERAS = [("extreme-wide", "high", "push-in"), ("wide", "eye-level", "static"),
           ("medium", "low", "tracking"), ("medium-close-up", "eye-level", "push-in"),
           ("close-up", "low", "push-in"), ("medium", "eye-level", "tracking"),
           ("wide", "high", "pull-out")]
ACT_OF = ["setup", "setup", "development", "development", "turn", "payoff", "payoff"]


def llm_draft(k: int, shots: int = 7) -> dict[str, Any]:
    direction = ["told by the cat", "a single night", "memory and present intercut"][k]
    return {
        "direction": direction,
        "title": f"Last Train, version {k + 1}",
        "logline": f"Mei waits for the last train ({direction}).",
        "characters": [{"name": "mei", "description": "young woman, short black hair, red coat"},
                       {"name": "cat", "description": "grey stray cat with a torn ear"}],
        "shots": [
            {"id": f"s{i + 1:02d}-v{k + 1}", "act": ACT_OF[i],
             "description": f"mei and the cat, beat {i + 1} of version {k + 1}",
             "scene": "snowed-in station", "duration": 2.0 + (i % 3) * 0.5,  # sums to 17.5
             "camera": dict(zip(("size", "angle", "movement"), CAMERAS[i], strict=True)),
             "characters": ["mei", "cat"] if i % 2 == 0 else ["mei"],
             "caption": f"第{i + 1}幕"}
            for i in range(shots)
        ],
    }


def llm_calibration(request: Request) -> dict[str, Any]:
    story = json.loads(request.last_user)
    ids = [s["id"] for s in story["shots"]]
    return {
        "acts": {act: [i for i, a in zip(ids, ACT_OF, strict=True) if a == act] for act in ACTS},
        "logic_breaks": [f"{ids[3]}: why does the cat leave the station?"],
        "characters": [{"name": "mei", "consistent": True, "notes": "steady"},
                       {"name": "cat", "consistent": False, "notes": "ear switches sides"}],
        "emotion_curve": [{"shot": i, "intensity": v, "note": "beat"}
                          for i, v in zip(ids, [2, 3, 4, 6, 9, 6, 4], strict=True)],
        "problems": [{"category": "rhythm", "severity": "warning", "shots": ids[:2],
                      "message": "opening drags"}],
        "summary": f"{story['title']}: solid arc, the turn lands.",
    }


def llm_revision(request: Request) -> dict[str, Any]:
    text = request.last_user
    story = json.loads(text.split("Storyboard:\n", 1)[1].split("\n\nDirector's notes:", 1)[0])
    shots = story["shots"]
    shots[4]["description"] = "close on mei as the train doors close without her"
    shots[4]["duration"] = 3.5
    shots.insert(5, {**shots[5], "id": "s05b-platform", "description": "the empty platform",
                     "act": "payoff"})
    for s in shots:
        s.setdefault("act", "development")
        s.setdefault("camera", {"size": "wide", "angle": "eye-level", "movement": "static"})
        s["camera"] = {"size": s["camera"].get("size", "wide"),
                       "angle": s["camera"].get("angle", "eye-level"),
                       "movement": s["camera"].get("movement", "static")}
        s.pop("caption", None)
    return {"summary": "Turn lengthened; added the empty platform.", "title": story["title"],
            "logline": story["logline"], "characters": story["characters"], "shots": shots}


def responder(request: Request) -> Reply:
    name = request.schema_name
    if name == "DraftSet":
        return Reply({"versions": [llm_draft(k) for k in range(3)]},
                     prompt_tokens=900, completion_tokens=2400)
    if name == "LLMCalibration":
        return Reply(llm_calibration(request))
    if name == "RevisedStory":
        return Reply(llm_revision(request))
    if name == "ShotPrompt":
        return Reply({"prompt": "mei, short black hair, red coat, on the platform, "
                                "train lights smeared by heavy snow", "rationale": "snow"})
    if name == "ZhRendering":
        return Reply({"zh": "站台上的梅，红色大衣"})
    return Reply(status=400, body={"error": {"message": f"unexpected schema {name}"}})


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer(responder=responder) as srv:
        yield srv


@pytest.fixture
def client(server: ChatServer) -> Iterator[ChatClient]:
    config = LLMConfig(base_url=server.url, model="writer", api_key=SecretStr("sk-e2e"),
                       backoff=0.0)
    with ChatClient(config) as c:
        yield c


@pytest.mark.integration  # a loopback chat server
def test_end_to_end_brief_to_revision(server: ChatServer, client: ChatClient,
                                      tmp_path: Path) -> None:
    drafts = write_drafts(BRIEF, client, versions=3)
    assert [d.title for d in drafts] == [f"Last Train, version {k}" for k in (1, 2, 3)]
    for draft in drafts:
        assert len(draft.shots) == BRIEF.shots
        assert draft.duration == pytest.approx(BRIEF.total_seconds)  # rescaled from 17.5 s
        assert draft.shots[0].caption is not None and draft.shots[0].caption.zh == "第1幕"
    draft_request = server.requests[0]
    assert "3 storyboard versions" in draft_request.json["messages"][0]["content"]
    assert json.loads(draft_request.last_user)["total_seconds"] == 21.5

    reports, pngs = [], []
    for k, draft in enumerate(drafts):
        report = calibrate(draft, client)
        reports.append(report)
        pngs.append(plot_emotion_curve(report, tmp_path / f"v{k + 1}-emotion.png"))
    for report, png in zip(reports, pngs, strict=True):
        assert report.source == "llm+rules"
        assert report.structure_complete
        assert report.intensities == [2, 3, 4, 6, 9, 6, 4]
        assert report.emotion_curve[1].start == pytest.approx(report.emotion_curve[0].duration)
        assert any(p.source == "llm" and p.category == "logic" for p in report.problems)
        cat = next(c for c in report.characters if c.name == "cat")
        assert not cat.consistent and "ear switches sides" in cat.notes
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 5_000
    assert len({r.storyboard_hash for r in reports}) == 3

    chosen = drafts[1]  # the director picks version 2
    revision = revise(chosen, "Make the turn longer and add a beat on the empty platform.",
                      client)
    revised = revision.storyboard
    assert revision.applied and revision.summary.startswith("Turn lengthened")
    assert [s.id for s in revised.shots][5] == "s05b-platform"
    turn = revised.shot("s05-v2")
    assert turn.duration == 3.5 and "doors close" in turn.description
    assert turn.caption == chosen.shot("s05-v2").caption  # kept: not part of the model's answer
    assert revised.style == chosen.style
    revise_request = server.requests[-1]
    assert "empty platform" in revise_request.last_user
    assert "Last Train, version 2" in revise_request.last_user

    schemas = [r.schema_name for r in server.requests]
    assert schemas == ["DraftSet"] + ["LLMCalibration"] * 3 + ["RevisedStory"]
    assert client.usage.requests == len(server.requests)
    assert client.usage.prompt_tokens >= 900 and client.usage.completion_tokens >= 2400


@pytest.mark.integration  # a loopback chat server
def test_llm_draft_with_wrong_shot_count_is_repaired(server: ChatServer,
                                                     client: ChatClient) -> None:
    server.queue(Reply({"versions": [llm_draft(0, shots=5), llm_draft(1), llm_draft(2)]}))
    drafts = write_drafts(BRIEF, client)
    assert len(drafts) == 3
    assert len(server.requests) == 2
    assert "version 1: version 'Last Train, version 1' has 5 shots, the brief asks for 7" in \
        server.requests[1].last_user


@pytest.mark.integration  # a loopback chat server
def test_refine_shot_prompt_through_llm(server: ChatServer, client: ChatClient) -> None:
    sb = write_drafts(BRIEF, client)[0]
    shot, diff = refine_shot_prompt(sb, "s03-v1", "more snow, keep her coat red", client)
    assert shot.prompt is not None and "heavy snow" in shot.prompt
    assert "-mei and the cat" in diff and "+train lights smeared by heavy snow" in diff
    request = server.requests[-1]
    assert request.schema_name == "ShotPrompt"
    assert "more snow" in request.last_user
    assert "short black hair" in request.last_user  # the shot's characters travel as context


@pytest.mark.integration  # a loopback chat server
def test_zh_rendering_is_cached_by_prompt_hash(server: ChatServer, client: ChatClient) -> None:
    cache: dict[str, str] = {}
    first = zh_rendering("mei on the platform, red coat", client, cache)
    second = zh_rendering("mei on the platform, red coat", client, cache)
    assert first == second == "站台上的梅，红色大衣"
    assert len(server.requests) == 1
    assert cache == {prompt_hash("mei on the platform, red coat"): first}


@pytest.mark.integration  # a loopback chat server
def test_zh_rendering_failure_is_missing_not_fatal(server: ChatServer) -> None:
    server.queue(*[Reply(status=503)] * 2)
    config = LLMConfig(base_url=server.url, model="m", max_retries=1, backoff=0.0)
    cache: dict[str, str] = {}
    with ChatClient(config) as flaky:
        assert zh_rendering("a prompt", flaky, cache) is None
    assert cache == {}


# -- calibration rules ------------------------------------------------------------------------


def board(shots: list[dict[str, Any]], characters: list[dict[str, Any]] | None = None,
          ) -> Storyboard:
    return storyboard(shots, project="cal-test", characters=characters)


def test_seed_film_calibrates_by_rules(tmp_path: Path) -> None:
    report = calibrate(load_storyboard(SEED))
    assert report.source == "rules" and report.structure_complete
    assert report.acts.turn == ["s05-winter-to-spring"]  # the season change is the peak
    assert max(report.intensities) == report.intensities[4]
    assert [p.category for p in report.problems if p.severity != "info"] == ["camera"]
    assert "| turn | s05-winter-to-spring |" in report.to_markdown()
    png = plot_emotion_curve(report, tmp_path / "seed.png")
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (800, 320)


def test_equal_lengths_and_flat_curve_are_flagged() -> None:
    shots = [{"id": f"s{i}", "description": "a person stands in a room", "duration": 2.0,
              "camera": {"size": "medium", "angle": ["eye-level", "high"][i % 2]}}
             for i in range(6)]
    report = calibrate(board(shots))
    rhythm = [p for p in report.problems if p.category == "rhythm"]
    assert len(rhythm) == 1 and "6 of 6 shots last 2 s" in rhythm[0].message
    emotion = [p for p in report.problems if p.category == "emotion"]
    assert len(emotion) == 1 and emotion[0].message.startswith("flat emotion curve")


def test_three_equal_shots_in_a_row_are_flagged() -> None:
    durations = [3.0, 2.0, 2.0, 2.0, 4.0, 1.5]
    shots = [{"id": f"s{i}", "description": "x", "duration": d} for i, d in enumerate(durations)]
    rhythm = [p for p in calibrate(board(shots)).problems if p.category == "rhythm"]
    assert len(rhythm) == 1 and rhythm[0].shots == ["s1", "s2", "s3"]


def test_character_problems_name_the_shots() -> None:
    characters = [{"name": "su7", "description": "bright yellow sports car with black stripes",
                   "trigger_words": ["su7ultra"]},
                  {"name": "mei", "description": "a girl"}]
    shots = [
        {"id": "a", "description": "su7 on a mountain road", "duration": 2, "characters": ["su7"]},
        {"id": "b", "description": "the red car parks, mei waves", "duration": 3,
         "characters": ["su7"]},
    ]
    report = calibrate(board(shots, characters))
    messages = [p.message for p in report.problems if p.category == "character"]
    assert "character su7: b calls it 'red car' but the character is black/yellow" in messages
    assert any(m.startswith("b: mentions 'mei' but does not list") for m in messages)
    assert any("character mei: description 'a girl' is too vague" in m for m in messages)
    su7 = next(c for c in report.characters if c.name == "su7")
    assert su7.shots == ["a", "b"] and not su7.consistent


def test_durations_out_of_range() -> None:
    shots = [{"id": "blink", "description": "x", "duration": 0.6},
             {"id": "epic", "description": "y", "duration": 14}]
    problems = [p for p in calibrate(board(shots)).problems if p.category == "duration"]
    assert [p.shots for p in problems] == [["blink"], ["epic"]]


@pytest.mark.integration  # a loopback chat server
def test_llm_calibration_missing_a_shot_is_repaired(server: ChatServer,
                                                    client: ChatClient) -> None:
    draft = write_drafts(BRIEF, client)[0]
    full = llm_calibration(Request("", {}, {"messages": [
        {"role": "user", "content": json.dumps({"title": "x", "shots": [
            {"id": s.id} for s in draft.shots]})}]}, 0.0))
    short = {**full, "emotion_curve": full["emotion_curve"][:-1]}
    server.queue(Reply(short), Reply(full))
    report = calibrate(draft, client)
    assert len(report.emotion_curve) == len(draft.shots)
    assert "one entry per shot in order" in server.requests[-1].last_user


def test_a_chinese_brief_gets_a_chinese_plan_not_a_mixed_one() -> None:
    import re

    from reelflow.script.drafts import brief_language

    brief = Brief(subjects=["跑者：穿荧光绿跑鞋的年轻女孩"],
                  scenes=["江边步道的夜晚", "城市天台的日出"], shots=6,
                  total_seconds=15, language="zh", aspect="9:16")
    assert brief_language(brief) == "zh" and brief_language(BRIEF) == "en"
    sb = template_plan(brief)
    texts = [sb.title, sb.logline, sb.style.visual_style, *(s.description for s in sb.shots)]
    for text in texts:
        assert not re.search(r"[A-Za-z]{2,}", text), text  # no English words mixed in
        assert re.search(r"[\u4e00-\u9fff]", text), text
    assert sb.characters[0].description == "穿荧光绿跑鞋的年轻女孩"
    # an English brief stays English
    assert all(not re.search(r"[\u4e00-\u9fff]", s.description) for s in template_plan(BRIEF).shots)


def test_a_chinese_brief_gets_readable_ids_captions_and_a_look() -> None:
    """Ids in pinyin (not hashes), on-screen text in Chinese, a palette and lighting from the
    mood, and a character description the calibration does not call vague."""
    import re

    brief = Brief(subjects=["跑者：穿荧光绿跑鞋的年轻女孩", "一只橘色的流浪猫"],
                  scenes=["江边步道的夜晚", "城市天台的日出"], shots=6, mood="温暖",
                  total_seconds=15, language="zh", aspect="9:16")
    sb = template_plan(brief)
    assert [c.name for c in sb.characters] == ["pao-zhe", "yi-zhi-ju-se-de-liu"]
    assert sb.project.startswith("pao-zhe")
    captions = [s.caption.zh for s in sb.shots if s.caption]
    assert captions[0] == sb.title and len(captions) >= 3
    assert all(re.search(r"[\u4e00-\u9fff]", c) for c in captions)
    assert sb.style.palette and "温暖" in sb.style.lighting
    assert "#f2a65a" in sb.style.palette  # the warm look
    report = calibrate(sb)
    assert not any("vague" in p.message for p in report.problems), report.problems


def test_an_english_brief_gets_english_captions_and_a_mood_look() -> None:
    sb = template_plan(BRIEF.model_copy(update={"mood": "lonely winter night"}))
    captions = [s.caption.en for s in sb.shots if s.caption]
    assert captions[0] == sb.title and "Then, everything changed." in captions
    assert sb.style.lighting == "cold diffuse daylight, blue shadows"
