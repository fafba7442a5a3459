"""Faults of a local run (`reelflow render` in the CLI's own process) on a stack of the test's own:
real `weed mini`, a real Prefect server on PostgreSQL (the stack's default), the real CLI as a
subprocess.

- secrets: after a full render (with an LLM call), no secret of the stack appears in plain text in
  its logs, the bucket, the runs' parameters, artifacts and logs, or the database (its files and
  a plain-text dump);
- the render SIGKILLed once a clip is done: the same command finishes, only what was in flight is
  redone, and the killed run is marked Crashed (heartbeats + the zombie automation);
- the Prefect server restarted mid-run: the render rides it out (Prefect's client retries);
- the server gone for good: one line naming the API URL, exit 1, no traceback, bounded time.

The restart tests stop the server, so they run last in this module.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from reelflow import devstack
from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings
from tests.support.boards import write_board
from tests.support.waiting import wait_until


def on_own_stack(test: Any) -> Any:
    """The marks of the tests that start their own stack and render through the CLI."""
    return pytest.mark.flows(pytest.mark.slow(test))


ROOT = Path(__file__).resolve().parents[1]
LLM_KEY = "sk-fault-scan-4f1c9e7a2b8d6035"

BOARD = """
title: "Fault film"
project: {project}
width: 128
height: 72
fps: {fps}
style:
  palette: ["#f5c518", "#e8f1f8"]
  visual_style: cinematic
  negative_prompt: blurry
  model: some-real-model
  base_seed: 11
shots:
{shots}
"""
SHOTS = [
    "  - {id: a, description: a yellow car on a snowy road, duration: 1.0,"
    " camera: {size: wide, angle: aerial, movement: push-in}}",
    "  - {id: b, description: the car at the summit, duration: 1.0,"
    " camera: {size: full, angle: high, movement: pan-right}}",
    "  - {id: c, description: the car in a tunnel, duration: 1.0,"
    " camera: {size: medium, angle: eye-level, movement: static}}",
    "  - {id: d, description: the car by the sea, duration: 6.0,"
    " camera: {size: wide, angle: low, movement: pan-left}}",
]


@dataclass
class Stack:
    config: devstack.StackConfig
    env: dict[str, str]  # for the CLI subprocess: the stack's home, nothing of the session's
    api_url: str
    auth: tuple[str, str]
    settings: S3Settings

    def api(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx.post(f"{self.api_url}/{path}", json=body or {}, auth=self.auth,
                              timeout=30)
        response.raise_for_status()
        return response.json()

    def flow_runs(self) -> list[dict[str, Any]]:
        return self.api("flow_runs/filter", {"sort": "START_TIME_ASC", "limit": 200})

    def task_runs(self, flow_run_id: str) -> list[dict[str, Any]]:
        return self.api("task_runs/filter",
                        {"flow_runs": {"id": {"any_": [flow_run_id]}}, "limit": 200})

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.settings)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("faultstack")
    config = devstack.StackConfig.with_free_ports(
        home / "reelflow", start_s3=True, start_redis=False, db="postgres", timeout=120)
    try:
        devstack.up(config)
        state = devstack.read_state(config.home)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PREFECT_", "REELFLOW_"))}
        env.update(
            PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            REELFLOW_HOME=str(config.home),
            REELFLOW_MODELS=str(home / "models"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_HOME=str(home / "client-prefect-home"),  # the CLI's own Prefect files
        )
        user, password = state["prefect"]["auth_string"].split(":", 1)
        yield Stack(config=config, env=env, api_url=state["prefect"]["api_url"],
                    auth=(user, password), settings=S3Settings.from_stack_file(config.stack_file))
    finally:
        devstack.down(config)


def _write_board(folder: Path, project: str, shots: list[str]) -> Path:
    fps = 24 if len(shots) == len(SHOTS) else 8  # the kill test's long shot: a slow clip
    return write_board(folder, f"{project}.yaml",
                       BOARD.format(project=project, shots="\n".join(shots), fps=fps))


def _render(stack: Stack, board: Path, log: Path, *extra: str,
            env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "render", str(board), "--profile", "test",
             "--auto-approve", *extra],
            cwd=board.parent, env=env or stack.env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _finish(process: subprocess.Popen[bytes], log: Path, timeout: float = 400) -> str:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        raise AssertionError(f"render still running after {timeout:.0f} s:\n"
                             + log.read_text(errors="replace")[-4000:]) from None
    return log.read_text(errors="replace")


def _wait_for(what: str, check: Any, timeout: float, log: Path | None = None) -> Any:
    """wait_until, with the render log's tail when it times out."""
    detail = (lambda: log.read_text(errors="replace")[-3000:]) if log else None
    return wait_until(what, check, timeout, detail=detail)


