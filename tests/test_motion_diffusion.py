"""Generative backends on tiny models built from configs and loaded back from disk.

The tiny models output noise, so these tests check what reelflow adds: sizes snapped to the
model's multiple, frame counts chunked by its k*step+1 rule, chunks continuing from the
previous last frame, exact output timing, and clear errors for checkpoints that cannot do a
transition. Real ffmpeg encodes every clip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from reelflow.media.probe import probe
from reelflow.motion.backends import ClipRequest, get_backend
from reelflow.motion.diffusion import LTXBackend, retime


def test_retime_keeps_ends_and_blends_between() -> None:
    src = [np.full((2, 2, 3), v, np.uint8) for v in (0, 100, 200)]
    out = [int(f[0, 0, 0]) for f in retime(iter(src), 3, 5)]
    assert out == [0, 50, 100, 150, 200]
    nearest = [int(f[0, 0, 0]) for f in retime(iter(src), 3, 5, blend=False)]
    assert nearest == [0, 100, 100, 200, 200]
    down = [int(f[0, 0, 0]) for f in retime(iter(src), 3, 2)]
    assert down == [0, 200]
    many = [np.full((1, 1, 3), i, np.uint8) for i in range(13)]
    assert [int(f[0, 0, 0]) for f in retime(iter(many), 13, 13)] == list(range(13))
    assert len(list(retime(iter(many), 13, 1))) == 1


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from reelflow.motion.tiny import build_tiny_ltx, build_tiny_wan

    root = tmp_path_factory.mktemp("tiny-video")
    return {
        "ltx": build_tiny_ltx(root / "ltx"),
        "wan": build_tiny_wan(root / "wan"),
        "wan-flf2v": build_tiny_wan(root / "wan-flf2v", flf2v=True),
    }


@pytest.fixture(scope="module")
def still(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("still") / "still.png"
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.normal(128, 60, (90, 160, 3)), (0, 0), 4)
    cv2.imwrite(str(path), np.clip(img, 0, 255).astype(np.uint8))
    return path


def _request(still: Path, **kw: Any) -> ClipRequest:
    base: dict[str, Any] = {
        "images": [still],
        "duration": 1.0,
        "fps": 12,
        "width": 160,
        "height": 90,
        "steps": 2,
        "seed": 7,
        "motion_prompt": "camera slowly pushes in",
    }
    base.update(kw)
    return ClipRequest(**base)


class RecordingLTX(LTXBackend):
    """The real LTX backend, also keeping what each pipeline call was given and returned."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[dict[str, Any]] = []

    def _window(self, index: int, first: Any, last: Any, **kw: Any) -> Any:
        chunk = list(super()._window(index, first, last, **kw))
        self.calls.append(
            {"first": np.asarray(first).copy(), "has_last": last is not None,
             "num_frames": kw["num_frames"], "last_frame": chunk[-1].copy()}
        )  # fmt: skip
        return iter(chunk)


@pytest.mark.slow
def test_ltx_long_shot_is_chunked_and_continues_from_last_frame(
    models: dict[str, Path], still: Path, tmp_path: Path
) -> None:
    backend = RecordingLTX(models["ltx"], max_frames=9, max_area=64 * 32, preset="ultrafast")
    c = backend.constraints
    assert c.size_multiple == 32 and c.frame_step == 4 and c.frame_offset == 1
    assert backend.identity["pipeline"] == "LTXConditionPipeline"

    info = backend.render_shot(_request(still), tmp_path / "shot.mp4")
    # Exactly round(duration * fps) frames at the requested size and rate, whatever the model.
    assert (info.frame_count, info.width, info.height) == (12, 160, 90)
    assert info.fps == pytest.approx(12)
    assert backend.last_generation_size == (64, 32)
    # 1 s at LTX's native 24 fps = 24 frames; 4k+1 <= 9 per call -> 9 + 8 + 8 useful frames.
    assert backend.last_chunks == [9, 9, 9]
    assert [call["num_frames"] for call in backend.calls] == [9, 9, 9]
    assert not any(call["has_last"] for call in backend.calls)
    # Each later chunk is conditioned on exactly the previous chunk's last frame.
    for prev, nxt in zip(backend.calls, backend.calls[1:], strict=False):
        assert np.array_equal(nxt["first"], prev["last_frame"])
    assert not np.array_equal(backend.calls[0]["first"], backend.calls[1]["first"])


@pytest.mark.slow
def test_ltx_transition_pins_last_frame_on_final_chunk_only(
    models: dict[str, Path], still: Path, tmp_path: Path
) -> None:
    backend = RecordingLTX(models["ltx"], max_frames=9, max_area=64 * 32, preset="ultrafast")
    info = backend.render_transition(
        still, still, _request(still, duration=0.5), tmp_path / "t.mp4"
    )
    assert info.frame_count == 6 and probe(info.path).frame_count == 6
    assert [call["has_last"] for call in backend.calls] == [False, True]


@pytest.mark.slow
def test_wan_shot_and_first_last_frame_checkpoints(
    models: dict[str, Path], still: Path, tmp_path: Path
) -> None:
    # Resolved through the registry, as tasks do; the model loads lazily.
    wan = get_backend("wan", model=models["wan"], max_frames=9, max_area=64 * 32,
                      preset="ultrafast")  # fmt: skip
    assert wan.constraints.size_multiple == 16 and wan.constraints.frame_step == 4
    shot = wan.render_shot(_request(still, duration=0.5, fps=24), tmp_path / "wan.mp4")
    # 0.5 s at Wan's native 16 fps = 8 frames -> one 9-frame call, retimed to 12 at 24 fps.
    assert (shot.frame_count, shot.fps) == (12, pytest.approx(24))
    assert wan.last_chunks == [9]
    with pytest.raises(ValueError, match="without last-frame support"):
        wan.render_transition(still, still, _request(still, duration=0.5), tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists()

    flf = get_backend("wan", model=models["wan-flf2v"], max_frames=9, max_area=64 * 32,
                      preset="ultrafast")  # fmt: skip
    t = flf.render_transition(still, still, _request(still, duration=0.5), tmp_path / "t.mp4")
    assert t.frame_count == 6
    with pytest.raises(ValueError, match="transitions only"):
        flf.render_shot(_request(still, duration=0.5), tmp_path / "y.mp4")
    with pytest.raises(ValueError, match="cannot chunk"):
        flf.render_transition(still, still, _request(still, duration=2.0), tmp_path / "z.mp4")
