"""Deployed reelflow, the way it is used day to day: `reelflow deploy` on a real Prefect server,
real process workers (`cpu`, `gpu`), the session's real S3 server, a webhook receiver.

A manual run suspends at each gate (the worker process exits), a notification names the run, its
gate and its UI link; approving resumes it from the top with every finished task Cached, and the
film lands in the bucket. An auto run of the same storyboard is all Cached; a fan-out run renders
its shots as render-shot runs on the gpu pool.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from reelflow.media.probe import probe
from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings
from tests.support.boards import board
from tests.support.deployed import (
    OpsStack,
    ops_stack,
    read_run,
    task_states,
    wait_for_gate,
    wait_for_state,
)
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.flows

BUCKET = "ops"
EXPENSIVE = ("variants", "hires", "clip", "frame", "assemble", "make", "version")


@pytest.fixture(scope="module")
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def ops(
    tmp_path_factory: pytest.TempPathFactory, s3_settings: S3Settings, hook: WebhookReceiver
) -> Iterator[OpsStack]:
    home = tmp_path_factory.mktemp("ops")
    with ops_stack(home, s3_settings, bucket=BUCKET, pools=("cpu", "gpu"),
                   notify_url=hook.url) as stack:
        yield stack


def _trigger(parameters: dict[str, Any]) -> UUID:
    from prefect.deployments import run_deployment

    return run_deployment("produce-video/produce-video", parameters=parameters, timeout=0).id


def _expensive(states: dict[str, list[str]]) -> dict[str, list[str]]:
    return {n: s for n, s in states.items() if n.split("-")[0] in EXPENSIVE}


def test_deploy_is_idempotent(ops: OpsStack) -> None:
    from prefect.client.orchestration import get_client

    from deployments.deploy import deploy

    first = ops.report
    assert first.work_pools == {"cpu": "created", "gpu": "created"}
    assert first.concurrency_limits == {"gpu": "created"}
    assert first.notifications == "created" and first.crashed_runs == "created"
    again = deploy()
    assert again.work_pools == {"cpu": "unchanged", "gpu": "unchanged"}
    assert again.concurrency_limits == {"gpu": "unchanged"}
    assert again.notifications == "updated" and again.crashed_runs == "updated"
    assert again.bundle == first.bundle  # same code, same bundle: nothing new uploaded
    assert again.deployments == first.deployments
    assert set(first.deployments) == {
        "produce-video/produce-video", "render-shot/render-shot", "batch-render/batch-render"
    }
    with get_client(sync_client=True) as client:
        batch = client.read_deployment_by_name("batch-render/batch-render")
        produce = client.read_deployment_by_name("produce-video/produce-video")
        shot = client.read_deployment_by_name("render-shot/render-shot")
        limit = client.read_global_concurrency_limit_by_name("gpu")
        automations = client.read_automations_by_name("reelflow-gate-waiting")
        pools = {p.name: p.type for p in client.read_work_pools()}
    assert [(s.slug, s.schedule.cron) for s in batch.schedules] == [("nightly", "0 2 * * *")]
    assert batch.parameters["approval"] == "auto"
    assert (produce.work_pool_name, shot.work_pool_name) == ("cpu", "gpu")
    # code to the workers: the bundle in the bucket, by key and sha256; no path of this machine
    # is baked in (the fallback checkout is the worker's REELFLOW_PROJECT_DIR)
    assert produce.pull_steps == shot.pull_steps == [{"deployments.pull.fetch_bundle": {
        "key": ops.report.bundle, "sha256": ops.report.bundle_sha256,
        "project_dir": "{{ $REELFLOW_PROJECT_DIR }}"}}]
    assert ops.report.bundle == f"code/{ops.report.bundle_sha256}.tar.gz"
    schema = produce.parameter_openapi_schema["properties"]
    assert {"storyboard", "approval", "profile", "fan_out"} <= set(schema)
    assert (limit.limit, limit.active) == (1, True)
    assert len(automations) == 1
    with get_client(sync_client=True) as client:
        [zombies] = client.read_automations_by_name("reelflow-crash-zombie-flow-runs")
    assert zombies.trigger.within.total_seconds() == 90 and zombies.trigger.posture == "Proactive"
    assert pools["cpu"] == pools["gpu"] == "process"


@pytest.fixture(scope="module")
def manual_run(ops: OpsStack, hook: WebhookReceiver) -> dict[str, Any]:
    """A manual produce-video run walked through its three gates, as a director would."""
    from flows.reviewer import approve_run

    run_id = _trigger({"storyboard": board("ops-film"), "approval": "manual", "profile": "test"})
    suspended = wait_for_gate(run_id, "storyboard-1", ops)
    message = hook.wait_for(lambda m: str(run_id) in m.get("body", ""), timeout=90)
    assert approve_run(str(run_id), reviewer="director") == "storyboard"
    wait_for_gate(run_id, "images-1", ops)
    assert approve_run(str(run_id), picks={"a": 1}, reviewer="director") == "images"
    wait_for_gate(run_id, "clips-1", ops)
    assert approve_run(str(run_id), reviewer="director") == "clips"
    final = wait_for_state(run_id, {"Completed"}, ops, timeout=300)
    return {"id": run_id, "suspended": suspended, "message": message, "final": final}


def test_manual_run_suspends_at_each_gate_and_resumes_cached(
    manual_run: dict[str, Any], ops: OpsStack, hook: WebhookReceiver, s3_settings: S3Settings,
    tmp_path: Path,
) -> None:
    run_id, run, message = manual_run["id"], manual_run["suspended"], manual_run["message"]
    assert run.state.name == "Suspended"  # deployed: the process exited, nothing holds a GPU
    assert "storyboard-1" in message["body"]
    assert f"{ops.ui_url}/runs/flow-run/{run_id}" in message["body"]
    assert message["subject"] == f"reelflow: {run.name} waits for approval"
    run = manual_run["final"]

    states = task_states(run_id)
    # every resume re-ran the flow from the top and found the finished work Cached
    review = sorted(s for n, v in states.items() if n.startswith("storyboard-review") for s in v)
    assert review == ["Cached", "Cached", "Cached", "Completed"], states  # 3 resumes
    assert states["variants-a"] == ["Completed", "Cached", "Cached"], states
    assert states["clip-a"] == ["Completed", "Cached"], states
    assert len([m for m in hook.messages if str(run_id) in m.get("body", "")]) >= 3

    store = ArtifactStore(s3_settings.with_bucket(BUCKET))
    result = run.state.result()
    film = probe(store.get_file(result.film_key, tmp_path / "film.mp4"))
    assert (film.width, film.height) == (160, 96)
    assert abs(film.duration - 2.0) <= 0.2  # the storyboard's two 1 s shots
    manifest = store.get_json(result.manifest_key)
    assert [a["reviewer"] for a in manifest["approvals"]] == ["director"] * 3
    assert manifest["chosen_images"]["a"] != manifest["variants"]["a"][0]  # pick 1 was used


def test_auto_run_of_the_same_storyboard_is_all_cached(
    ops: OpsStack, manual_run: dict[str, Any]
) -> None:
    run_id = _trigger({"storyboard": board("ops-film"), "approval": "auto", "profile": "test"})
    wait_for_state(run_id, {"Completed"}, ops, timeout=300)
    expensive = _expensive(task_states(run_id))
    assert len(expensive) >= 7, expensive
    # picks default to variant 0 here (the manual run picked 1 for shot a): only that differs
    not_cached = {n: s for n, s in expensive.items() if set(s) != {"Cached"}}
    assert set(not_cached) <= {"hires-a", "clip-a", "assemble-film", "make-cover"} | {
        n for n in expensive if n.startswith("version")}, not_cached
    assert expensive["variants-a"] == expensive["variants-b"] == ["Cached"]
    assert expensive["clip-b"] == ["Cached"]


def test_deployed_run_with_a_bad_parameter_fails_at_step_one(ops: OpsStack) -> None:
    """A run started from the UI (a deployment run on a worker, no CLI in between) is checked
    by the flow's first step: the CLI's one line, and no task ran."""
    from reelflow.errors import InputError
    from reelflow.render.inputs import check_inputs

    with pytest.raises(InputError) as cli:
        check_inputs(board("ops-film"), profile="test", quality_threshold=5)
    run_id = _trigger({"storyboard": board("ops-film"), "approval": "auto", "profile": "test",
                       "quality_threshold": 5})
    final = wait_for_state(run_id, {"Failed"}, ops, timeout=240)
    assert str(cli.value) == "quality_threshold 5: must be in 0..1"
    assert str(cli.value) in (final.state.message or ""), final.state.message
    assert task_states(run_id) == {}  # nothing ran, not even a publish


def test_fan_out_renders_shots_as_render_shot_runs_on_the_gpu_pool(ops: OpsStack) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    started = time.time()
    one_shot = board("ops-fan").split("  - {id: b,")[0]  # one shot keeps the test short
    run_id = _trigger({"storyboard": one_shot, "approval": "auto", "profile": "test",
                       "fan_out": True})
    wait_for_state(run_id, {"Completed"}, ops, timeout=400)
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["render-shot"]))
        )
    children = [c for c in children if c.created and c.created.timestamp() >= started - 5]
    # one run for the shot's variants, one for its hi-res fix + clip (after the images gate)
    assert len(children) == 2, [(c.name, c.state_name) for c in children]
    assert {c.state_name for c in children} == {"Completed"}
    assert all(c.parent_task_run_id for c in children)  # shown as subflows of the film's run
    shot_states = sorted((task_states(c.id) for c in children), key=len)
    assert set(shot_states[0]) >= {"variants-a"} and "clip-a" not in shot_states[0]
    assert {"hires-a", "clip-a"} <= set(shot_states[1])
    assert shot_states[1]["clip-a"] == ["Completed"]
    # the parent's own steps then found the shot runs' work
    parent = task_states(run_id)
    for name in ("variants-a", "hires-a", "clip-a"):
        assert parent[name] == ["Cached"], (name, parent)
    assert read_run(run_id).state.is_completed()


def test_fan_out_with_a_retouched_shot_renders_each_clip_once(ops: OpsStack) -> None:
    """The render-shot run takes the shot's still plan (hi-res fix, then the inpaint the shot
    asks for) and renders the clip from the retouched still: the parent's clip is Cached, so no
    clip is rendered twice (before, the fan-out ignored the retouch and the parent re-rendered)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    started = time.time()
    one_shot = board("ops-fan-retouch").split("  - {id: b,")[0].replace(
        "camera: {size: wide, angle: aerial, movement: push-in}}",
        "camera: {size: wide, angle: aerial, movement: push-in},\n"
        "     inpaint: [{box: [0.1, 0.1, 0.5, 0.5], prompt: a red poster}]}",
    )
    assert "inpaint" in one_shot
    run_id = _trigger({"storyboard": one_shot, "approval": "auto", "profile": "test",
                       "fan_out": True})
    wait_for_state(run_id, {"Completed"}, ops, timeout=400)
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["render-shot"]))
        )
    children = [c for c in children if c.created and c.created.timestamp() >= started - 5]
    states = [task_states(c.id) for c in children] + [task_states(run_id)]
    rendered = [s for run in states for s in run.get("clip-a", []) if s == "Completed"]
    assert len(rendered) == 1, states  # one render of the clip, in the render-shot run
    shot_run = next(s for s in states[:-1] if "clip-a" in s)
    assert shot_run["retouch-a"] == ["Completed"] and shot_run["clip-a"] == ["Completed"]
    parent = states[-1]
    for name in ("variants-a", "hires-a", "retouch-a", "clip-a"):
        assert parent[name] == ["Cached"], (name, parent)
