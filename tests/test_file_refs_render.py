"""A storyboard's file references are used as `validate` checked them, and bad input fails once.

- a relative `style.model` path is checked against the storyboard's folder; the renderer loads
  that same file, whatever its own working directory;
- an InputError inside a step (a file reference outside the storyboard's folder reaching
  `upload_input`) is not retried: one try, one line.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reelflow.errors import InputError
from reelflow.imaging.models import ModelSource
from reelflow.render.jobs import image_job, model_choice
from reelflow.render.profiles import get_profile
from reelflow.storyboard import load_storyboard
from tests.support.boards import write_board

BOARD = """
title: Model path
project: model-path
width: 128
height: 72
fps: 8
style:
  palette: ["#f5c518"]
  model: {model}
shots:
  - {{id: a, description: a car on a snowy road, duration: 1.0}}
"""


def _board(tmp_path: Path, model: str) -> Path:
    folder = tmp_path / "film"
    (folder / "weights").mkdir(parents=True)
    (folder / "weights" / "base.safetensors").write_bytes(b"not read by locate()")
    return write_board(folder, "board.yaml", BOARD.format(model=model))


def test_relative_model_path_loads_from_the_storyboards_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _board(tmp_path, "weights/base.safetensors")
    elsewhere = tmp_path / "worker-cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the worker runs somewhere else than the storyboard
    board = load_storyboard(path)  # validate's check: resolves against the storyboard's folder
    profile = get_profile("full").model_copy(update={"image_model": None})
    job = image_job(board, board.shots[0], profile, base_dir=path.parent)
    kind, located = ModelSource(family=job.model.family, source=job.model.source).locate()
    assert kind == "single_file"
    assert located == str((path.parent / "weights" / "base.safetensors").resolve())
    # a storyboard from the bucket names the machine's models folder, never the cwd
    assert model_choice(board, profile, None).source == "@models/weights/base.safetensors"
    # and a name (hub id) is left as it is
    named = board.model_copy(update={"style": board.style.model_copy(update={"model": "a/b"})})
    assert model_choice(named, profile, path.parent).source == "a/b"


def test_model_path_outside_the_folder_is_refused_by_the_job_builder(tmp_path: Path) -> None:
    path = _board(tmp_path, "weights/base.safetensors")
    board = load_storyboard(path)
    escaped = board.model_copy(
        update={"style": board.style.model_copy(update={"model": "../../x.safetensors"})}
    )
    profile = get_profile("full").model_copy(update={"image_model": None})
    with pytest.raises(InputError, match="style.model"):
        model_choice(escaped, profile, path.parent)


def test_input_error_inside_a_step_is_not_retried(
    film_env: dict[str, str], tmp_path: Path
) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from tasks.common import RETRY_DELAY
    from tasks.edit import upload_input

    folder = tmp_path / "film"
    folder.mkdir()
    (tmp_path / "secret.txt").write_text("outside the storyboard's folder")

    @flow(name="upload-outside")
    def upload_outside(base_dir: str) -> str:
        return upload_input("p", "../secret.txt", base_dir)

    start = time.monotonic()
    state = upload_outside(str(folder), return_state=True)
    took = time.monotonic() - start
    assert state.is_failed()
    with pytest.raises(InputError) as info:
        state.result()
    assert "\n" not in str(info.value) and "secret.txt" in str(info.value)
    assert took < RETRY_DELAY, f"took {took:.1f} s: the InputError was retried"
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    assert [r.name for r in runs] == ["upload-input"]
    assert runs[0].run_count == 1  # one try (before: 3, RETRIES + 1, 10 s of retry delays)
