"""Storyboard-driven retouching: a reference image to keep a composition, inpaint, outpaint."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from reelflow.render import edit, images, models
from reelflow.render.jobs import image_job, retouch_job
from reelflow.render.profiles import get_profile
from reelflow.store.artifacts import ArtifactStore
from reelflow.storyboard import StoryboardError, parse_storyboard

BOARD = """
title: Retouch
project: retouch
style: {model: m}
shots:
  - id: poster
    description: a building with a giant poster
    duration: 1
    reference: {image: ref.png, strength: 0.5}
    inpaint: [{box: [0.25, 0.25, 0.75, 0.75], prompt: a bright yellow poster}]
    outpaint: {target_aspect: 2.0}
"""


def _image(store: ArtifactStore, key: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(store.get_bytes(key))).convert("RGB"), np.int16)


def test_bad_retouch_fields_name_the_field() -> None:
    with pytest.raises(StoryboardError, match=r"shots\[0\].inpaint\[0\].box: must be x0 < x1"):
        parse_storyboard(BOARD.replace("[0.25, 0.25, 0.75, 0.75]", "[0.8, 0.2, 0.1, 0.9]"))
    with pytest.raises(StoryboardError, match="give either target_aspect or direction"):
        parse_storyboard(
            BOARD.replace("{target_aspect: 2.0}", "{direction: left, target_aspect: 2}")
        )


def test_reference_inpaint_and_outpaint(
    film_env: dict[str, str], store: ArtifactStore, tmp_path: Path
) -> None:
    profile = get_profile("test")
    models.prepare_demo_models([])
    board = parse_storyboard(BOARD)
    shot = board.shots[0]

    reference = Image.new("RGB", (64, 40), (20, 20, 160))
    ImageDraw.Draw(reference).rectangle((8, 8, 30, 30), fill=(240, 220, 20))
    reference.save(tmp_path / "ref.png")
    ref_key = edit.store_input(store, board.project, "ref.png", tmp_path)

    plain = image_job(board, shot, profile)
    guided = plain.model_copy(update={"reference": ref_key, "reference_strength": 0.5})
    plain_keys = images.render_variants(store, plain)
    guided_keys = images.render_variants(store, guided)
    target = np.asarray(reference, np.int16)
    for plain_key, guided_key in zip(plain_keys, guided_keys, strict=True):
        closer = np.abs(_image(store, guided_key) - target).mean()
        assert closer < np.abs(_image(store, plain_key) - target).mean()
        assert store.lineage(guided_key).parents == [ref_key]

    touch = retouch_job(guided, shot, guided_keys[0])
    assert touch is not None
    key = images.retouch(store, touch)
    result = Image.open(io.BytesIO(store.get_bytes(key)))
    assert abs(result.width / result.height - 2.0) < 0.1  # outpainted to 2:1
    assert result.height == 40
    lineage = store.lineage(key)
    assert lineage.parents == [guided_keys[0]] and lineage.extra["step"] == "retouch"
    assert images.retouch(store, touch) == key  # idempotent: found, not redone
