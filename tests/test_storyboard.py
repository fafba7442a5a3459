"""The storyboard contract: loading, strictness, line-numbered errors, the CLI's exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reelflow.storyboard import (
    Storyboard,
    StoryboardError,
    json_schema,
    load_storyboard,
    parse_storyboard,
    save_storyboard,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "su7-winter-spring.yaml"


def test_seed_example_is_valid_and_complete() -> None:
    board = load_storyboard(EXAMPLE)
    assert len(board.shots) == 9
    assert (board.width, board.height) == (1280, 720)
    assert (board.style.width, board.style.height, board.style.steps) == (1536, 864, 30)
    assert board.style.sampler == "euler"
    transition = board.shot("s05-winter-to-spring")
    assert transition.first_frame and transition.last_frame
    assert transition.last_frame.restyle and "spring" in transition.last_frame.restyle
    captions = [s.caption for s in board.shots if s.caption]
    assert captions and all(c.zh and c.en for c in captions)


def test_yaml_and_json_round_trip(tmp_path: Path) -> None:
    board = load_storyboard(EXAMPLE)
    for name in ("copy.yaml", "copy.json"):
        again = load_storyboard(save_storyboard(board, tmp_path / name))
        assert again == board
        assert again.content_hash() == board.content_hash()


def test_error_names_file_line_and_field(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    lines = text.splitlines()
    target = next(i for i, line in enumerate(lines) if "duration: 2.5" in line)
    lines[target] = lines[target].replace("duration: 2.5", "duration: 0")
    bad = tmp_path / "su7.yaml"
    bad.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(StoryboardError) as info:
        load_storyboard(bad)
    assert info.value.problems == [f"su7.yaml:{target + 1} shots[1].duration: must be > 0"]


def test_unknown_keys_and_bad_slugs_are_errors() -> None:
    base = {"title": "t", "project": "p", "shots": [{"id": "a", "description": "d", "duration": 1}]}
    with pytest.raises(StoryboardError, match=r"shots\[0\].durration: unknown key"):
        parse_storyboard(json.dumps({**base, "shots": [{**base["shots"][0], "durration": 2}]}))
    with pytest.raises(StoryboardError, match="project: must be a slug"):
        parse_storyboard(json.dumps({**base, "project": "../etc"}))
    with pytest.raises(StoryboardError, match="unknown character 'ghost'"):
        parse_storyboard(json.dumps({**base, "shots": [{**base["shots"][0],
                                                        "characters": ["ghost"]}]}))


def test_frame_reference_must_point_backwards() -> None:
    shots = [
        {"id": "a", "description": "d", "duration": 1,
         "last_frame": {"shot": "b", "frame": "last"}},
        {"id": "b", "description": "d", "duration": 1},
    ]
    with pytest.raises(StoryboardError, match="shot 'b' must come earlier"):
        parse_storyboard(json.dumps({"title": "t", "project": "p", "shots": shots}))


def test_syntax_error_has_a_line() -> None:
    with pytest.raises(StoryboardError) as info:
        parse_storyboard("title: t\nshots: [\n  - {", source="x.yaml")
    assert info.value.problems[0].startswith("x.yaml:")


def test_schema_describes_shots() -> None:
    schema = json_schema()
    assert "shots" in schema["properties"]
    assert schema["additionalProperties"] is False
    assert Storyboard.model_json_schema() == schema


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_cli_validate_exit_codes(tmp_path: Path) -> None:
    ok = _cli("validate", str(EXAMPLE))
    assert ok.returncode == 0, ok.stderr
    assert "9 shots" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: x\nproject: Bad Slug\nshots: []\n", encoding="utf-8")
    before = sorted(tmp_path.iterdir())
    result = _cli("validate", str(bad))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "bad.yaml:2 project: must be a slug: lowercase letters, digits and dashes "
        "(try 'bad-slug')",
        "bad.yaml:3 shots: List should have at least 1 item after validation, not 0",
    ]
    assert sorted(tmp_path.iterdir()) == before  # nothing written
    # a Chinese project name gets a pinyin suggestion
    chinese = tmp_path / "zh.yaml"
    chinese.write_text("title: x\nproject: 春日短片\nshots: []\n", encoding="utf-8")
    result = _cli("validate", str(chinese))
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "zh.yaml:2 project: must be a slug: lowercase letters, digits and dashes "
        "(try 'chun-ri-duan-pian')")


def test_cli_validate_lists_two_identical_problems_each(tmp_path: Path) -> None:
    """Two shots with the same problem are two lines, every cross-reference problem is listed
    (not only the first found), each at its own shot's line."""
    board = tmp_path / "twice.yaml"
    board.write_text(
        "title: x\nproject: twice\nwidth: 320\nheight: 180\nfps: 12\nshots:\n"
        "  - {id: a, description: one, duration: 1}\n"
        "  - {id: a, description: two, duration: 1}\n"
        "  - {id: a, description: three, duration: 1}\n"
        "  - {id: b, description: four, duration: 1, first_frame: {shot: z, frame: last}}\n"
        "  - {id: c, description: five, duration: 1, first_frame: {shot: z, frame: last}}\n",
        encoding="utf-8",
    )
    result = _cli("validate", str(board))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "twice.yaml:8 shots[1].id: duplicate shot id 'a'",
        "twice.yaml:9 shots[2].id: duplicate shot id 'a'",
        "twice.yaml:10 shots[3].first_frame.shot: shot 'z' must come earlier than shot b",
        "twice.yaml:11 shots[4].first_frame.shot: shot 'z' must come earlier than shot c",
    ]


def test_cli_schema_is_json() -> None:
    result = _cli("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "Storyboard"
