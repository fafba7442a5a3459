"""Storyboards for tests: the small two-shot board the operations tests render, and builders for
the boards unit tests check (shots as dicts, validated like a loaded file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reelflow.storyboard import Storyboard

# Two shots, the test profile: one still-based shot and a crossfade into the second.
SMALL_BOARD = """
title: "Ops test"
project: ops-film
width: 160
height: 96
fps: 8
style:
  palette: ["#f5c518", "#e8f1f8"]
  visual_style: cinematic
  negative_prompt: blurry
  model: some-real-model
  loras: [{name: detail, path: loras/detail.safetensors, weight: 0.5}]
  base_seed: 11
shots:
  - {id: a, description: a yellow car on a snowy road, duration: 1.0,
     camera: {size: wide, angle: aerial, movement: push-in}}
  - {id: b, description: the car at the summit, duration: 1.0,
     camera: {size: full, angle: high, movement: pan-right},
     transition_in: crossfade, transition_duration: 0.25}
"""


def board(project: str) -> str:
    """SMALL_BOARD under another project name (so nothing is cached from another test)."""
    return SMALL_BOARD.replace("project: ops-film", f"project: {project}")


def one_shot_board(project: str) -> str:
    """SMALL_BOARD's first shot alone."""
    return board(project).split("  - {id: b,")[0]


def write_board(folder: Path, name: str, text: str) -> Path:
    """`text` written to `folder/name` (folders made): a storyboard file to render or load."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def shot(id: str, camera: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A shot as the file has it: a description and 2 s unless given."""
    data: dict[str, Any] = {"id": id, "description": fields.pop("description", f"shot {id}"),
                            "duration": fields.pop("duration", 2.0), **fields}
    if camera is not None:
        data["camera"] = camera
    return data


def storyboard(shots: list[dict[str, Any]], *, project: str = "test",
               characters: list[dict[str, Any]] | None = None, **fields: Any) -> Storyboard:
    """A validated Storyboard titled "t" from shot dicts (see `shot`)."""
    return Storyboard.model_validate({"title": "t", "project": project, "shots": shots,
                                      "characters": characters or [], **fields})
