"""Style board: one shot under several styles, rendered with the tiny model (64x40, 2 steps)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cli.main import main
from reelflow.render.models import prepare_demo_models
from reelflow.render.profiles import get_profile
from reelflow.store.artifacts import ArtifactStore
from reelflow.storyboard import Storyboard, parse_storyboard
from reelflow.styleboard import (
    StyleBoardError,
    StyleCandidate,
    derive_candidates,
    parse_candidates,
    render_style_board,
)

PROFILE = get_profile("test")  # 64x40, 2 steps, tiny SD built from configs
THUMB, PAD = 256, 8  # contact_sheet defaults

STORYBOARD = """
title: board test
project: board-test
style:
  palette: ["#f5c518", "#e8f1f8"]
  visual_style: photo
  lighting: daylight
  quality_tags: [sharp]
shots:
  - {id: s1, description: a car on a road, duration: 2}
"""

STYLES = [
    StyleCandidate(name="oil", visual_style="oil painting, thick brush strokes"),
    StyleCandidate(name="neon", visual_style="neon cyberpunk night city", palette=["#ff00ff"]),
    StyleCandidate(name="golden", lighting="golden hour"),
]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tiny SD model in a private models folder (REELFLOW_MODELS), built once."""
    root = tmp_path_factory.mktemp("models")
    previous = os.environ.get("REELFLOW_MODELS")
    os.environ["REELFLOW_MODELS"] = str(root)
    prepare_demo_models([])
    yield root
    if previous is None:
        os.environ.pop("REELFLOW_MODELS", None)
    else:
        os.environ["REELFLOW_MODELS"] = previous


@pytest.fixture
def storyboard() -> Storyboard:
    return parse_storyboard(STORYBOARD)


def tiles(board: Image.Image, count: int) -> list[np.ndarray]:
    """The picture part of each cell: a 64x40 render fills 256x160, centred in a 256 square."""
    top = PAD + (THUMB - 160) // 2
    pixels = np.asarray(board.convert("RGB")).astype(np.float64)
    return [pixels[top: top + 160, PAD + i * (THUMB + PAD): PAD + i * (THUMB + PAD) + THUMB]
            for i in range(count)]


def hex_colours(image: np.ndarray, count: int = 4) -> list[str]:
    quantized = Image.fromarray(image.astype(np.uint8)).quantize(count)
    rgb = quantized.getpalette()[: 3 * count]
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in zip(*[iter(rgb)] * 3, strict=True)]


def test_one_image_with_one_distinct_tile_per_style(
    tiny_models: Path, storyboard: Storyboard
) -> None:
    board, scores = render_style_board(storyboard, "s1", STYLES, PROFILE)
    assert board.width == len(STYLES) * (THUMB + PAD) + PAD  # one row, three cells
    assert len(scores) == len(STYLES) and all(0.0 <= s <= 1.0 for s in scores)
    cells = tiles(board, len(STYLES))
    for cell in cells:
        assert cell.std() > 10  # a render, not the white sheet
    for i in range(len(cells)):
        for j in range(i + 1, len(cells)):
            assert np.abs(cells[i] - cells[j]).mean() > 3, (STYLES[i].name, STYLES[j].name)
    # the gutter between cells is the sheet's white: the tiles are separate
    gutter = np.asarray(board)[PAD + 50, PAD + THUMB + 2]
    assert gutter.tolist() == [255, 255, 255]


def test_palette_scores_rank_the_matching_palette_higher(
    tiny_models: Path, storyboard: Storyboard
) -> None:
    look = {"visual_style": "oil painting, thick brush strokes"}
    board, _ = render_style_board(storyboard, "s1", [StyleCandidate(name="probe", **look),
                                                      STYLES[1]], PROFILE)
    rendered = tiles(board, 2)[0]
    matching = hex_colours(rendered)  # the render's own main colours
    candidates = [StyleCandidate(name="mono", palette=["#000000", "#ffffff"], **look),
                  StyleCandidate(name="match", palette=matching, **look)]
    board, scores = render_style_board(storyboard, "s1", candidates, PROFILE)
    mono, match = tiles(board, 2)
    assert np.abs(mono - match).mean() < 1  # a palette is a score, not part of the prompt
    assert np.abs(match - rendered).mean() < 1  # same style, same seed: the same image
    assert scores[1] > scores[0] + 0.2, scores
    assert scores[0] < 0.2, scores  # the noisy colourful render is far from black and white


