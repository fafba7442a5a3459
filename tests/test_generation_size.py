"""Stills follow the storyboard's aspect in every profile: a 9:16 board makes portrait stills."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelflow.render.jobs import image_job
from reelflow.render.profiles import PROFILES
from reelflow.storyboard import load_storyboard

SEED = Path(__file__).resolve().parents[1] / "examples" / "su7-winter-spring.yaml"


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize(("aspect", "size"), [("9:16", (720, 1280)), ("1:1", (720, 720))])
def test_vertical_and_square_boards_generate_stills_of_their_own_shape(
    profile: str, aspect: str, size: tuple[int, int]
) -> None:
    board = load_storyboard(SEED).model_copy(
        update={"aspect": aspect, "width": size[0], "height": size[1]}
    )
    prof = PROFILES[profile]
    job = image_job(board, board.shots[0], prof)
    a, b = (int(v) for v in aspect.split(":"))
    assert abs(job.width / job.height - a / b) < 0.12 * a / b, (job.width, job.height)
    if aspect == "9:16":
        assert job.height > job.width
    multiple = 16 if job.model.family == "flux" else 8
    assert job.width % multiple == 0 and job.height % multiple == 0
    # same pixel budget as the landscape size the profile (or style) names
    budget = (prof.image_width or board.style.width) * (prof.image_height or board.style.height)
    assert abs(job.width * job.height - budget) < 0.15 * budget


def test_landscape_boards_keep_the_profile_size() -> None:
    board = load_storyboard(SEED)
    assert (image_job(board, board.shots[0], PROFILES["demo"]).width,) == (128,)
    assert image_job(board, board.shots[0], PROFILES["demo"]).height == 72
