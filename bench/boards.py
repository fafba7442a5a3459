"""Storyboards the benchmarks render: the seed film, a small test film, and N-shot scalings."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from bench.common import ROOT

SEED = ROOT / "examples" / "su7-winter-spring.yaml"
CHANGED_SHOT = "s03-winter-highway"

SMALL = {
    "title": "Bench film",
    "project": "bench-film",
    "width": 320,
    "height": 180,
    "fps": 12,
    "style": {
        "palette": ["#f5c518", "#e8f1f8"],
        "visual_style": "cinematic",
        "quality_tags": ["detailed"],
        "negative_prompt": "blurry",
        "model": "some-real-model",
        "loras": [{"name": "detail", "path": "loras/detail.safetensors", "weight": 0.5}],
        "base_seed": 7,
    },
    "characters": [
        {
            "name": "car",
            "description": "a yellow sports car",
            "trigger_words": ["yellowcar"],
            "lora": {"name": "car-body", "path": "loras/car.safetensors", "weight": 0.8},
        }
    ],
    "shots": [
        {"id": "a", "description": "car on a snowy road", "duration": 1.0, "characters": ["car"],
         "camera": {"size": "wide", "angle": "aerial", "movement": "push-in"}},
        {"id": "b", "description": "rear of the car", "duration": 1.0, "characters": ["car"],
         "camera": {"size": "close-up", "angle": "low", "movement": "pan-right"},
         "transition_in": "crossfade", "transition_duration": 0.25},
        {"id": "c", "description": "the car at the summit", "duration": 1.0,
         "camera": {"size": "full", "angle": "high", "movement": "static"}},
        {"id": "d", "description": "winter turns to spring", "duration": 1.0,
         "transition_in": "crossfade", "transition_duration": 0.25,
         "first_frame": {"shot": "c", "frame": "last"},
         "last_frame": {"shot": "c", "frame": "last", "restyle": "spring, green grass",
                        "loras": [{"name": "spring", "path": "loras/spring.safetensors",
                                   "weight": 0.8}]}},
    ],
}


def small_board(quick: bool) -> dict[str, Any]:
    """The 4-shot test film (incl. a restyled first/last-frame transition); 2 shots in quick."""
    board = copy.deepcopy(SMALL)
    if quick:
        board["shots"] = board["shots"][:2]
        board["width"], board["height"] = 128, 72
    return board


def seed_board(quick: bool) -> dict[str, Any]:
    """The seed film (9 shots); in quick mode its first 4 shots at 128x72, 1 s each, without
    their voice-over lines (a line longer than its 1 s shot is refused, as it should be)."""
    board = yaml.safe_load(SEED.read_text(encoding="utf-8"))
    if quick:
        board["shots"] = board["shots"][:4]
        board["width"], board["height"], board["fps"] = 128, 72, 12
        for shot in board["shots"]:
            shot["duration"] = 1.0
            shot.pop("voiceover", None)
            if "transition_duration" in shot:
                shot["transition_duration"] = 0.25
    return board


def with_changed_prompt(
    board: dict[str, Any], edit: int = 0, shot_id: str = CHANGED_SHOT
) -> dict[str, Any]:
    """The same storyboard with one shot's description edited (`edit` picks the wording)."""
    out = copy.deepcopy(board)
    shot = next(s for s in out["shots"] if s["id"] == shot_id)
    shot["description"] += f", low sun glinting on the bonnet, take {edit + 2}"
    return out


def with_changed_caption(
    board: dict[str, Any], edit: int = 0, shot_id: str = CHANGED_SHOT
) -> dict[str, Any]:
    """The same storyboard with one shot's caption reworded (no picture of any shot changes)."""
    out = copy.deepcopy(board)
    shot = next(s for s in out["shots"] if s["id"] == shot_id)
    caption = shot.setdefault("caption", {"zh": "", "en": ""})
    caption["zh"] = f"{caption.get('zh', '')}（第{edit + 2}稿）"
    caption["en"] = f"{caption.get('en', '')} (take {edit + 2})"
    return out


def scaled_board(n: int) -> dict[str, Any]:
    """The seed film's shots repeated to `n` shots (ids and frame references renamed)."""
    board = yaml.safe_load(SEED.read_text(encoding="utf-8"))
    base = board["shots"]
    shots = []
    for i in range(n):
        block, shot = divmod(i, len(base))
        new = copy.deepcopy(base[shot])
        new["id"] = f"{new['id']}-b{block}"
        for field in ("first_frame", "last_frame"):
            if field in new:
                new[field]["shot"] = f"{new[field]['shot']}-b{block}"
        shots.append(new)
    board["shots"] = shots
    return board


def dump(board: dict[str, Any]) -> str:
    return yaml.safe_dump(board, allow_unicode=True, sort_keys=False)


def write(board: dict[str, Any], path: Path) -> Path:
    path.write_text(dump(board), encoding="utf-8")
    return path


def lora_names(board: dict[str, Any]) -> list[str]:
    """Every LoRA the demo/test profiles build a tiny stand-in for (as the flow computes it)."""
    from reelflow.render.jobs import lora_names
    from reelflow.storyboard import parse_storyboard

    sb = parse_storyboard(dump(board))
    return lora_names(sb)
