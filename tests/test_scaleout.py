"""Beyond one machine, proven on one host: one Prefect server on PostgreSQL (+ Redis) started by
`reelflow up`'s code, the session's S3, and two GPU "machines": worker processes with their own
empty working directory, their own REELFLOW_HOME and models folder, their own (fake)
CUDA_VISIBLE_DEVICES, and no checkout: the package is installed into a private folder (a wheel
install) and the code of every run comes from the bundle `reelflow deploy` put in the bucket.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings
from tests.support.deployed import ROOT, OpsStack, Worker, ops_stack, start_worker, wait_for_state
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

BUCKET = "scale"
GPU_TASKS = ("variants", "hires", "clip")
MACHINES = {"machine-a": "0", "machine-b": "1"}

BOARD = """
title: "Scale test"
project: PROJECT
width: 128
height: 72
fps: 6
style:
  palette: ["#f5c518", "#e8f1f8"]
  visual_style: cinematic
  model: some-real-model
  base_seed: 5
shots:
  - {id: a, description: a yellow car on a snowy road, duration: 0.5,
     camera: {size: wide, angle: aerial, movement: push-in}}
  - {id: b, description: the car at the summit, duration: 0.5,
     camera: {size: full, angle: high, movement: pan-right}}
"""


def board(project: str) -> str:
    return BOARD.replace("PROJECT", project)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package installed (no editable link, no checkout on the path) into a private folder."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "reelflow"  # the build leaves build/ behind
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".reelflow", "build", "out", "__pycache__", "*.egg-info", "docs"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-compile", "--target", str(target), str(source)],
        check=True, timeout=300, capture_output=True,
    )
    assert (target / "deployments" / "pull.py").is_file()
    return target


@pytest.fixture(scope="module")
def scale(tmp_path_factory: pytest.TempPathFactory, s3_settings: S3Settings,
          installed: Path) -> Iterator[OpsStack]:
    from prefect.client.orchestration import get_client

    from deployments.config import ConcurrencyLimitSpec
    from deployments.infra import ensure_concurrency_limit

    home = tmp_path_factory.mktemp("scale")
    # Crashed-run detection: Prefect's minimum heartbeat (30 s) and a short grace for the test.
    previous = os.environ.get("REELFLOW_CRASHED_AFTER_SECONDS")
    os.environ["REELFLOW_CRASHED_AFTER_SECONDS"] = "50"
    try:
        with ops_stack(home, s3_settings, bucket=BUCKET, pools=()) as ops:
            assert ops.report.bundle.startswith("code/") and len(ops.report.bundle_sha256) == 64
            with get_client(sync_client=True) as client:  # one slot per GPU, one GPU a machine
                ensure_concurrency_limit(client, ConcurrencyLimitSpec(name="gpu", limit=2))
            ops.workers.append(_machine(ops, installed, "orchestrator", pool="cpu", gpu=None))
            for name, gpu in MACHINES.items():
                ops.workers.append(_machine(ops, installed, name, pool="gpu", gpu=gpu))
            try:
                yield ops
            finally:
                for worker in ops.workers:
                    worker.stop()
    finally:
        if previous is None:
            os.environ.pop("REELFLOW_CRASHED_AFTER_SECONDS", None)
        else:
            os.environ["REELFLOW_CRASHED_AFTER_SECONDS"] = previous


def _machine(ops: OpsStack, installed: Path, name: str, *, pool: str,
             gpu: str | None) -> Worker:
    """A worker as on another machine: an empty directory, no checkout, its own state."""
    root = ops.home / name
    (root / "home").mkdir(parents=True)
    extra = {
        "PYTHONPATH": str(installed),
        "REELFLOW_HOME": str(root / "home"),
        "REELFLOW_MODELS": str(root / "models"),
    }
    if gpu is not None:
        extra["CUDA_VISIBLE_DEVICES"] = gpu
    return start_worker(pool, ops.env, root, name=name, project_dir=None, extra=extra,
                        limit=1 if gpu is not None else None)


def _trigger(parameters: dict[str, Any]) -> UUID:
    from prefect.deployments import run_deployment

    return run_deployment("produce-video/produce-video", parameters=parameters, timeout=0).id


def _children(parent: UUID) -> list[Any]:
    """render-shot runs started by `parent` (their parent task run lives in the parent run)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
    )

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["render-shot"])))
        parent_tasks = {t.id for t in client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[parent])),
            task_run_filter=TaskRunFilter())}
    return [r for r in runs if r.parent_task_run_id in parent_tasks]


def _task_runs(flow_run_ids: list[UUID]) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids)), limit=200)


def _gpu_sections(children: list[Any]) -> list[tuple[str, datetime, datetime, str]]:
    """(device, start, end, run) per render-shot run: its GPU tasks' span on its worker's GPU."""
    out = []
    for child in children:
        worker = (child.labels or {}).get("prefect.worker.name")
        tasks = [t for t in _task_runs([child.id])
                 if t.name.split("-")[0] in GPU_TASKS and t.start_time and t.end_time]
        if worker and tasks:
            device = f"{worker}/cuda:{MACHINES.get(worker, '?')}"
            out.append((device, min(t.start_time for t in tasks),
                        max(t.end_time for t in tasks), child.name))
    return out


def _rendered(run_ids: list[UUID]) -> dict[str, int]:
    """How many times each generation task really ran (Completed, not Cached)."""
    counts: dict[str, int] = {}
    for t in _task_runs(run_ids):
        if t.name.split("-")[0] in GPU_TASKS and t.state and t.state.name == "Completed":
            counts[t.name] = counts.get(t.name, 0) + 1
    return counts


