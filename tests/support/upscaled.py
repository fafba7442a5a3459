"""A version delivered through the learned upscaler (tiny SD x4 built from configs), and what
its delivered film must show: the export's size, a picture (not blank), the caption drawn
after the upscale at the delivery size, the upscaler named in the manifest and the lineage."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from reelflow.editing.upscaler import build_tiny_x4_upscaler
from reelflow.media.frames import iter_frames
from reelflow.media.probe import probe
from reelflow.store.artifacts import ArtifactStore

#: 160x96 (the test boards) reframed to 9:16 is 54x96; the x4 model makes 216x384; the
#: version is delivered at 270x480 (scaled after the model, the captions drawn after that)
UPSCALED_EXPORT = "9:16,size=270x480,upscaler=@models/tiny-x4,upscale_steps=1"
UPSCALED_SIZE = (270, 480)
ZH = "雪山之巅"


def tiny_upscaler(models: Path, seed: int = 0) -> Path:
    """The tiny x4 upscaler at `models/tiny-x4`, built anew with `seed`'s weights."""
    folder = models / "tiny-x4"
    shutil.rmtree(folder, ignore_errors=True)
    return build_tiny_x4_upscaler(folder, seed=seed)


def with_zh_caption(board: str) -> str:
    """A test board whose first shot has a Chinese caption."""
    return board.replace("duration: 1.0,", f"duration: 1.0, caption: {{zh: {ZH}}},", 1)


def _white_rows(frame: np.ndarray) -> np.ndarray:
    """Per row, the pixels of a caption's white fill (not its black outline)."""
    return (frame > 200).all(axis=2).sum(axis=1)


def check_upscaled_delivery(
    film: Path, manifest: dict[str, Any], name: str, store: ArtifactStore
) -> None:
    info = probe(film)
    assert (info.width, info.height) == UPSCALED_SIZE, info
    frame = next(iter(iter_frames(film)))
    picture = frame[: info.height // 2].astype(np.float32)  # above the caption band
    assert picture.std() > 8 and 20 < picture.mean() < 235  # the model's picture, not blank
    # the caption, drawn after the upscale: crisp white glyph fill in one band of the lower
    # half, at least 4% of the 270 px width tall (drawn on the 54 px picture before the
    # random model, nothing of it would be left white)
    white = _white_rows(frame)
    half = info.height // 2
    assert white[:half].sum() <= 3, np.flatnonzero(white)
    rows = np.flatnonzero(white[half:]) + half
    assert rows.size and rows.max() - rows.min() < 0.1 * info.height, rows  # one line
    assert rows.max() - rows.min() + 1 >= 0.04 * info.width, rows
    assert white.sum() >= 60, white.sum()

    label = manifest["version_upscalers"][name]
    assert label.startswith("@models/tiny-x4 (sha256 "), label
    lineage = store.lineage(manifest["versions"][name])
    assert lineage.extra["upscaler"] == label
    (weight,) = [w for w in lineage.extra["weights"] if w["role"] == "upscaler"]
    assert weight["source"] == "@models/tiny-x4" and label[-13:-1] == weight["sha256"][:12]
    assert lineage.spec["upscaler"]["steps"] == 1
