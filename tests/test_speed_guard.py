"""The speed cache's quality guard on a tiny LTX-Video (two transformer blocks: diffusers' First
Block Cache needs a head and a tail) on CPU, with a real S3 bucket; nothing mocked.

The run's first clip is rendered with and without the cache; the PSNR goes into the clips'
lineage, and a threshold no render can reach (1000 dB) turns the cache off and the review says
so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reelflow.gpu.speed import SpeedOptions, psnr
from reelflow.render import clips, review, weights
from reelflow.render.common import png_bytes
from reelflow.render.jobs import clip_job
from reelflow.render.profiles import get_profile
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore, Lineage
from reelflow.storyboard import parse_storyboard

BOARD = """
title: Speed
project: speed-guard
style: {model: m}
shots:
  - id: pan
    description: a harbour at dawn
    duration: 1
    camera: {movement: pan-left}
"""


@pytest.fixture(scope="module")
def ltx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from reelflow.motion.tiny import build_tiny_ltx

    return build_tiny_ltx(tmp_path_factory.mktemp("speed") / "ltx-2-blocks", num_layers=2)


def _job(store: ArtifactStore, ltx: Path, monkeypatch: pytest.MonkeyPatch, guard_psnr: float):
    from PIL import Image

    monkeypatch.setenv("REELFLOW_WEIGHT_HASHES", str(ltx.parent / "weight-hashes.json"))
    monkeypatch.setattr(weights, "_memo", None)
    board = parse_storyboard(BOARD)
    still = keys.image_key("speed-guard", "pan", "0123456789abcdef-v0")
    pixels = (np.random.default_rng(0).random((40, 64, 3)) * 255).astype(np.uint8)
    store.put_bytes(still, png_bytes(Image.fromarray(pixels)), "image/png",
                    Lineage(kind="image", spec={}, spec_hash="0123456789abcdef"))
    profile = get_profile("test").model_copy(update={
        "video_backend": "ltx", "video_model": str(ltx),
        "video_options": {"steps": 2, "max_frames": 9, "max_area": 64 * 32,
                          "preset": "ultrafast", "device": "cpu",
                          "speed": {"cache": "first-block", "cache_threshold": 10.0,
                                    "guard_psnr": guard_psnr, "compile": True}},
    })
    return clip_job(board, board.shots[0], profile, still_key=still)


def test_the_guard_keeps_the_cache_and_records_its_psnr(
    store: ArtifactStore, ltx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _job(store, ltx, monkeypatch, guard_psnr=20.0)
    guard = clips.guard_cache(store, job)
    assert 20.0 <= guard.psnr < 100.0  # the cache skipped blocks: close, not identical
    assert guard.kept
    guarded = clips.with_guard(job, guard)
    assert SpeedOptions.model_validate(guarded.backend_options["speed"]).cache_active()
    assert guarded.spec_hash() != job.spec_hash()  # cached pixels get their own key
    key = clips.render_clip(store, guarded)
    speed = store.lineage(key).extra["speed"]
    assert speed["cache"] == "first-block"
    assert speed["guard"]["psnr"] == pytest.approx(guard.psnr)
    assert speed["guard"]["threshold"] == 20.0
    assert speed["compile"].startswith("skipped on cpu")
    # the stored clip is the cached render: its frames are the guard's cached ones
    with clips.scratch() as tmp:
        plain, _, _ = clips.clip_file(store, job, tmp, cache=False)
        from reelflow.media.frames import read_frames

        stored = np.stack(list(read_frames(store.get_file(key, tmp / "stored.mp4"))))
        plain_frames = np.stack(list(read_frames(plain)))
    assert psnr(stored, plain_frames) == pytest.approx(guard.psnr)


def test_an_unreachable_threshold_turns_the_cache_off_and_the_review_says_so(
    store: ArtifactStore, ltx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _job(store, ltx, monkeypatch, guard_psnr=1000.0)
    guard = clips.guard_cache(store, job)
    assert not guard.kept and guard.psnr < 1000.0
    guarded = clips.with_guard(job, guard)
    key = clips.render_clip(store, guarded)
    speed = store.lineage(key).extra["speed"]
    assert speed["cache"] is None and speed["cache_asked"] == "first-block"
    assert speed["guard"]["kept"] is False
    assert speed["guard"]["psnr"] == pytest.approx(guard.psnr)
    markdown = review.clips_markdown(
        store, "speed-guard", {"pan": key}, {}, {}, "ltx", lambda key, label: "",
        speed=guard.line(),
    )
    assert f"PSNR {guard.psnr:.1f} dB" in markdown
    assert "threshold 1000 dB" in markdown and "turned OFF for the run" in markdown


def test_an_unknown_speed_option_is_one_line_before_anything_renders(tmp_path: Path) -> None:
    from reelflow.errors import InputError
    from reelflow.render.inputs import check_models

    board = parse_storyboard(BOARD)
    profile = get_profile("test").model_copy(update={
        "video_options": {"speed": {"cache": "teacache"}}})
    with pytest.raises(InputError, match=r"^video options speed\.cache: Input should be"):
        check_models(board, profile, tmp_path)


def test_a_shot_with_a_library_character_is_decided_by_its_identity_score(
    store: ArtifactStore, ltx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    job = _job(store, ltx, monkeypatch, guard_psnr=1000.0)  # the PSNR alone: turned off
    reference = "characters/hero/front.png"
    pixels = (np.random.default_rng(1).random((40, 64, 3)) * 255).astype(np.uint8)
    store.put_bytes(reference, png_bytes(Image.fromarray(pixels)), "image/png",
                    Lineage(kind="character-reference", spec={}, spec_hash="0" * 16))
    guard = clips.guard_cache(store, job, {"hero": [reference]}, identity_threshold=0.0)
    assert guard.measure == "identity" and guard.identity_threshold == 0.0
    assert guard.kept and guard.psnr < 1000.0  # the identity score decided, not the PSNR
    assert 0.0 <= guard.identity_cached <= 1.0 and 0.0 <= guard.identity_plain <= 1.0
    assert "identity score decides" in guard.line()
