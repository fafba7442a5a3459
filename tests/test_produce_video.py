"""The film end to end, on a real Prefect server, a real S3 server, diffusers and ffmpeg.

A four-shot storyboard (with a winter -> spring first/last-frame transition built from the
previous clip's last frame, restyled through ControlNet) renders with the `test` profile. The
second run finds everything Cached; a paused run is approved from the CLI's code path, and
rejecting one shot's images regenerates that shot only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from reelflow.media.probe import probe
from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings
from tests.support.deployed import task_states
from tests.support.waiting import wait_for_pending

ROOT = Path(__file__).resolve().parents[1]

STORYBOARD = """
title: "测试 · Test film"
project: tiny-film
width: 320
height: 180
fps: 12
style:
  palette: ["#f5c518", "#e8f1f8"]
  visual_style: cinematic
  quality_tags: [detailed]
  negative_prompt: blurry
  model: some-real-model
  loras: [{name: detail, path: loras/detail.safetensors, weight: 0.5}]
  base_seed: 7
characters:
  - name: car
    description: a yellow sports car
    trigger_words: [yellowcar]
    lora: {name: car-body, path: loras/car.safetensors, weight: 0.8, role: subject}
shots:
  - {id: a, description: car on a snowy road, duration: 1.0, characters: [car],
     camera: {size: wide, angle: aerial, movement: push-in}}
  - {id: b, description: rear of the car, duration: 1.0, characters: [car],
     camera: {size: close-up, angle: low, movement: pan-right},
     transition_in: crossfade, transition_duration: 0.25}
  - {id: c, description: the car at the summit, duration: 1.0,
     camera: {size: full, angle: high, movement: static}}
  - id: d
    description: winter turns to spring
    duration: 1.0
    transition_in: crossfade
    transition_duration: 0.25
    first_frame: {shot: c, frame: last}
    last_frame:
      shot: c
      frame: last
      restyle: spring, green grass, blossoms
      loras: [{name: spring, path: loras/spring.safetensors, weight: 0.8, role: scene}]
    caption: {zh: 冬去春来, en: Winter to spring}
"""


@pytest.fixture(scope="module")
def first_run(film_env: dict[str, str]) -> tuple[Any, Any]:
    from flows.produce_video import produce_video

    state = produce_video(storyboard=STORYBOARD, approval="auto", profile="test", return_state=True)
    assert state.is_completed(), state.message
    return state, state.result()


def test_auto_run_delivers_film_cover_and_manifest(
    first_run: tuple[Any, Any], s3_settings: S3Settings, tmp_path: Path
) -> None:
    _, result = first_run
    store = ArtifactStore(s3_settings.with_bucket("film"))
    film = store.get_file(result.film_key, tmp_path / "film.mp4")
    info = probe(film)
    assert (info.width, info.height) == (320, 180)
    assert info.codec == "h264"
    assert abs(info.fps - 12) < 0.01
    assert abs(info.duration - 4.0) <= 0.2
    assert store.get_bytes(result.cover_key)[:8] == b"\x89PNG\r\n\x1a\n"

    manifest = json.loads(store.get_bytes(result.manifest_key))
    assert [a["gate"] for a in manifest["approvals"]] == ["storyboard", "images", "clips"]
    assert {a["reviewer"] for a in manifest["approvals"]} == {"auto"}
    assert set(manifest["clips"]) == {"a", "b", "c", "d"}
    assert set(manifest["variants"]) == {"a", "b", "c"}  # d is built from c's frames
    assert all(len(v) == 2 for v in manifest["variants"].values())

    # progress on the run's page reached 100% (one step per shot's images, one per clip)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        progress = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["render-progress"]))
        )
    assert progress and max(float(a.data) for a in progress) == 100.0

    # the film is the delivered version of the master (no music here: the master is the edit)
    assert manifest["film_key"] == result.film_key and result.master_key == manifest["edit_key"]
    assert store.lineage(result.film_key).parents == [result.master_key]
    # lineage: the edit's parents are the clips; the restyled frame's parent is c's clip
    assert store.lineage(result.master_key).parents == [manifest["clips"][s] for s in "abcd"]
    first, last = manifest["frames"]["d"]
    assert store.lineage(last).parents == [manifest["clips"]["c"]]
    assert store.lineage(last).extra["step"] == "restyle"
    assert store.lineage(first).extra["step"] == "frame"
    variant = store.lineage(manifest["variants"]["a"][1])
    assert variant.extra["seed"] == variant.spec["seed"] + 1
    assert [lora["name"] for lora in variant.spec["loras"]] == ["detail", "car-body"]


def test_independent_shots_render_concurrently(first_run: tuple[Any, Any]) -> None:
    """The flow submits independent work at once: clips a, b and c (camera moves, no model
    slot) run side by side on the flow's thread pool; d, the transition, starts only after c,
    whose last frame it takes."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    task_states(first_run[0].state_details.flow_run_id)  # states settled
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[first_run[0].state_details.flow_run_id])
            )
        )
    spans = {r.name: (r.start_time, r.end_time) for r in runs if r.name.startswith("clip-")}
    assert set(spans) == {"clip-a", "clip-b", "clip-c", "clip-d"}
    starts = sorted(spans[name][0] for name in ("clip-a", "clip-b", "clip-c"))
    ends = sorted(spans[name][1] for name in ("clip-a", "clip-b", "clip-c"))
    assert starts[1] < ends[0], spans  # at least two of them were running at the same time
    assert spans["clip-d"][0] >= spans["clip-c"][1], spans


