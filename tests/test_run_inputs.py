"""One check of a run's inputs (reelflow/render/inputs.py): the CLI makes it before a run exists
and produce-video makes it as its first step, so a run started from the Prefect UI with a bad
parameter fails at step 1 with the same one line. A render parses its storyboard once."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from reelflow.errors import InputError
from reelflow.render.inputs import check_inputs
from reelflow.storyboard import Storyboard

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "su7-winter-spring.yaml"

# Two panels of the model-free previz profile: the quickest full render there is.
BOARD = """
title: "Inputs test"
project: inputs-film
width: 160
height: 96
fps: 8
style: {palette: ["#f5c518", "#e8f1f8"], visual_style: cinematic, base_seed: 3}
shots:
  - {id: a, description: a yellow car on a snowy road, duration: 1.0,
     camera: {size: wide, angle: aerial, movement: push-in}}
  - {id: b, description: the car at the summit, duration: 1.0,
     camera: {size: full, angle: high, movement: pan-right},
     transition_in: crossfade, transition_duration: 0.25}
"""


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"quality_threshold": 5}, "quality_threshold 5: must be in 0..1"),
        ({"identity_threshold": -0.5}, "identity_threshold -0.5: must be in 0..1"),
        ({"identity_retries": 11}, "identity_retries 11: must be in 0..10"),
        ({"identity_retries": 1.5}, "identity_retries 1.5: must be a whole number in 0..10"),
        ({"approval": "yes"}, "approval 'yes': must be one of manual, auto, quality-gate"),
        ({"profile": "huge"},
         "profile 'huge': unknown (choose from full, demo, previz, test, test-ltx2, test-wan)"),
        ({"exports": ["4:3"]}, "--export '4:3': aspect: Input should be '16:9', '9:16' or '1:1'"),
        ({"exports": [{"aspect": "9:16", "fps": 500}]},
         "exports[0].fps: Input should be less than or equal to 120"),
        ({"image_model": " "}, "image_model: empty block name (leave it unset for none)"),
    ],
)
def test_bad_parameter_is_one_line_naming_it(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as caught:
        check_inputs(str(EXAMPLE), **parameters)
    assert str(caught.value) == message


def test_good_inputs_come_back_parsed(tmp_path: Path) -> None:
    inputs = check_inputs(str(EXAMPLE), profile="demo", exports=["9:16,codec=h265"])
    assert inputs.base_dir == EXAMPLE.parent
    assert len(inputs.storyboard.shots) == 9
    assert inputs.profile.name == "demo"
    assert [e.name for e in inputs.exports or []] == ["9x16-h265"]


def test_model_path_outside_the_folder_is_refused_up_front(tmp_path: Path) -> None:
    board = tmp_path / "board.yaml"
    board.write_text(BOARD.replace("base_seed: 3}", "base_seed: 3, model: ../elsewhere/m}"))
    with pytest.raises(InputError, match=r"style.model: '../elsewhere/m' is outside the story"):
        check_inputs(str(board), profile="full")


def test_kept_inputs_are_taken_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the CLI checked is what the run it starts takes (once), without parsing again."""
    board = tmp_path / "board.yaml"
    board.write_text(BOARD)
    parses = count_parses(monkeypatch)
    kept = check_inputs(str(board), profile="previz", keep_for_run=True)
    taken = check_inputs(str(board.resolve()), profile="previz", approval="auto")
    assert taken.storyboard is kept.storyboard and parses == [1]
    check_inputs(str(board), profile="previz")  # nothing kept now: read again
    assert parses == [2]
    check_inputs(str(board), profile="previz", keep_for_run=True)
    with pytest.raises(InputError, match="^quality_threshold 2: "):  # parameters still checked
        check_inputs(str(board), profile="previz", quality_threshold=2)
    assert check_inputs(str(board), profile="previz").storyboard.project == "inputs-film"
    assert parses == [3]


def count_parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count every validation of a whole storyboard (from YAML/JSON data or bytes): the
    functions keep working, they are only counted."""
    count = [0]
    validate = Storyboard.model_validate.__func__  # type: ignore[attr-defined]
    validate_json = Storyboard.model_validate_json.__func__  # type: ignore[attr-defined]

    def counted(original: Any) -> Any:
        def wrapper(cls: type, *args: Any, **kwargs: Any) -> Any:
            if cls is Storyboard:
                count[0] += 1
            return original(cls, *args, **kwargs)

        return classmethod(wrapper)

    monkeypatch.setattr(Storyboard, "model_validate", counted(validate))
    monkeypatch.setattr(Storyboard, "model_validate_json", counted(validate_json))
    return count


def _task_runs(flow_run_id: UUID) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return [run.name for run in runs]


def test_flow_with_a_bad_parameter_fails_at_step_one(
    film_env: dict[str, str], tmp_path: Path
) -> None:
    """A run started without the CLI (the Prefect UI, a schedule) gets the CLI's check and its
    one line, before any task runs."""
    from flows.produce_video import produce_video

    board = tmp_path / "board.yaml"
    board.write_text(BOARD)
    with pytest.raises(InputError) as expected:
        check_inputs(str(board), profile="previz", quality_threshold=5)
    state = produce_video(
        storyboard=str(board), approval="auto", profile="previz", quality_threshold=5,
        return_state=True,
    )  # fmt: skip
    assert state.is_failed()
    with pytest.raises(InputError) as raised:
        state.result()
    assert str(raised.value) == str(expected.value) == "quality_threshold 5: must be in 0..1"
    assert str(expected.value) in (state.message or "")
    assert _task_runs(state.state_details.flow_run_id) == []  # nothing ran: not even a publish


def test_render_parses_its_storyboard_once(
    film_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One in-process render parses the board once: quality-gate (every check passes at
    threshold 0, so nobody waits) builds the review material too, and the storyboard review
    reads the board in memory. With the CLI's check before the run, still once."""
    from flows.produce_video import produce_video

    board = tmp_path / "board.yaml"
    board.write_text(BOARD)
    parses = count_parses(monkeypatch)
    state = produce_video(
        storyboard=str(board), approval="quality-gate", profile="previz", quality_threshold=0.0,
        return_state=True,
    )  # fmt: skip
    assert state.is_completed(), state.message
    assert parses == [1]

    # the CLI's order: check (parse), keep for the run, start the run in this process
    parses[0] = 0
    check_inputs(str(board), profile="previz", approval="quality-gate", keep_for_run=True)
    state = produce_video(
        storyboard=str(board.resolve()), approval="quality-gate", profile="previz",
        quality_threshold=0.0, return_state=True,
    )  # fmt: skip
    assert state.is_completed(), state.message
    assert parses == [1]


def test_an_upscaler_a_version_will_run_must_be_on_this_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused before the run (not at delivery once the clips are made); a version that is
    not upscaled (no wider than the reframed film) does not need the folder."""
    monkeypatch.setenv("REELFLOW_MODELS", str(tmp_path / "models"))
    with pytest.raises(InputError) as caught:
        check_inputs(str(EXAMPLE), profile="previz",
                     exports=["16:9", "9:16,size=1080p,upscaler=@models/nowhere"])
    assert str(caught.value).startswith(
        "--export 9x16-h264-up-nowhere: upscaler @models/nowhere: not found at "
        f"{tmp_path / 'models' / 'nowhere'}"), caught.value
    check_inputs(str(EXAMPLE), profile="previz",
                 exports=["9:16,size=360x640,upscaler=@models/nowhere"])  # 405x720 reframed
