"""Previz panels keep their text where the animatic's camera move never crops: a push-in or a
tracking shot must not open on a cut-off shot id or description (16:9 and 9:16, Chinese too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reelflow.imaging import previz
from reelflow.motion.animatic import camera_frames

PALETTE = ["#f2c300", "#1c1c1c", "#dfe6ee", "#7a8a99"]
EN = (
    "low-angle close-up of the rear of the car, rear lights and spoiler, steam rising from the "
    "exhaust, tracks in fresh snow"
)
ZH = "低角度特写：车尾、尾灯与扰流板，排气管冒着白汽，新雪上留下车辙，远处山峰泛着金色"
N_FRAMES = 12


def _panel(movement: str, width: int, height: int, description: str) -> Image.Image:
    return previz.draw_panel(
        shot="s03",
        description=description,
        size="close-up",
        angle="low",
        movement=movement,
        palette=PALETTE,
        width=width,
        height=height,
        seed=7,
    )


def _text_box(
    monkeypatch: pytest.MonkeyPatch, movement: str, width: int, height: int, description: str
) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1, exclusive) of every pixel the text layer changes: the
    panel against the same panel drawn with its text step left out."""
    panel = np.asarray(_panel(movement, width, height, description), np.int16)
    with monkeypatch.context() as m:
        m.setattr(previz, "_text", lambda *args, **kwargs: None)
        bare = np.asarray(_panel(movement, width, height, description), np.int16)
    ys, xs = np.nonzero(np.abs(panel - bare).sum(axis=2) > 0)
    assert xs.size > 200, "no text drawn"
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _seen_edges(movement: str, width: int, height: int) -> list[tuple[float, ...]]:
    """Per frame of the move, the source coordinates its edges show: (max over the left column,
    max over the top row, min over the right column, min over the bottom row), read off a
    coordinate ramp (red = x, green = y) animated exactly as the clip step animates a panel.
    Each row of a frame shows the source between its left and right edge samples, so a box
    inside these bounds is in view in that frame."""
    xs = (np.arange(width) + 0.5) / width
    ys = (np.arange(height) + 0.5) / height
    ramp = np.zeros((height, width, 3), np.uint8)
    ramp[..., 0] = np.round(np.broadcast_to(xs[None, :], (height, width)) * 255)
    ramp[..., 1] = np.round(np.broadcast_to(ys[:, None], (height, width)) * 255)
    edges = []
    for frame in camera_frames(
        ramp, n_frames=N_FRAMES, width=width, height=height, movement=movement
    ):
        sx = frame[..., 0].astype(float) / 255 * width
        sy = frame[..., 1].astype(float) / 255 * height
        edges.append((sx[:, 0].max(), sy[0, :].max(), sx[:, -1].min(), sy[-1, :].min()))
    return edges


@pytest.mark.parametrize(
    ("movement", "width", "height", "description"),
    [
        ("push-in", 320, 180, EN),
        ("tracking", 320, 180, EN),
        ("push-in", 180, 320, ZH),
        ("tracking", 180, 320, ZH),
    ],
    ids=["push-in-16x9-en", "tracking-16x9-en", "push-in-9x16-zh", "tracking-9x16-zh"],
)
def test_panel_text_stays_in_view_for_the_whole_camera_move(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    movement: str,
    width: int,
    height: int,
    description: str,
) -> None:
    x0, y0, x1, y1 = _text_box(monkeypatch, movement, width, height, description)
    tol = 1.0  # the ramp's 8-bit steps (a pixel and a bit at 320 px)
    for i, (left, top, right, bottom) in enumerate(_seen_edges(movement, width, height)):
        assert x0 >= left - tol and y0 >= top - tol and x1 <= right + tol and y1 <= bottom + tol, (
            f"{movement} {width}x{height} frame {i}: text box {(x0, y0, x1, y1)} not inside the "
            f"view ({left:.1f}, {top:.1f}, {right:.1f}, {bottom:.1f})"
        )
    # the frames a director sees, for looking at: the panel and the move's first frame
    panel = _panel(movement, width, height, description)
    first = next(
        camera_frames(panel, n_frames=N_FRAMES, width=width, height=height, movement=movement)
    )
    panel.save(tmp_path / "panel.png")
    Image.fromarray(first).save(tmp_path / "first.png")


def test_a_narrow_card_wraps_its_label_and_never_cuts_it() -> None:
    from reelflow.imaging.previz import label_lines

    def measure(text: str) -> float:
        return float(len(text))

    framing = "medium · low · tracking"
    assert label_lines("s02", framing, 40, measure) == [f"s02   {framing}"]
    assert label_lines("s02", framing, 24, measure) == ["s02", framing]  # 9:16: two lines
    # too narrow even for that: the framing wraps between its words, each whole, none cut
    narrow = label_lines("s02", framing, 12, measure)
    assert narrow == ["s02", "medium · low", "tracking"]
    assert all(len(line) <= 12 and "…" not in line for line in narrow)
