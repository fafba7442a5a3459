"""A cached step is trusted only while its outputs are in the bucket, and `verify_project`
finds what the bucket lost or damaged.

Buckets lose objects (lifecycle rules, cleanup scripts, a restore from an older backup) while
Prefect's result records, which only name the keys, survive. Here a real previz film is rendered
on the test S3 and Prefect servers; then a sidecar, an object, and finally several things at
once are taken away or damaged, and the next run has to make exactly those again.
"""

from __future__ import annotations

import json
import time
from typing import Any
from uuid import UUID

import pytest

from reelflow.errors import InputError
from reelflow.store.artifacts import ArtifactStore
from reelflow.store.keys import sidecar_key
from reelflow.store.settings import S3Settings
from reelflow.store.verify import list_projects, verify_project

PROJECT = "lost-objects"
STORYBOARD = f"""
title: Lost objects
project: {PROJECT}
width: 320
height: 180
fps: 12
style:
  palette: ["#203040", "#e0c070"]
  visual_style: cinematic
shots:
  - {{id: a, description: a lighthouse at dusk, duration: 1.0,
     camera: {{size: wide, angle: eye-level, movement: push-in}}}}
  - {{id: b, description: waves on the rocks, duration: 1.0,
     camera: {{size: close-up, angle: low, movement: pan-right}},
     transition_in: crossfade, transition_duration: 0.25}}
"""


def _render() -> tuple[Any, dict[str, list[str]]]:
    """One run of the film; returns its result and task run name -> states."""
    from flows.produce_video import produce_video

    state = produce_video(storyboard=STORYBOARD, approval="auto", profile="previz",
                          return_state=True)
    assert state.is_completed(), state.message
    return state.result(), _task_states(state.state_details.flow_run_id)


def _task_states(flow_run_id: UUID, timeout: float = 60) -> dict[str, list[str]]:
    """Task run name -> final states (they reach the server a moment after the flow returns)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        if all(r.state and r.state.is_final() for r in runs) or time.monotonic() > deadline:
            break
        time.sleep(1)
    states: dict[str, list[str]] = {}
    for run in runs:
        states.setdefault(run.name, []).append(run.state.name if run.state else "?")
    return states


@pytest.fixture(scope="module")
def film(film_env: dict[str, str], s3_settings: S3Settings) -> dict[str, Any]:
    """The first run's manifest (the film rendered once, everything in the bucket)."""
    result, _ = _render()
    store = ArtifactStore(s3_settings.with_bucket("film"))
    return json.loads(store.get_bytes(result.manifest_key))


@pytest.fixture
def film_store(s3_settings: S3Settings) -> ArtifactStore:
    return ArtifactStore(s3_settings.with_bucket("film"))


def test_a_sound_project_verifies_clean(film: dict[str, Any], film_store: ArtifactStore) -> None:
    report = verify_project(film_store, PROJECT)
    assert report.ok, report.summary()
    assert PROJECT in list_projects(film_store)
    with pytest.raises(InputError, match="invalid project"):
        verify_project(film_store, "../other")
    assert report.checked >= 10  # storyboard, variants, hi-res, clips, parts, edit, cover, ...


def test_a_lost_sidecar_is_restored_by_the_next_run(
    film: dict[str, Any], film_store: ArtifactStore
) -> None:
    clip = film["clips"]["a"]
    before = film_store.lineage(clip)
    film_store.client.remove_object(film_store.bucket, sidecar_key(clip))
    assert film_store.missing([clip]) == [clip]

    _, states = _render()

    assert states["clip-a"] == ["Completed"], states  # ran again, not Cached
    assert states["clip-b"] == ["Cached"], states  # the rest of the film is untouched
    assert film_store.missing([clip]) == []
    after = film_store.lineage(clip)
    assert after.spec_hash == before.spec_hash and after.parents == before.parents
    film_store.get_bytes(clip)  # the bytes verify against the restored sidecar

    _, states = _render()  # and the repaired record is a cache hit again
    assert states["clip-a"] == ["Cached"], states


def test_a_lost_object_is_restored_by_the_next_run(
    film: dict[str, Any], film_store: ArtifactStore
) -> None:
    variant = film["variants"]["b"][1]  # the variant not chosen: nothing else needs it
    film_store.client.remove_object(film_store.bucket, variant)
    assert not film_store.exists(variant) and film_store.exists(sidecar_key(variant))

    _, states = _render()

    assert states["variants-b"] == ["Completed"], states
    assert states["variants-a"] == ["Cached"], states
    assert film_store.missing([variant]) == []
    assert film_store.get_bytes(variant)[:8] == b"\x89PNG\r\n\x1a\n"


def _verify_command(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    """`reelflow verify ARGS` in this process (the bucket from the environment film_env set)."""
    from cli.main import main

    capsys.readouterr()
    code = main(["verify", *args])
    return code, capsys.readouterr().out.splitlines()


def test_verify_reports_damage_and_repair_lets_the_next_run_remake_it(
    film: dict[str, Any], film_store: ArtifactStore, capsys: pytest.CaptureFixture[str]
) -> None:
    store = film_store
    cover = film["cover_key"]
    clip = film["clips"]["b"]
    still = film["chosen_images"]["a"]  # a parent of clip a
    store.client.remove_object(store.bucket, sidecar_key(cover))  # object without sidecar
    store.put_bytes(clip, b"not the clip", "video/mp4", sidecar=False)  # bytes damaged
    store.client.remove_object(store.bucket, still)  # sidecar without object

    report = verify_project(store, PROJECT)
    code, printed = _verify_command(capsys, PROJECT)  # what a user runs: the same report
    assert code == 1 and printed == report.summary().splitlines()

    found = {(p.issue, p.key) for p in report.problems}
    assert ("no-sidecar", cover) in found, report.summary()
    assert ("size", clip) in found, report.summary()
    assert ("no-object", sidecar_key(still)) in found, report.summary()
    assert ("missing-parent", film["clips"]["a"]) in found, report.summary()
    # every problem says what remakes it: the run that made it, and the command
    named = {p.key: p.remade_by for p in report.problems}
    assert f"s3://film/{film['storyboard_key']}" in named[cover]
    assert "re-running run " in named[clip] and "--profile previz" in named[clip]
    assert not any(p.removed for p in report.problems)  # without repair nothing is touched
    assert f"{len(report.problems)} problems" in report.summary().splitlines()[-1]

    code, printed = _verify_command(capsys, PROJECT, "--repair")
    # removed: the damaged objects and the orphaned sidecar; left (exit 1): clip a, sound but
    # missing its parent, until the next run remakes the still
    assert code == 1 and printed[-1].endswith("3 removed: re-run to remake them"), printed
    assert not store.exists(cover) and not store.exists(clip)
    assert sidecar_key(still) not in store.list(sidecar_key(still))
    assert store.exists(film["clips"]["a"])  # a child of a lost parent is kept: it is sound

    _render()

    after = verify_project(store, PROJECT)
    assert after.ok, after.summary()
    assert after.summary().endswith("0 problems")
    assert _verify_command(capsys, PROJECT) == (0, [after.summary()])
    assert store.missing([cover, clip, still]) == []
