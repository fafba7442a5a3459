"""The speed cache's guard on the image models (real S3, the tiny SD model on CPU; nothing
mocked). The SD UNet has no cache hooks in diffusers; Pyramid Attention Broadcast wraps its
self-attention layers. The run's first image is rendered with and without the cache: the PSNR
decides, or on a shot with a library character the identity score; both figures go into the
images' lineage, and the key holds only the cache once kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_identity import BOARD, SU7, png

from reelflow.gpu.speed import psnr
from reelflow.render import images, models, review
from reelflow.render.common import load_image
from reelflow.render.jobs import ImageJob, image_job, lora_names
from reelflow.render.profiles import get_profile
from reelflow.store.artifacts import ArtifactStore
from reelflow.storyboard import parse_storyboard
from reelflow.storyboard.characters import add_character, resolve_cast


@pytest.fixture
def jobs(store: ArtifactStore, tmp_path_factory: pytest.TempPathFactory,
         monkeypatch: pytest.MonkeyPatch):
    """shot -> a job factory taking the speed options (3 steps: PAB skips the middle one)."""
    monkeypatch.setenv("REELFLOW_MODELS", str(Path(str(tmp_path_factory.getbasetemp()))
                                              / "speed-models"))
    add_character(store, SU7, {"front.png": png((250, 210, 0))})
    board, _ = resolve_cast(parse_storyboard(BOARD), store)
    models.prepare_demo_models(lora_names(board))

    def make(shot: str, **speed) -> ImageJob:
        profile = get_profile("test").model_copy(update={"steps": 3, "image_speed": speed})
        return image_job(board, board.shot(shot), profile)

    return make


def test_the_guard_keeps_pab_on_the_unet_and_records_its_psnr(
    store: ArtifactStore, jobs
) -> None:
    job = jobs("city", cache="pab", guard_psnr=30.0)
    guard = images.guard_cache(store, job)
    assert guard.measure == "psnr" and not guard.reason
    assert 30.0 <= guard.psnr < 100.0 and guard.kept  # attention skipped: close, not identical
    guarded = images.with_guard(job, guard)
    assert guarded.spec_hash() != job.spec_hash()  # cached pixels get their own keys
    keys = images.render_variants(store, guarded)
    speed = store.lineage(keys[0]).extra["speed"]
    assert speed["cache"] == "pab" and speed["guard"]["psnr"] == pytest.approx(guard.psnr)
    assert speed["guard"]["threshold"] == 30.0
    # the stored variant is the cached render, the plain one is the guard's other picture
    plain = images.variant_images(store, job.model_copy(update={"variants": 1}), cached=False)
    stored = np.asarray(load_image(store, keys[0]).convert("RGB"))
    assert psnr(stored, np.asarray(plain[0][1])) == pytest.approx(guard.psnr)
    # the figures are not in the key: another measurement with the same decision, same keys
    again = guard.model_copy(update={"seconds_plain": guard.seconds_plain + 1})
    assert images.with_guard(job, again).spec_hash() == guarded.spec_hash()


def test_an_unreachable_threshold_turns_the_cache_off_and_the_review_says_so(
    store: ArtifactStore, jobs
) -> None:
    job = jobs("city", cache="pab", guard_psnr=1000.0)
    guard = images.guard_cache(store, job)
    assert not guard.kept and guard.psnr < 1000.0
    guarded = images.with_guard(job, guard)
    plain = jobs("city")  # no speed option at all: the same pixels, the same keys
    assert guarded.spec_hash() == plain.spec_hash()
    keys = images.render_variants(store, guarded)
    speed = store.lineage(keys[0]).extra["speed"]  # (3 steps: no other test stored them)
    assert speed["cache"] is None and speed["cache_asked"] == "pab"
    assert speed["guard"]["kept"] is False and speed["guard"]["psnr"] == pytest.approx(guard.psnr)
    markdown = review.images_markdown(
        store, "cast", {"city": keys}, {}, {}, lambda key, label: "", speed=guard.line())
    assert f"PSNR {guard.psnr:.1f} dB" in markdown and "the PSNR decides" in markdown
    assert "threshold 1000 dB" in markdown and "turned OFF for the run" in markdown


def test_first_block_cache_does_not_apply_to_the_unet_and_says_why(
    store: ArtifactStore, jobs
) -> None:
    guard = images.guard_cache(store, jobs("city", cache="first-block"))
    assert not guard.kept
    assert "UNet2DConditionModel has no hooks for the first-block cache" in guard.reason
    assert "cache turned OFF for the run" in guard.line()


def test_a_character_shot_is_guarded_by_its_identity_score(
    store: ArtifactStore, jobs
) -> None:
    """(The flow test, tests/test_identity_flow.py, has the options' own threshold keep the
    cache, and its figures in each image's lineage and the run's artifact.)"""
    guard = images.guard_cache(store, jobs("snow", cache="pab", guard_psnr=0.0),
                               identity_threshold=1.01)
    # the identity score decides, not the PSNR (at 0 dB it would keep the cache); without a
    # threshold of its own the run's identity threshold applies, here an unreachable one
    assert guard.measure == "identity" and guard.identity_threshold == 1.01
    assert not guard.kept and guard.psnr >= 0.0
    assert 0.0 <= guard.identity_cached <= 1.0 and 0.0 <= guard.identity_plain <= 1.0
    assert "identity score decides" in guard.line() and "turned OFF" in guard.line()
    assert f"identity {guard.identity_cached:.2f} cached" in guard.line()
