"""Characters from the library in every render, and identity checks (real S3, tiny SD model)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from reelflow.errors import InputError
from reelflow.render import images, models
from reelflow.render.identity import (
    clip_drift,
    identity_failures,
    identity_markdown,
    pick_by_identity,
    score_identity,
)
from reelflow.render.jobs import image_job, lora_names
from reelflow.render.profiles import get_profile
from reelflow.store.artifacts import ArtifactStore
from reelflow.storyboard import Character, LoraRef, parse_storyboard
from reelflow.storyboard.characters import add_character, resolve_cast
from reelflow.storyboard.prompts import compose_prompt

BOARD = """
title: 库里的角色
project: cast
aspect: "9:16"
width: 72
height: 128
characters:
  - name: su7
shots:
  - id: snow
    description: 雪山公路上的跑车
    duration: 1
    characters: [su7]
  - id: city
    description: an empty city street at dawn
    duration: 1
"""

SU7 = Character(
    name="su7",
    description="bright yellow sports car with black stripes",
    trigger_words=["su7ultra"],
    lora=LoraRef(name="su7-body", path="loras/su7.safetensors", weight=0.8, role="subject"),
)


def png(colour: tuple[int, int, int], stripe: tuple[int, int, int] = (0, 0, 0)) -> bytes:
    image = Image.new("RGB", (64, 40), colour)
    ImageDraw.Draw(image).rectangle((20, 0, 28, 40), fill=stripe)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def tiny_models(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(str(tmp_path_factory.getbasetemp())) / "identity-models"
    monkeypatch.setenv("REELFLOW_MODELS", str(root))


def test_missing_library_character_is_one_line_input_error(store: ArtifactStore) -> None:
    board = parse_storyboard(BOARD)
    with pytest.raises(InputError) as info:
        resolve_cast(board, store)
    message = str(info.value)
    assert "su7" in message and "library" in message and "\n" not in message
    assert info.value.exit_code == 2


def test_library_character_in_prompt_jobs_and_versions(store: ArtifactStore) -> None:
    add_character(store, SU7, {"front.png": png((250, 210, 0))})
    board, versions = resolve_cast(parse_storyboard(BOARD), store)
    su7 = board.character("su7")
    assert su7.description == SU7.description and su7.version == versions["su7"]
    prompt = compose_prompt(board, board.shot("snow"), family="sd15").prompt
    assert "su7ultra" in prompt and "yellow sports car" in prompt

    profile = get_profile("test")
    snow, city = (image_job(board, board.shot(s), profile) for s in ("snow", "city"))
    assert snow.characters == {"su7": versions["su7"]}
    assert snow.character_refs == {"su7": ["characters/su7/front.png"]}
    assert [lora.name for lora in snow.loras] == ["su7-body"]
    assert city.characters == {} and city.character_refs == {}

    # new pixels under the same reference name: a new version, new jobs for exactly its shots
    add_character(store, SU7, {"front.png": png((250, 210, 0), stripe=(255, 255, 255))})
    board2, versions2 = resolve_cast(parse_storyboard(BOARD), store)
    assert versions2["su7"] != versions["su7"]
    snow2, city2 = (image_job(board2, board2.shot(s), profile) for s in ("snow", "city"))
    assert snow2.spec_hash() != snow.spec_hash()
    assert city2.spec_hash() == city.spec_hash()
    # and the same library state gives the same version (a resumed run finds its cache)
    assert resolve_cast(parse_storyboard(BOARD), store)[1] == versions2


def test_rendered_variants_carry_character_and_identity_in_lineage(
    store: ArtifactStore, tiny_models: None, tmp_path: Path
) -> None:
    add_character(store, SU7, {"front.png": png((250, 210, 0))})
    board, versions = resolve_cast(parse_storyboard(BOARD), store)
    profile = get_profile("test")
    models.prepare_demo_models(lora_names(board))
    job = image_job(board, board.shot("snow"), profile)
    keys = images.render_variants(store, job)
    for key in keys:
        lineage = store.lineage(key)
        assert lineage.spec["characters"] == {"su7": versions["su7"]}
        assert lineage.extra["characters"] == {"su7": versions["su7"]}
        identity = lineage.extra["identity"]
        assert identity["method"] == "perceptual" and 0.0 <= identity["score"] <= 1.0

    jobs = {"snow": job}
    report = score_identity(store, jobs, {"snow": keys})
    assert report.method == "perceptual" and len(report.scores["snow"]) == len(keys)
    assert report.scores["snow"] == [store.lineage(k).extra["identity"]["score"] for k in keys]

    # computed from the pixels (no lineage entry): the same numbers
    bare = {}
    for index, key in enumerate(keys):
        bare_key = f"projects/cast/shots/snow/images/{'cd' * 8}-v{index}.png"
        store.put_bytes(bare_key, store.get_bytes(key), "image/png")
        bare[index] = bare_key
    recomputed = score_identity(store, jobs, {"snow": list(bare.values())})
    assert recomputed.scores["snow"] == pytest.approx(report.scores["snow"], abs=1e-3)

    # the gate: an unreachable threshold fails the shot with a reason; a reachable one passes
    best = max(report.scores["snow"])
    failures = identity_failures(report, best + 0.01)
    assert list(failures) == ["snow"]
    assert "snow" in failures["snow"] and "perceptual" in failures["snow"]
    assert identity_failures(report, best) == {}
    assert "under threshold" in identity_markdown(report, best + 0.01)
    quality = {"snow": [1.0] + [0.0] * (len(keys) - 1), "city": [0.2, 0.9]}
    picks = pick_by_identity(quality, report, best)
    assert report.scores["snow"][picks["snow"]] >= best and picks["city"] == 1


def test_identity_separates_the_character_from_another_subject(store: ArtifactStore) -> None:
    add_character(store, SU7, {"front.png": png((250, 210, 0))})
    board, _ = resolve_cast(parse_storyboard(BOARD), store)
    job = image_job(board, board.shot("snow"), get_profile("test"))
    same = "projects/cast/shots/snow/images/" + "ab" * 8 + "-v0.png"
    other = "projects/cast/shots/snow/images/" + "ab" * 8 + "-v1.png"
    store.put_bytes(same, png((245, 205, 10)), "image/png")
    noise = np.random.default_rng(0).integers(0, 255, (40, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    store.put_bytes(other, buf.getvalue(), "image/png")
    report = score_identity(store, {"snow": job}, {"snow": [same, other]})
    look_alike, stranger = report.scores["snow"]
    assert look_alike > 0.8 > 0.4 > stranger
    assert pick_by_identity({"snow": [0.1, 0.9]}, report, 0.5) == {"snow": 0}


def test_clip_drift_flags_frames_that_leave_the_still(
    store: ArtifactStore, tmp_path: Path
) -> None:
    from reelflow.media.frames import VideoWriter

    still = np.zeros((40, 64, 3), np.uint8)
    still[:, :, 0] = 230
    still[:, 20:28] = 0
    store.put_bytes("projects/cast/shots/snow/images/" + "ef" * 8 + ".png",
                    png((230, 0, 0)), "image/png")  # fmt: skip
    path = tmp_path / "clip.mp4"
    rng = np.random.default_rng(1)
    with VideoWriter(path, width=64, height=40, fps=12) as writer:
        for index in range(24):  # on-model for the first half, noise after it
            writer.write(still if index < 12 else rng.integers(0, 255, still.shape, np.uint8))
    clip_key = store.put_file("projects/cast/shots/snow/clips/" + "ef" * 8 + ".mp4", path,
                              "video/mp4")  # fmt: skip
    drift = clip_drift(store, "snow", clip_key, "projects/cast/shots/snow/images/" + "ef" * 8
                       + ".png")  # fmt: skip
    assert drift.scores["first"] > 0.7
    assert drift.flagged == ["middle", "last"] and drift.drifts


def test_character_sheet_from_the_cli(store: ArtifactStore, tmp_path: Path) -> None:
    """References and the chosen frames of the character's shots, side by side with scores."""
    import json

    from test_characters_cli import cli_env, reelflow

    add_character(store, SU7, {"front.png": png((250, 210, 0))})
    _, versions = resolve_cast(parse_storyboard(BOARD), store)
    chosen = "projects/cast/shots/snow/images/" + "12" * 8 + ".png"
    store.put_bytes(chosen, png((245, 205, 10)), "image/png",
                    {"kind": "image", "spec": {"image": {"characters": versions}}})  # fmt: skip
    other = "projects/cast/shots/city/images/" + "34" * 8 + ".png"
    store.put_bytes(other, png((10, 10, 10)), "image/png", {"kind": "image", "spec": {}})
    manifest = {"project": "cast", "characters": versions,
                "chosen_images": {"snow": chosen, "city": other}}  # fmt: skip
    store.put_bytes("projects/cast/runs/run-1/manifest.json", json.dumps(manifest).encode(),
                    "application/json")  # fmt: skip

    env = cli_env(store.settings, tmp_path / "home")
    done = reelflow(env, "characters", "show", "su7", "--sheet", str(tmp_path / "s.png"),
                    cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "# sheet: ref front.png" in done.stdout
    line = next(x for x in done.stdout.splitlines() if x.startswith("# sheet: cast/snow"))
    assert float(line.split()[-1]) > 0.8  # the yellow car looks like its reference
    assert "cast/city" not in done.stdout  # the city shot does not have su7
    sheet = Image.open(tmp_path / "s.png")
    assert sheet.width > 2 * 192  # two images side by side

    missing = reelflow(env, "characters", "show", "ghost", "--sheet", cwd=tmp_path)
    assert missing.returncode != 0 and "ghost" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
