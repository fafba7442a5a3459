"""A learned upscaler for delivery: `--export 9:16,size=...,upscaler=@models/NAME` runs diffusers'
Stable Diffusion x4 upscaler (tiny, built from configs) between the reframe and the delivery
size, through the CLI and the flow. The delivered film has the export's size, its frames are
pictures (not blank), the captions are drawn after the upscale at the delivery size, lineage
and manifest name the upscaler, and another upscaler in the same folder is another version."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from reelflow.editing.upscaler import build_tiny_x4_upscaler
from reelflow.errors import InputError
from reelflow.media.frames import iter_frames
from reelflow.media.probe import probe
from reelflow.render.jobs import parse_export, version_job
from tests.support.boards import one_shot_board, storyboard, write_board
from tests.test_cli_commands import _checkout_env, _output, _reelflow

ZH = "雪山之巅"


def test_export_names_its_upscaler_and_a_version_without_one_keeps_its_key() -> None:
    export = parse_export("9:16,upscaler=@models/x4-upscaler,upscale_steps=2")
    assert export.upscaler == "@models/x4-upscaler" and export.upscale_steps == 2
    assert export.name == "9x16-h264-up-x4-upscaler-2steps"  # never the filter version's name
    plain = parse_export("9:16")
    assert "upscaler" not in plain.model_dump() and "upscale_steps" not in plain.model_dump()
    board = storyboard([{"id": "a", "description": "a car", "duration": 1.0}],
                       width=1280, height=720)  # fmt: skip
    job = version_job(board, "projects/test/edit/m.mp4", plain, [1.0])
    assert job.upscaler is None and "upscaler" not in job.model_dump()  # the keys of before
    with pytest.raises(InputError, match="upscale_steps must be a whole number"):
        parse_export("9:16,upscale_steps=many")
    with pytest.raises(InputError, match=r"--export 9x16-h264-up-nowhere: upscaler @models/nowhere"):
        version_job(board, "projects/test/edit/m.mp4", parse_export("9:16,upscaler=@models/nowhere"),
                    [1.0])  # fmt: skip


@pytest.fixture(scope="module")
def cli_env(film_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The session's S3 and Prefect server, as `reelflow` sees them (see test_cli_commands)."""
    home = tmp_path_factory.mktemp("upscale-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELFLOW_")}
    return {**_checkout_env(env), **film_env, "REELFLOW_HOME": str(home)}


def _render(env: dict[str, str], board: Path, out: Path, export: str) -> dict[str, object]:
    done = _reelflow("render", str(board), "--auto-approve", "--profile", "previz",
                     "--out", str(out), "--export", export, env=env, cwd=board.parent)
    assert done.returncode == 0, _output(done)
    return json.loads((out / "cli-upscale" / "manifest.json").read_text())


def _caption_rows(frame: np.ndarray) -> np.ndarray:
    """Rows holding the caption's white fill (not its outline), per row a count of pixels."""
    return (frame > 235).all(axis=2).sum(axis=1)


@pytest.mark.flows
def test_learned_upscaler_through_the_cli(cli_env: dict[str, str], tmp_path: Path) -> None:
    models = Path(cli_env["REELFLOW_MODELS"])
    folder = models / "tiny-x4"
    shutil.rmtree(folder, ignore_errors=True)
    build_tiny_x4_upscaler(folder, seed=0)
    text = one_shot_board("cli-upscale").replace(
        "duration: 1.0,", f"duration: 1.0, caption: {{zh: {ZH}}},", 1)
    board = write_board(tmp_path, "upscale.yaml", text)
    # 160x96 reframed to 9:16 is 54x96; the x4 model makes 216x384; delivered at 270x480
    export = "9:16,size=270x480,upscaler=@models/tiny-x4,upscale_steps=1"
    manifest = _render(cli_env, board, tmp_path / "out", export)
    ((name, key),) = manifest["versions"].items()  # type: ignore[union-attr]
    assert manifest["version_upscalers"][name].startswith("@models/tiny-x4 (sha256 ")  # type: ignore[index]

    film = tmp_path / "out" / "cli-upscale" / "final.mp4"
    info = probe(film)
    assert (info.width, info.height) == (270, 480) and info.frame_count == 8, info
    frame = next(iter(iter_frames(film)))
    picture = frame[: info.height // 2].astype(np.float32)  # above the caption band
    assert picture.std() > 8 and 20 < picture.mean() < 235  # the model's picture, not blank
    rows = np.flatnonzero(_caption_rows(frame) >= 2)
    assert rows.size and rows.min() > info.height // 2, rows  # one caption, in the lower half
    # drawn after the upscale, at 270 px wide: crisp white glyphs at least 4.5% of the width
    # tall (drawn at 54 px and passed through the random model they would be noise)
    assert rows.max() - rows.min() + 1 >= 0.045 * info.width, rows
    assert _caption_rows(frame).sum() > 60

    from tasks.common import get_store

    lineage = get_store().lineage(key)
    assert lineage.extra["upscaler"] == manifest["version_upscalers"][name]  # type: ignore[index]
    (weight,) = [w for w in lineage.extra["weights"] if w["role"] == "upscaler"]
    assert weight["source"] == "@models/tiny-x4" and weight["sha256"]
    assert lineage.spec["upscaler"]["steps"] == 1

    # other weights in the same folder: another version (its key holds the folder's content)
    shutil.rmtree(folder)
    build_tiny_x4_upscaler(folder, seed=1)
    again = _render(cli_env, board, tmp_path / "again", export)
    assert again["versions"][name] != key  # type: ignore[index]
    assert again["version_upscalers"][name] != manifest["version_upscalers"][name]  # type: ignore[index]