def test_second_run_is_all_cached(first_run: tuple[Any, Any]) -> None:
    from flows.produce_video import produce_video

    state = produce_video(storyboard=STORYBOARD, approval="auto", profile="test", return_state=True)
    assert state.result().film_key == first_run[1].film_key
    states = task_states(state.state_details.flow_run_id)
    expensive = {
        name: s
        for name, s in states.items()
        if name.split("-")[0]
        in {"variants", "hires", "clip", "frame", "assemble", "make", "version"}
    }
    assert len(expensive) >= 13, states
    not_cached = {name: s for name, s in expensive.items() if set(s) != {"Cached"}}
    assert not not_cached, not_cached


def _wait_for_gate(run_id_holder: dict[str, str], gate: str, timeout: float = 240) -> str:
    """The run at `gate`: the one in `run_id_holder` once it holds an id (the first one found)."""
    run = wait_for_pending(gate, timeout, **{k: v for k, v in run_id_holder.items() if k == "id"})
    run_id_holder["id"] = run["id"]
    return run["id"]


LLM_PROMPT = "front view of the yellow car, headlights and grille facing the camera"
API_KEY = "sk-test-secret-0123456789"


def test_manual_run_pauses_and_rejecting_a_shot_regenerates_only_it(
    first_run: tuple[Any, Any], film_env: dict[str, str], tmp_path: Path
) -> None:
    """Approvals from the CLI's code path; the rejected shot's prompt is rewritten by an LLM
    (a real OpenAI-compatible server on loopback) and only that shot is regenerated."""
    from pydantic import SecretStr

    from blocks.llm_endpoint import LLMEndpoint
    from flows.reviewer import approve_run
    from tests.support.chat_server import ChatServer, Reply, Request

    board = tmp_path / "tiny.yaml"
    board.write_text(STORYBOARD, encoding="utf-8")
    env = {**os.environ, **film_env}

    def answer(request: Request) -> Reply:  # by the schema the client asks for
        if "zh" in (request.schema_name or "").lower():
            return Reply(content={"zh": "一辆黄色跑车"})
        return Reply(content={"prompt": LLM_PROMPT})

    chat = ChatServer(responder=answer).__enter__()
    LLMEndpoint(
        base_url=chat.url, model="prompt-editor", api_key=SecretStr(API_KEY), timeout=30
    ).save("film-llm", overwrite=True)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "render",
            str(board),
            "--profile",
            "test",
            "--llm",
            "film-llm",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    holder: dict[str, str] = {}
    try:
        run_id = _wait_for_gate(holder, "storyboard-1")
        assert approve_run(run_id, reviewer="director") == "storyboard"
        _wait_for_gate(holder, "images-1")
        # answers that do not fit the gate are refused and the run keeps waiting there
        from reelflow.render.decisions import AnswerError

        for bad in ({"picks": {"s02": 1}}, {"picks": {"a": 5}}, {"new_seeds": {"a": 3}}):
            with pytest.raises(AnswerError):
                approve_run(run_id, reviewer="director", **bad)  # type: ignore[arg-type]
        assert _wait_for_gate(holder, "images-1") == run_id
        assert (
            approve_run(
                run_id,
                rejects={"b": "show the front of the car"},
                picks={"a": 1},
                reviewer="director",
            )
            == "images"
        )
        _wait_for_gate(holder, "images-2")
        assert approve_run(run_id, picks={"b": 1}, reviewer="director") == "images"
        _wait_for_gate(holder, "clips-1")
        assert approve_run(run_id, reviewer="director") == "clips"
        output, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
        chat.__exit__(None, None, None)
    assert process.returncode == 0, output
    assert API_KEY not in output
    assert "film:     s3://film/projects/tiny-film/edits/" in output
    assert f"reelflow approve {run_id} [--pick a=N]" in output  # what to run next, printed

    states = task_states(UUID(run_id))
    assert states["variants-a"] == ["Cached"]
    assert states["variants-c"] == ["Cached"]
    assert states["variants-b"] == ["Cached", "Completed"]  # round 2 has the notes
    assert states["clip-a"] == ["Completed"]  # a's round-1 pick (variant 1) is a new still
    assert states["clip-c"] == ["Cached"]
    assert states["clip-b"] == ["Completed"]
    assert states["assemble-film"] == ["Completed"]
    assert states["version-16x9-h264"] == ["Completed"]

    # the LLM rewrote b's prompt only; the diff is in the manifest and the review
    refines = [r for r in chat.requests if "zh" not in (r.schema_name or "").lower()]
    assert len(refines) == 1 and "show the front of the car" in refines[0].last_user
    review = _artifact_markdown("images-review", UUID(run_id))
    assert "一辆黄色跑车" in review and "```diff" in review
    from reelflow.store.artifacts import ArtifactStore

    store = ArtifactStore(S3Settings.from_env())
    manifest_key = next(k for k in store.list("projects/tiny-film/runs/") if run_id in k)
    manifest = json.loads(store.get_bytes(manifest_key))
    assert list(manifest["prompt_diffs"]) == ["b"]
    assert (
        "+" in manifest["prompt_diffs"]["b"][0] and "headlights" in manifest["prompt_diffs"]["b"][0]
    )
    # a's pick of round 1 survived round 2 (where only b was picked)
    assert store.lineage(manifest["chosen_images"]["a"]).parents == [manifest["variants"]["a"][1]]
    regenerated = store.lineage(manifest["chosen_images"]["b"])
    assert LLM_PROMPT in regenerated.spec["image"]["prompt"]
    assert manifest["llm_usage"]["requests"] == 1  # the refinement (translations are cached)
    assert API_KEY not in json.dumps(manifest)

    # the worker process loaded the base model once for every image it made
    loads = [line for line in _run_logs(UUID(run_id)) if "model loads" in line]
    assert loads and all(line.endswith(": 1") for line in loads), loads


