"""The keys of the seed film's jobs, pinned: a refactor of the builders (or of how a run's facts
are resolved) must not change a spec hash, or the demo film changes and old caches stop hitting.

Computed on main before `reelflow/render/jobs.py` became a package, with no weights in the models
folder (so the keys name weights by path; with weights present they carry their content hashes).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reelflow.render.jobs import (
    clip_job,
    cover_job,
    cut_plan,
    default_export,
    edit_job,
    frame_job,
    frame_refs,
    plan_render,
    resolve_run_facts,
    still_plan,
    version_job,
)
from reelflow.render.profiles import get_profile
from reelflow.script.camera import propose_camera
from reelflow.storyboard import load_storyboard

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "su7-winter-spring.yaml"

#: shot -> the first variant's object name, from plan_render
PLAN_KEYS = {
    "demo": {
        "s01-mountain-aerial": "82d3b926d1869f7d-v0.png",
        "s02-rear-closeup": "ac1d49342d41908f-v0.png",
        "s03-winter-highway": "5e17c869d5a13af0-v0.png",
        "s04-summit": "9e3c310f8647986f-v0.png",
        "s06-city-street": "85f5ace2db9a7d39-v0.png",
        "s07-giant-poster": "4d3a0332e48a16f5-v0.png",
        "s08-airplane-banner": "17ed3e783597aa7c-v0.png",
        "s09-finale": "f09c4735b837912d-v0.png",
    },
    "test": {
        "s01-mountain-aerial": "afa674a5b6ab29d7-v0.png",
        "s02-rear-closeup": "89d1cc9603c9b5da-v0.png",
        "s03-winter-highway": "9456ffa4c378e125-v0.png",
        "s04-summit": "a458b54c756a5a9e-v0.png",
        "s06-city-street": "182f7e27c6dc50af-v0.png",
        "s07-giant-poster": "7b3e673f080faec0-v0.png",
        "s08-airplane-banner": "a464a6826a066468-v0.png",
        "s09-finale": "2d45d2c141dc365f-v0.png",
    },
}

#: still (hi-res, retouch), frame, clip, edit, version and cover names of the whole film
FILM_KEYS = {
    "demo": {
        "still:s01-mountain-aerial": "e951dda44b9a4846.png",
        "clip:s01-mountain-aerial": "5d8b8ee48fbd6511.mp4",
        "still:s02-rear-closeup": "5b000765bfb1da71.png",
        "clip:s02-rear-closeup": "122e60c146d89d14.mp4",
        "still:s03-winter-highway": "9c4515e02834e656.png",
        "clip:s03-winter-highway": "e444cca227706ffe.mp4",
        "still:s04-summit": "c91cdf7548d0939c.png",
        "clip:s04-summit": "148972d755bed4f1.mp4",
        "frame:s05-winter-to-spring:first_frame_key": "fb71551e0eb1185f-frame.png",
        "frame:s05-winter-to-spring:last_frame_key": "73604c2273d07cb9-frame.png",
        "clip:s05-winter-to-spring": "96e5ff30733207f1.mp4",
        "still:s06-city-street": "f2c16b31f407a712.png",
        "clip:s06-city-street": "4db31b0b45f8a3c4.mp4",
        "still:s07-giant-poster": "fb606948252f48cd-retouch.png",
        "clip:s07-giant-poster": "05197a3858a10524.mp4",
        "still:s08-airplane-banner": "bf57c99126f90314-retouch.png",
        "clip:s08-airplane-banner": "04b761d0be402bef.mp4",
        "still:s09-finale": "d844f1a3d5f23e6b.png",
        "clip:s09-finale": "7e4b48a084b38107.mp4",
        "edit": "38f20054a300aade.mp4",
        "version": "b5cd2dbff645ba15-16x9-h264.mp4",
        "cover": "c50b123ee977c8c2.png",
    },
    "test": {
        "still:s01-mountain-aerial": "d149d225467bf190.png",
        "clip:s01-mountain-aerial": "b48a80315627cc27.mp4",
        "still:s02-rear-closeup": "8557af0a2da35d6c.png",
        "clip:s02-rear-closeup": "39904a60d1228c18.mp4",
        "still:s03-winter-highway": "fc1621361deb6c0a.png",
        "clip:s03-winter-highway": "4e45e7f7888e1518.mp4",
        "still:s04-summit": "0f2783af9cfb2cf3.png",
        "clip:s04-summit": "c20e106203dd5de2.mp4",
        "frame:s05-winter-to-spring:first_frame_key": "2f2d0be57cce17c5-frame.png",
        "frame:s05-winter-to-spring:last_frame_key": "b9bb9edb06cd3a9d-frame.png",
        "clip:s05-winter-to-spring": "08a3985e87a38f41.mp4",
        "still:s06-city-street": "7e34ca7e185fe927.png",
        "clip:s06-city-street": "07a4078c415c2395.mp4",
        "still:s07-giant-poster": "974939be1e14091d-retouch.png",
        "clip:s07-giant-poster": "8ef4be5d6326d0c4.mp4",
        "still:s08-airplane-banner": "9e811dbb60adac64-retouch.png",
        "clip:s08-airplane-banner": "4d94afeeba31b1a2.mp4",
        "still:s09-finale": "bfec763054e9ad25.png",
        "clip:s09-finale": "682a2beb95dc3515.mp4",
        "edit": "ca1f2761babf6b76.mp4",
        "version": "4da609a5a40772a3-16x9-h264.mp4",
        "cover": "11c2dcac4ee8723e.png",
    },
}


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("REELFLOW_MODELS", str(tmp_path / "models"))


def _name(key: str) -> str:
    return key.rsplit("/", 1)[1]


@pytest.mark.parametrize("profile", ["demo", "test"])
@pytest.mark.parametrize("with_facts", [False, True])
def test_plan_render_keys_are_pinned(no_weights, profile, with_facts):
    board = load_storyboard(EXAMPLE)
    render_profile = get_profile(profile)
    base_dir = EXAMPLE.parent
    facts = resolve_run_facts(board, render_profile, base_dir) if with_facts else None
    plan = plan_render(board, render_profile, base_dir=base_dir, facts=facts)
    assert {job.shot: _name(job.output_key()) for job in plan.images} == PLAN_KEYS[profile]
    # the flow proposes camera language first: this board names every camera, so no change
    camera = plan_render(propose_camera(board), render_profile, base_dir=base_dir, facts=facts)
    assert [job.output_key() for job in camera.images] == [job.output_key() for job in plan.images]


@pytest.mark.parametrize("profile", ["demo", "test"])
def test_film_keys_are_pinned(no_weights, profile):
    board = propose_camera(load_storyboard(EXAMPLE))
    render_profile = get_profile(profile)
    base_dir = EXAMPLE.parent
    facts = resolve_run_facts(board, render_profile, base_dir)
    jobs = {job.shot: job for job in plan_render(board, render_profile, facts=facts).images}
    got: dict[str, str] = {}
    clips: dict[str, str] = {}
    for shot in board.shots:
        still = None
        if shot.id in jobs:
            job = jobs[shot.id]
            still = still_plan(job, shot, job.variant_keys()[0], 0, render_profile).final_key()
            got[f"still:{shot.id}"] = _name(still)
        frames = {}
        for field, ref in frame_refs(shot):
            frame = frame_job(board, shot, ref, render_profile, clips[ref.shot], facts=facts)
            frames[field] = frame.output_key()
            got[f"frame:{shot.id}:{field}"] = _name(frames[field])
        clip = clip_job(board, shot, render_profile, still_key=still, facts=facts, **frames)
        clips[shot.id] = clip.output_key()
        got[f"clip:{shot.id}"] = _name(clips[shot.id])
    edit = edit_job(board, clips, cut_plan(board, "storyboard"), render_profile.crf).output_key()
    got["edit"] = _name(edit)
    durations = [shot.duration for shot in board.shots]
    got["version"] = _name(version_job(board, edit, default_export(board), durations).output_key())
    got["cover"] = _name(cover_job(board, edit).output_key())
    assert got == FILM_KEYS[profile]


def test_facts_resolve_each_weight_once(no_weights, tmp_path):
    """The run's facts hash a LoRA file once, however many shots use it."""
    board = load_storyboard(EXAMPLE)
    facts = resolve_run_facts(board, get_profile("test"), EXAMPLE.parent)
    plan = plan_render(board, get_profile("test"), facts=facts)
    used = {lora.path for job in plan.images for lora in job.loras}
    assert used and set(facts.hashes) == {facts.model.source, *used}
    with pytest.raises(ValueError, match="another profile"):
        plan_render(board, get_profile("demo"), facts=facts)