def _states(stack: Stack, flow_run_id: str, timeout: float = 60) -> dict[str, list[str]]:
    """Task run name -> state names (oldest first), once every task run is final."""
    deadline = time.monotonic() + timeout
    while True:
        runs = stack.task_runs(flow_run_id)
        final = all(r["state"] and r["state"]["type"] in
                    {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} for r in runs)
        if final or time.monotonic() > deadline:
            break
        time.sleep(1)
    states: dict[str, list[str]] = {}
    for run in sorted(runs, key=lambda r: r["expected_start_time"] or r["created"]):
        states.setdefault(run["name"], []).append(run["state"]["name"] if run["state"] else "?")
    return states


def _run_of(stack: Stack, project: str, after: set[str]) -> dict[str, Any]:
    runs = [r for r in stack.flow_runs()
            if r["id"] not in after and r["parameters"].get("storyboard", "").endswith(
                f"{project}.yaml")]
    assert len(runs) == 1, [(r["name"], r["parameters"]) for r in runs]
    return runs[0]


# -- 3. secrets ---------------------------------------------------------------------------------


@on_own_stack
def test_no_secret_in_plain_text_after_a_full_run(stack: Stack, tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
    from pydantic import SecretStr

    from blocks.llm_endpoint import LLMEndpoint
    from tests.support.chat_server import ChatServer, Reply, Request

    def answer(request: Request) -> Reply:  # the prompt translation's schema
        return Reply(content={"en": "a bright yellow sports car on a snowy mountain road"})

    state = devstack.read_state(stack.config.home)
    secrets = {
        "s3 secret key": stack.settings.secret_key.get_secret_value(),
        "llm api key": LLM_KEY,
        "results signing key": state["results_key"],
        "prefect basic-auth password": stack.auth[1],
    }
    board = _write_board(tmp_path / "film", "secret-film", [
        "  - {id: a, description: 一辆黄色跑车行驶在积雪的山路上, duration: 1.0,"
        " camera: {size: wide, angle: aerial, movement: push-in}}",
        SHOTS[1],
    ])
    log = tmp_path / "render.log"
    with ChatServer(responder=answer) as chat:
        with temporary_settings(updates={PREFECT_API_URL: stack.api_url,
                                         PREFECT_API_AUTH_STRING: ":".join(stack.auth)}):
            LLMEndpoint(base_url=chat.url, model="m", api_key=SecretStr(LLM_KEY),
                        timeout=30).save("fault-llm", overwrite=True)
        output = _finish(_render(stack, board, log, "--llm", "fault-llm"), log)
        assert "film:     s3://" in output, output[-3000:]
        assert chat.requests, "the LLM was never called: its key was not exercised"
        assert chat.requests[0].headers.get("Authorization") == f"Bearer {LLM_KEY}"

    haystacks: dict[str, bytes] = {"the CLI's output": output.encode()}
    for path in sorted(stack.config.log_dir.glob("*")):
        haystacks[f"log {path.name}"] = path.read_bytes()
    # every other file the stack or the CLI wrote (raw S3 volumes, Prefect homes, local result
    # storage), but the two 0600 files that exist to hold credentials
    credential_files = {stack.config.stack_file, stack.config.home / "results.key"}
    roots = [stack.config.home, Path(stack.env["PREFECT_HOME"])]
    for path in sorted(p for root in roots for p in root.rglob("*")):
        if path.is_file() and path not in credential_files:
            haystacks[f"file {path}"] = path.read_bytes()
    store = stack.store()
    buckets = [b.name for b in store.client.list_buckets()]
    objects = 0
    for bucket in buckets:
        for obj in store.client.list_objects(bucket, recursive=True):
            data = store.client.get_object(bucket, obj.object_name)
            try:
                haystacks[f"s3://{bucket}/{obj.object_name}"] = data.read()
            finally:
                data.close()
                data.release_conn()
            objects += 1
    assert objects > 10  # images, clips, sidecars, edits, manifest, result records
    assert any("/runs/" in name for name in haystacks)  # the manifest
    runs = stack.flow_runs()
    assert runs
    haystacks["flow run parameters"] = repr([r["parameters"] for r in runs]).encode()
    haystacks["artifacts"] = repr(stack.api("artifacts/filter", {"limit": 200})).encode()
    logs = stack.api("logs/filter", {"limit": 200})
    assert logs
    haystacks["run logs"] = repr(logs).encode()
    blocks = stack.api("block_documents/filter", {"include_secrets": False})
    haystacks["block documents"] = repr(blocks).encode()
    # the database's raw files are among the stack's files above; its rows, as plain text:
    dump = subprocess.run(
        [devstack.pg_bin("pg_dump"), "-h", str(stack.config.pg_data_dir), "-U", "postgres",
         "--data-only", "prefect"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    haystacks["database dump"] = dump.encode()
    assert "secret-film" in dump  # the dump holds the runs
    assert "fault-llm" in dump  # and the LLM block (its key encrypted, as Prefect stores it)

    # as sent on the wire too: the Authorization header's base64 of `user:password`
    secrets["prefect basic auth header"] = base64.b64encode(":".join(stack.auth).encode()).decode()
    # the scan finds what is there: the 0600 stack file holds the stack's own secrets
    stack_file = stack.config.stack_file.read_bytes()
    assert all(secrets[k].encode() in stack_file for k in
               ("s3 secret key", "results signing key", "prefect basic-auth password"))
    leaks = [f"{what} in {where}" for what, value in secrets.items()
             for where, data in haystacks.items() if value.encode() in data]
    assert not leaks, leaks


# -- 2. the render process SIGKILLed ------------------------------------------------------------


@on_own_stack
def test_sigkilled_render_redoes_at_most_the_shots_in_flight(
    stack: Stack, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from deployments.automations import ensure_zombie_automation

    grace = 40  # > the 30 s heartbeat (Prefect's minimum) the CLI sets for local runs
    with temporary_settings(updates={PREFECT_API_URL: stack.api_url,
                                     PREFECT_API_AUTH_STRING: ":".join(stack.auth)}):
        with get_client(sync_client=True) as client:
            ensure_zombie_automation(client, grace)

    project = "kill-film"
    board = _write_board(tmp_path / "film", project, SHOTS)
    store = stack.store()
    before = {r["id"] for r in stack.flow_runs()}
    log = tmp_path / "render.log"
    process = _render(stack, board, log)

    def clips_done() -> set[str]:  # logged once the task's state (and result record) is in
        return set(re.findall(r"Task run 'clip-(\w)' - Finished in state Completed",
                              log.read_text(errors="replace")))

    deadline = time.monotonic() + 300
    while not clips_done() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
    done = clips_done()
    assert done, log.read_text(errors="replace")[-3000:]
    assert len(done) < len(SHOTS), "every clip was done before the kill: nothing in flight"
    in_bucket = {k.split("/")[3] for k in store.list(f"projects/{project}/shots/")
                 if "/clips/" in k and k.endswith(".mp4")}
    assert in_bucket < set("abcd"), in_bucket  # the long shot's clip was still being made
    killed = _run_of(stack, project, before)
    assert killed["state_type"] == "RUNNING"

    output = _finish(_render(stack, board, tmp_path / "rerun.log"), tmp_path / "rerun.log")
    assert "film:     s3://" in output, output[-3000:]
    rerun = _run_of(stack, project, before | {killed["id"]})
    states = _states(stack, rerun["id"])
    shots = "abcd"
    assert all(states[f"variants-{s}"] == ["Cached"] for s in shots), states
    assert all(states[f"clip-{s}"] == ["Cached"] for s in done), (done, states)
    redone = [s for s in shots if states[f"clip-{s}"] != ["Cached"]]
    assert len(redone) <= len(SHOTS) - len(done), (done, states)

    # the killed run does not stay Running: no heartbeat for `grace` s -> Crashed
    crashed = _wait_for(
        "the killed run to be marked Crashed",
        lambda: next(r for r in stack.flow_runs() if r["id"] == killed["id"])["state_type"]
        == "CRASHED", grace + 90)
    assert crashed


# -- 1. the Prefect server restarted / gone ----------------------------------------------------


def _task_finished(log: Path) -> bool:
    """The run is under way: a task run has reported its final state to the API."""
    return re.search(r"Task run '[^']+' - Finished in state", log.read_text(errors="replace")) \
        is not None


def _api_answers(stack: Stack) -> bool:
    try:
        return httpx.get(f"{stack.api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _kill_prefect(stack: Stack) -> None:
    pid = devstack.running_pid(stack.config, devstack.PREFECT)
    assert pid is not None
    devstack.stop_pid(pid, first=signal.SIGKILL)


@on_own_stack
def test_render_rides_out_a_prefect_server_restart(stack: Stack, tmp_path: Path) -> None:
    project = "restart-film"
    board = _write_board(tmp_path / "film", project, SHOTS[:2])
    log = tmp_path / "render.log"
    before = {r["id"] for r in stack.flow_runs()}
    process = _render(stack, board, log)
    _wait_for("the run's first task", lambda: _task_finished(log), 240, log)
    _kill_prefect(stack)  # a crash: the database stays
    _wait_for("the API to stop answering", lambda: not _api_answers(stack), 30)
    devstack.up(stack.config)  # the same port; takes a few seconds to answer
    output = _finish(process, log)
    assert process.returncode == 0, output[-4000:]
    assert "Traceback" not in output
    film = next(line.split()[-1] for line in output.splitlines() if line.startswith("film:"))
    key = film.removeprefix(f"s3://{stack.settings.bucket}/")
    assert stack.store().complete(key)
    run = _run_of(stack, project, before)
    assert run["state_type"] == "COMPLETED"


@on_own_stack
def test_prefect_server_gone_for_good_is_one_line(stack: Stack, tmp_path: Path) -> None:
    """Beyond the client's retries: one line naming the API URL, exit 1, in bounded time. The
    bound is scaled down here (2 retries: 2 + 4 s per call; the CLI's default is 5: ~1 min)."""
    board = _write_board(tmp_path / "film", "gone-film", SHOTS[:2])
    log = tmp_path / "render.log"
    env = {**stack.env, "PREFECT_CLIENT_MAX_RETRIES": "2"}
    process = _render(stack, board, log, env=env)
    _wait_for("the run's first task", lambda: _task_finished(log), 240, log)
    _kill_prefect(stack)
    start = time.monotonic()
    output = _finish(process, log, timeout=240)
    took = time.monotonic() - start
    assert process.returncode == 1, output[-4000:]
    last = [line for line in output.splitlines() if line.strip()][-1]
    assert last.startswith("reelflow: the Prefect API at ") and stack.api_url in last, last
    assert "Traceback" not in output, output[-4000:]
    assert "Error logging to API" not in output
    assert "failed to process item" not in output  # no kilobyte event dumps on the console
    assert took < 120, f"took {took:.0f} s to give up"


@pytest.mark.unit
def test_local_runs_heartbeat_within_the_crash_grace(tmp_path: Path) -> None:
    """The crashed-run automation marks a run Crashed after `crashed_after_seconds` without a
    heartbeat. A `reelflow render` run must beat faster than that, or a healthy local run longer
    than the grace is marked Crashed while it works (Prefect's default beat is 180 s)."""
    from deployments.config import load_ops_config

    grace = load_ops_config().crashed_after_seconds
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "REELFLOW_"))}
    env.update(PYTHONPATH=str(ROOT), REELFLOW_HOME=str(tmp_path))
    code = ("from cli.stack import use_local_stack; use_local_stack(); "
            "from prefect.settings import get_current_settings as s; "
            "print(s().flows.heartbeat_frequency, s().client.max_retries, "
            "','.join(map(str, sorted(s().client.retry_extra_codes))))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    beat, retries, extra = int(out[-3]), int(out[-2]), out[-1].split(",")
    # the server answers 500 while its database restarts: retried like a server restart
    assert "500" in extra, extra
    assert beat * 2 <= grace, f"heartbeat every {beat} s, crash grace {grace} s"
    assert retries == int(devstack.CLIENT_RETRY_ENV["PREFECT_CLIENT_MAX_RETRIES"])