def _artifact_markdown(key: str, flow_run_id: UUID) -> str:
    """The latest version of a run's markdown artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    found = [a for a in artifacts if a.key == key]
    assert found, [a.key for a in artifacts]
    return str(max(found, key=lambda a: a.created).data)


def _run_logs(flow_run_id: UUID) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    return [log.message for log in logs]


def test_lineage_of_the_downloaded_film_reaches_every_variant(
    first_run: tuple[Any, Any], s3_settings: S3Settings, tmp_path: Path
) -> None:
    """`reelflow lineage final.mp4`: film -> master -> clips -> stills -> the chosen variants,
    with prompt, seed and weight hashes, and the run that chose them (issue 16)."""
    from reelflow.render.lineage import lineage_tree, render_text, resolve_target

    _, result = first_run
    store = ArtifactStore(s3_settings.with_bucket("film"))
    final = store.get_file(result.film_key, tmp_path / "final.mp4")
    key = resolve_target(store, str(final))
    assert key == result.film_key
    tree = lineage_tree(store, key)
    nodes, todo = [], [tree.root]
    while todo:
        nodes.append(todo.pop())
        todo.extend(nodes[-1].parents)
    variants = {n.shot: n for n in nodes if n.step == "variant"}
    assert set(variants) == {"a", "b", "c"}
    for node in variants.values():
        assert node.details["prompt"] and node.details["seed"] >= 0
        assert {w["name"] for w in node.weights} >= {"@models/tiny-sd", "detail"}
        assert all(len(w["sha256"]) == 64 for w in node.weights)
    restyled = [n for n in nodes if n.step == "restyle"]
    assert restyled and "controlnet" in {w["role"] for w in restyled[0].weights}
    # the run that made this film names it as its film (other runs of the project, such as the
    # manual one, share some of its stills and clips, and are listed with their own roles)
    first_id = str(first_run[0].state_details.flow_run_id)
    made_it = [run for run in tree.runs if run.run_id == first_id]
    assert made_it and "film" in made_it[0].roles, [(r.run_id, r.roles) for r in tree.runs]
    text = render_text(tree)
    assert "prompt: " in text and "lora car-body x0.8  sha256 " in text