def _film_sha(run_id: UUID, s3: S3Settings) -> str:
    from tests.support.deployed import read_run

    result = read_run(run_id).state.result()
    data = ArtifactStore(s3.with_bucket(BUCKET)).get_bytes(result.film_key)
    return hashlib.sha256(data).hexdigest()


def test_fan_out_spreads_over_two_machines_without_a_checkout(
    scale: OpsStack, s3_settings: S3Settings
) -> None:
    run_id = _trigger({"storyboard": board("scale-two"), "approval": "auto", "profile": "test",
                       "fan_out": True})
    wait_for_state(run_id, {"Completed"}, scale, timeout=900)
    children = _children(run_id)
    assert children and all(c.state_name == "Completed" for c in children), \
        [(c.name, c.state_name) for c in children]

    by_worker: dict[str, int] = {}
    for child in children:
        by_worker[(child.labels or {}).get("prefect.worker.name", "?")] = \
            by_worker.get((child.labels or {}).get("prefect.worker.name", "?"), 0) + 1
    assert set(by_worker) == set(MACHINES), by_worker  # both machines rendered shots

    # No two GPU sections of one device overlapped.
    sections = sorted(_gpu_sections(children))
    assert len(sections) == len(children)
    pairs = zip(sections, sections[1:], strict=False)
    for (dev1, _s1, end1, run1), (dev2, start2, _e2, run2) in pairs:
        if dev1 == dev2:
            assert end1 <= start2, f"{run1} and {run2} overlap on {dev1}"

    # Each shot's images and clip were rendered exactly once, in all runs together.
    counts = _rendered([run_id, *(c.id for c in children)])
    assert counts == {f"{kind}-{s}": 1 for kind in GPU_TASKS for s in "ab"}, counts

    # The code came from the bundle, unpacked in each machine's own REELFLOW_HOME.
    sha = scale.report.bundle_sha256
    for name in MACHINES:
        assert (scale.home / name / "home" / "code" / sha / "flows" / "render_shot.py").is_file()
        assert not (scale.home / name / "flows").exists()  # nothing in the working directory
    assert "code: bundle" in _flow_logs([c.id for c in children])

    # The same film as one machine makes: a run without fan-out renders everything itself.
    single = _trigger({"storyboard": board("scale-two"), "approval": "auto", "profile": "test"})
    wait_for_state(single, {"Completed"}, scale, timeout=600)
    assert _film_sha(single, s3_settings) == _film_sha(run_id, s3_settings)
    assert _rendered([single]) == {}  # ...and finds every shot already rendered


def _flow_logs(run_ids: list[UUID]) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=run_ids)))
    return "\n".join(log.message for log in logs)


def _wait_for_running_child(parent: UUID, ops: OpsStack, timeout: float = 600) -> Any:
    def running() -> Any:  # a child whose GPU work has begun
        return next((child for child in _children(parent)
                     if child.state_name == "Running" and _task_runs([child.id])), None)

    return wait_until("a render-shot run to start its work", running, timeout, detail=ops.logs)


def _kill_machine(worker: Worker) -> None:
    """SIGKILL the worker and every process under it (flow runs may sit in other sessions)."""
    import psutil

    root = psutil.Process(worker.process.pid)
    procs = [*root.children(recursive=True), root]
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(procs, timeout=10)
    worker.process.wait(10)


def test_a_killed_worker_s_shot_is_rendered_by_the_other(
    scale: OpsStack, s3_settings: S3Settings
) -> None:
    run_id = _trigger({"storyboard": board("scale-kill"), "approval": "auto", "profile": "test",
                       "fan_out": True})
    victim_run = _wait_for_running_child(run_id, scale)
    victim_name = victim_run.labels["prefect.worker.name"]
    victim = next(w for w in scale.workers if w.name == victim_name)
    _kill_machine(victim)  # the machine is gone, mid-shot: its worker and the run's process

    wait_for_state(run_id, {"Completed"}, scale, timeout=900)
    children = _children(run_id)
    crashed = [c for c in children if c.state_name == "Crashed"]
    assert [c.id for c in crashed] == [victim_run.id], [(c.name, c.state_name) for c in children]
    [retry] = [c for c in children if c.parameters == victim_run.parameters
               and c.id != victim_run.id]
    assert retry.state_name == "Completed"
    assert retry.labels["prefect.worker.name"] != victim_name  # the other machine took it over
    logs = _flow_logs([run_id])
    assert "crashed" in logs.lower() and "re-submitted" in logs, logs[-2000:]

    # Nothing half-written: every object under the project verifies against its sidecar.
    store = ArtifactStore(s3_settings.with_bucket(BUCKET))
    objects = [k for k in store.list("projects/scale-kill/") if not k.endswith(".json")]
    assert objects
    for key in objects:
        store.get_bytes(key)  # raises IntegrityError on a partial or orphaned object


def test_two_runs_of_one_storyboard_at_once_render_each_shot_once(scale: OpsStack) -> None:
    """Both start together on the orchestrator; the Redis-locked SERIALIZABLE transactions make
    the second wait for each shot and find the first's result."""
    assert scale.env.get("REELFLOW_REDIS_URL", "").startswith("redis://")
    params = {"storyboard": board("scale-twice"), "approval": "auto", "profile": "test"}
    runs = [_trigger(params), _trigger(params)]
    for run_id in runs:
        wait_for_state(run_id, {"Completed"}, scale, timeout=900)
    counts = _rendered(runs)
    assert counts == {f"{kind}-{s}": 1 for kind in GPU_TASKS for s in "ab"}, counts
    cached = [t for t in _task_runs(runs)
              if t.name.split("-")[0] in GPU_TASKS and t.state_name == "Cached"]
    assert len(cached) == 6  # the other run's six came back Cached
