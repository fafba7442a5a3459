"""The keys of the seed film's jobs, pinned: a refactor of the builders (or of how a run's facts
are resolved) must not change a spec hash, or the demo film changes and old caches stop hitting.

Computed on main (42aecae, after the long-prompts merge) before `reelflow/render/jobs.py` became a
package, with no weights in the models folder (so the keys name weights by path; with weights
present they carry their content hashes). A change that alters keys on purpose updates them and
says why in its commit.
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
        "s01-mountain-aerial": "271c828578dd4c2a-v0.png",
        "s02-rear-closeup": "2f8665c57b8d11a0-v0.png",
        "s03-winter-highway": "7c7e5ea0599f733a-v0.png",
        "s04-summit": "bb36c293ae3948ce-v0.png",
        "s06-city-street": "7e42deea809bebf5-v0.png",
        "s07-giant-poster": "5b0959fe89a16279-v0.png",
        "s08-airplane-banner": "17ed3e783597aa7c-v0.png",
        "s09-finale": "6780390e5d69df7c-v0.png",
    },
    "test": {
        "s01-mountain-aerial": "3cbe5193092616a7-v0.png",
        "s02-rear-closeup": "b9cd627b45fef229-v0.png",
        "s03-winter-highway": "20c02b9ced0ae612-v0.png",
        "s04-summit": "c667bf603cd348bd-v0.png",
        "s06-city-street": "6fd4887a96650984-v0.png",
        "s07-giant-poster": "be286ccb1b39b15f-v0.png",
        "s08-airplane-banner": "a464a6826a066468-v0.png",
        "s09-finale": "0bc690e1aff3bbb9-v0.png",
    },
}

#: still (hi-res, retouch), frame, clip, edit, version and cover names of the whole film
FILM_KEYS = {
    "demo": {
        "still:s01-mountain-aerial": "e1531436dea7db60.png",
        "clip:s01-mountain-aerial": "5fdbfb7b95c714d8.mp4",
        "still:s02-rear-closeup": "ebb9af6b25effc21.png",
        "clip:s02-rear-closeup": "e6f6356b72cfb739.mp4",
        "still:s03-winter-highway": "667e8982b467fb0a.png",
        "clip:s03-winter-highway": "4698156c63beca1a.mp4",
        "still:s04-summit": "fe49c1c57cf271ac.png",
        "clip:s04-summit": "aab6f533e648b7aa.mp4",
        "frame:s05-winter-to-spring:first_frame_key": "3721cfc336e4eb8f-frame.png",
        "frame:s05-winter-to-spring:last_frame_key": "13a511f2d2d877b9-frame.png",
        "clip:s05-winter-to-spring": "ef807986eb94026d.mp4",
        "still:s06-city-street": "3269f5a220b201ca.png",
        "clip:s06-city-street": "caa325307440a580.mp4",
        "still:s07-giant-poster": "bfa665097f075420-retouch.png",
        "clip:s07-giant-poster": "9cb36a6b011d6548.mp4",
        "still:s08-airplane-banner": "bf57c99126f90314-retouch.png",
        "clip:s08-airplane-banner": "04b761d0be402bef.mp4",
        "still:s09-finale": "a3dc43e25f4ffa31.png",
        "clip:s09-finale": "17c53ebff4c2c227.mp4",
        "edit": "2eda6cdb5a3b94df.mp4",
        "version": "2cfa85e223b7701a-16x9-h264.mp4",
        "cover": "16bdcd967793b999.png",
    },
    "test": {
        "still:s01-mountain-aerial": "02c3f1d9428258d3.png",
        "clip:s01-mountain-aerial": "46aa975bc24de282.mp4",
        "still:s02-rear-closeup": "7637f02afc1ca071.png",
        "clip:s02-rear-closeup": "547ca717e65e9f1e.mp4",
        "still:s03-winter-highway": "6d0b6b53823877b4.png",
        "clip:s03-winter-highway": "60633ec6926e0ce7.mp4",
        "still:s04-summit": "cab2ad6d5e1c9fb6.png",
        "clip:s04-summit": "cb25f7a50f999654.mp4",
        "frame:s05-winter-to-spring:first_frame_key": "b4eb492183833f36-frame.png",
        "frame:s05-winter-to-spring:last_frame_key": "02c87e4944f44612-frame.png",
        "clip:s05-winter-to-spring": "16f02bd12dede0be.mp4",
        "still:s06-city-street": "fa9731f8846f66a9.png",
        "clip:s06-city-street": "11209542c41a1c40.mp4",
        "still:s07-giant-poster": "6cf83c6edce61795-retouch.png",
        "clip:s07-giant-poster": "a4e45e87002abb75.mp4",
        "still:s08-airplane-banner": "9e811dbb60adac64-retouch.png",
        "clip:s08-airplane-banner": "4d94afeeba31b1a2.mp4",
        "still:s09-finale": "9a2c6b2480a26de6.png",
        "clip:s09-finale": "d98a052fd5b48957.mp4",
        "edit": "76ee909d62efe3dc.mp4",
        "version": "c0174f3619f1125f-16x9-h264.mp4",
        "cover": "a0e7219f30e6fd0b.png",
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
    version = version_job(board, edit, default_export(board), durations, render_profile.delivery)
    got["version"] = _name(version.output_key())  # demo: 1920x1080; test: the film's size
    got["cover"] = _name(cover_job(board, edit, version.export.aspect, version.size).output_key())
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
