"""Library characters and identity checks through produce-video (real Prefect, S3, diffusers).

A storyboard names `su7` only; the run takes its description, trigger words, LoRA and
references from the library. Changing the references re-renders exactly the shot it is in;
`quality-gate` stops at the images gate when no variant reaches the identity threshold.

The image model block asks for a speed cache (Pyramid Attention Broadcast on the tiny UNet):
the run's first image shows su7, so the guard decides on its identity score.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from PIL import Image, ImageDraw

from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings
from reelflow.storyboard import Character, LoraRef
from reelflow.storyboard.characters import add_character
from tests.support.deployed import task_states
from tests.support.waiting import wait_for_pending, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

STORYBOARD = """
title: 角色库 · Cast
project: cast-film
width: 128
height: 72
fps: 8
style: {model: some-real-model, base_seed: 3}
characters:
  - name: su7
shots:
  - {id: snow, description: the car on a snowy road, duration: 1.0, characters: [su7]}
  - {id: city, description: an empty city street, duration: 1.0,
     transition_in: crossfade, transition_duration: 0.25}
"""

SU7 = Character(
    name="su7",
    description="bright yellow sports car with black stripes",
    trigger_words=["su7ultra"],
    lora=LoraRef(name="su7-body", path="loras/su7.safetensors", weight=0.8, role="subject"),
)


def png(stripe: tuple[int, int, int]) -> bytes:
    image = Image.new("RGB", (64, 40), (250, 210, 0))
    ImageDraw.Draw(image).rectangle((20, 0, 28, 40), fill=stripe)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _states(flow_run_id: UUID) -> dict[str, list[str]]:
    return task_states(flow_run_id)


@pytest.fixture(scope="module")
def film_store(film_env: dict[str, str], s3_settings: S3Settings) -> ArtifactStore:
    store = ArtifactStore(s3_settings.with_bucket("film"))
    store.ensure_bucket()
    add_character(store, SU7, {"front.png": png((0, 0, 0))})
    return store


#: the tiny model as the `test` profile has it, 3 steps (PAB skips the middle one), a cache
IMAGE_MODEL = "tiny-speed"


@pytest.fixture(scope="module")
def first_run(film_store: ArtifactStore) -> Any:
    from blocks.models import ImageModel
    from flows.produce_video import produce_video

    ImageModel(source="tiny", family="sd15", dtype="float32", steps=3,
               speed={"cache": "pab", "guard_identity": 0.05}).save(IMAGE_MODEL, overwrite=True)
    state = produce_video(storyboard=STORYBOARD, approval="auto", profile="test",
                          image_model=IMAGE_MODEL, return_state=True)  # fmt: skip
    assert state.is_completed(), state.message
    return state.result()


def test_library_character_renders_into_prompt_lineage_and_manifest(
    first_run: Any, film_store: ArtifactStore
) -> None:
    manifest = json.loads(film_store.get_bytes(first_run.manifest_key))
    version = manifest["characters"]["su7"]
    assert len(version) == 12
    variant = film_store.lineage(manifest["variants"]["snow"][0])
    assert "su7ultra" in variant.spec["prompt"] and "yellow sports car" in variant.spec["prompt"]
    assert [lora["name"] for lora in variant.spec["loras"]] == ["su7-body"]
    assert variant.spec["characters"] == {"su7": version}
    assert variant.spec["character_refs"] == {"su7": ["characters/su7/front.png"]}
    assert variant.extra["identity"]["method"] == "perceptual"
    city = film_store.lineage(manifest["variants"]["city"][0])
    assert city.spec["characters"] == {} and "identity" not in city.extra
    assert manifest["identity"]["method"] == "perceptual"
    assert list(manifest["identity"]["scores"]) == ["snow"]
    assert isinstance(manifest["trims"], dict)

    # the speed cache: guarded once, on the run's first image (su7's shot: identity decides)
    for lineage in (variant, city):
        guard = lineage.extra["speed"]["guard"]
        assert guard["shot"] == "snow" and guard["measure"] == "identity"
        assert guard["identity_threshold"] == 0.05 and guard["kept"] is True
        assert 0.05 <= guard["identity_cached"] <= 1.0 and 0.0 <= guard["identity_plain"] <= 1.0
        assert 0.0 < guard["psnr"] < 100.0  # PAB skipped attention: close, not identical
        assert lineage.extra["speed"]["cache"] == "pab"
    from prefect.artifacts import Artifact

    line = str(Artifact.get("image-speed-guard").data)
    assert "cache guard on shot snow (library character: the identity score decides)" in line
    assert "threshold 0.05" in line and "cache kept for the run" in line


def test_changed_references_rerender_exactly_their_shots(
    first_run: Any, film_store: ArtifactStore
) -> None:
    from flows.produce_video import produce_video

    add_character(film_store, SU7, {"front.png": png((255, 255, 255))})
    try:
        state = produce_video(
            storyboard=STORYBOARD, approval="auto", profile="test", image_model=IMAGE_MODEL,
            return_state=True,
        )
        assert state.is_completed(), state.message
    finally:
        add_character(film_store, SU7, {"front.png": png((0, 0, 0))})
    states = _states(state.state_details.flow_run_id)
    assert states["variants-snow"] == ["Completed"]
    assert states["clip-snow"] == ["Completed"]
    assert states["variants-city"] == ["Cached"]
    assert states["clip-city"] == ["Cached"]
    manifest = json.loads(film_store.get_bytes(state.result().manifest_key))
    assert manifest["characters"]["su7"] != json.loads(
        film_store.get_bytes(first_run.manifest_key)
    )["characters"]["su7"]


def test_quality_gate_stops_on_identity_and_passes_a_reachable_threshold(
    first_run: Any, film_store: ArtifactStore
) -> None:
    from test_produce_video import _run_logs

    from flows.produce_video import produce_video
    from flows.reviewer import approve_run

    # reachable: passes unattended, nothing new rendered
    state = produce_video(storyboard=STORYBOARD, approval="quality-gate", profile="test",
                          image_model=IMAGE_MODEL, identity_threshold=0.0,
                          return_state=True)  # fmt: skip
    assert state.is_completed(), state.message
    assert _states(state.state_details.flow_run_id)["variants-snow"] == ["Cached"]

    # unreachable: one retry with the next seeds, then the run waits at the images gate
    result: dict[str, Any] = {}

    def run() -> None:
        result["state"] = produce_video(
            storyboard=STORYBOARD, approval="quality-gate", profile="test",
            image_model=IMAGE_MODEL, identity_threshold=1.0, identity_retries=1,
            return_state=True,
        )  # fmt: skip

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    run_id = wait_for_pending("images-1", 300)["id"]  # the run stopped at the images gate
    # the gate's warning is logged just before the pause; Prefect ships logs in batches
    logs = wait_until(
        "the identity warning in the run's logs",
        lambda: (text := "\n".join(_run_logs(UUID(run_id))))
        and "identity under threshold: snow: best identity score" in text and text,
        timeout=30,
    )
    assert "(su7; perceptual)" in logs and "retry 1 with new seeds" in logs
    assert approve_run(run_id, reviewer="director") == "images"
    thread.join(timeout=300)
    assert result["state"].is_completed(), result["state"].message
    assert _states(UUID(run_id))["variants-snow"] == ["Cached", "Completed"]


def test_cli_render_with_an_unknown_character_is_one_line(
    film_env: dict[str, str], tmp_path: Path
) -> None:
    import os

    board = tmp_path / "ghost.yaml"
    board.write_text(STORYBOARD.replace("name: su7", "name: ghost").replace("[su7]", "[ghost]"))
    done = subprocess.run(
        [sys.executable, "-m", "cli", "render", str(board), "--profile", "test",
         "--approval", "auto"],
        cwd=ROOT, env={**os.environ, **film_env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "ghost" in last and "library" in last and "Traceback" not in done.stderr