def test_uploaded_board_has_lineage_and_is_found_again(
    tiny_models: Path, storyboard: Storyboard, store: ArtifactStore, tmp_path: Path
) -> None:
    image, scores, key = render_style_board(storyboard, "s1", STYLES[:2], PROFILE, store)
    assert key.startswith("projects/board-test/styleboards/") and key.endswith(".png")
    lineage = store.lineage(key)
    assert lineage.kind == "styleboard"
    assert lineage.extra["candidates"] == ["oil", "neon"]
    assert lineage.extra["scores"] == scores
    assert [t["job"]["seed"] for t in lineage.spec["tiles"]] == [
        lineage.spec["tiles"][0]["job"]["seed"]] * 2  # only the style differs
    stored = Image.open(store.get_file(key, tmp_path / "board.png"))
    assert stored.size == image.size

    again = render_style_board(storyboard, "s1", STYLES[:2], PROFILE, store)
    assert again.key == key and again.scores == scores
    assert store.lineage(key).created_at == lineage.created_at  # found, not re-rendered
    other = render_style_board(storyboard, "s1", STYLES[1:], PROFILE, store)
    assert other.key != key


def test_candidates_from_yaml_inherit_unset_fields(storyboard: Storyboard) -> None:
    candidates = parse_candidates(yaml.safe_dump([
        {"name": "night", "lighting": "moonlight", "palette": ["#101020"]},
        {"name": "anime", "visual_style": "anime cel shading"},
    ]))
    night = candidates[0].style_lock(storyboard.style)
    assert night.lighting == "moonlight" and night.palette == ["#101020"]
    assert night.visual_style == "photo" and night.quality_tags == ["sharp"]  # inherited
    assert candidates[1].style_lock(storyboard.style).palette == storyboard.style.palette


@pytest.mark.parametrize(("text", "message"), [
    ("- {name: a}", "a style board compares 2-4 styles, got 1"),
    (yaml.safe_dump([{"name": f"s{i}"} for i in range(5)]), "compares 2-4 styles, got 5"),
    ("- {name: a}\n- {name: a}", "duplicate style names: a"),
    ("- {name: a, palette: [red]}\n- {name: b}", "styles.yaml: [0].palette[0]: String should"),
    ("- {name: a, colour: red}\n- {name: b}", "styles.yaml: [0].colour: Extra inputs"),
    ("name: a", "styles.yaml: must be a list of styles"),
    ("- [", "styles.yaml:2 (syntax): did not find expected node content"),
    ("- &a [*a, *a]\n", "styles.yaml:1 (syntax): recursive alias is not allowed"),
    ("- {name: a, name: b}\n- {name: c}", "styles.yaml:1 name: duplicate key"),
])
def test_bad_styles_files_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(StyleBoardError) as info:
        parse_candidates(text, source="styles.yaml")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_derived_candidates_start_from_the_storyboard(storyboard: Storyboard) -> None:
    candidates = derive_candidates(storyboard)
    assert [c.name for c in candidates] == ["storyboard", "warm-film", "cool-noir"]
    assert candidates[0].style_lock(storyboard.style) == storyboard.style
    assert candidates[1].style_lock(storyboard.style).palette != storyboard.style.palette
    with pytest.raises(StyleBoardError, match="got 5"):
        derive_candidates(storyboard, 5)


def test_cli_writes_the_board_offline(
    tiny_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board_file = tmp_path / "board.yaml"
    board_file.write_text(STORYBOARD)
    styles = tmp_path / "styles.yaml"
    styles.write_text(yaml.safe_dump([{"name": "oil", "visual_style": "oil painting"},
                                      {"name": "neon", "visual_style": "neon night"}]))
    out = tmp_path / "out" / "board.png"
    rc = main(["styleboard", str(board_file), "--shot", "s1", "--styles", str(styles),
               "--profile", "test", "--out", str(out)])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert Image.open(out).width == 2 * (THUMB + PAD) + PAD
    lines = printed.out.splitlines()
    assert lines[0].startswith(f"board:  {out} (2 styles, shot s1, profile test)")
    assert lines[1].split()[:2] == ["#1", "oil"] and lines[2].split()[:2] == ["#2", "neon"]

    assert main(["styleboard", str(board_file), "--shot", "nope", "--profile", "test"]) == 2
    assert capsys.readouterr().err == "reelflow: no shot 'nope' in storyboard 'board-test'\n"
    styles.write_text("- {name: only-one}")
    assert main(["styleboard", str(board_file), "--shot", "s1", "--styles", str(styles)]) == 2
    assert capsys.readouterr().err == (
        "reelflow: styles.yaml: a style board compares 2-4 styles, got 1\n")
