"""The backend contract: constraints arithmetic, request validation, the animatic backend."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from reelflow.media.frames import extract_frame
from reelflow.motion.backends import (
    AnimaticBackend,
    BackendConstraints,
    ClipRequest,
    VideoBackend,
    available_backends,
    capabilities,
    get_backend,
    register_backend,
)

LTX = BackendConstraints(size_multiple=32, frame_step=8, frame_offset=1, max_frames=121)


def test_fit_frames_follows_the_8k_plus_1_rule() -> None:
    assert LTX.fit_frames(48) == 49
    assert LTX.fit_frames(49) == 49
    assert LTX.fit_frames(50) == 57
    assert LTX.fit_frames(1) == 1
    assert LTX.fit_frames(500) == 121  # capped at max_frames
    assert LTX.valid_frames(49) and not LTX.valid_frames(48) and not LTX.valid_frames(129)
    assert BackendConstraints().fit_frames(37) == 37


@pytest.mark.parametrize("n", [1, 48, 121, 122, 240, 241, 600])
def test_chunks_are_valid_and_cover_the_shot(n: int) -> None:
    chunks = LTX.chunks(n)
    assert all(LTX.valid_frames(c) for c in chunks), chunks
    # Every chunk after the first re-generates the previous chunk's last frame.
    useful = chunks[0] + sum(c - 1 for c in chunks[1:])
    assert useful >= n
    assert useful - n < LTX.frame_step + 1  # no wasted chunk, at most one rounding step
    assert (len(chunks) == 1) == (n <= 121)


def test_fit_size_snaps_to_the_multiple() -> None:
    w, h = LTX.fit_size(1280, 720)
    assert w == 1280 and h % 32 == 0 and abs(h - 720) <= 16
    assert LTX.fit_size(10, 10) == (32, 32)


def _req(tmp_path: Path, **kw: object) -> ClipRequest:
    base: dict[str, object] = {
        "images": [tmp_path / "a.png"],
        "duration": 1.0,
        "fps": 24,
        "width": 160,
        "height": 90,
    }
    base.update(kw)
    return ClipRequest.model_validate(base)


def test_clip_request_validation(tmp_path: Path) -> None:
    assert _req(tmp_path, duration=1.03, fps=30).n_frames == 31
    with pytest.raises(ValidationError, match="movement"):
        _req(tmp_path, movement="dolly-zoom")
    with pytest.raises(ValidationError, match="easing"):
        _req(tmp_path, easing="bouncy")
    with pytest.raises(ValidationError, match="even"):
        _req(tmp_path, width=161)
    with pytest.raises(ValidationError, match="Extra inputs"):
        _req(tmp_path, motion="slow")
    with pytest.raises(ValidationError):
        _req(tmp_path, duration=0)
    with pytest.raises(ValidationError, match="at least 1"):
        _req(tmp_path, images=[])


def _write_png(path: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def test_animatic_backend_renders_shots_and_transitions(tmp_path: Path) -> None:
    backend = get_backend("animatic", preset="ultrafast")
    assert isinstance(backend, VideoBackend) and isinstance(backend, AnimaticBackend)
    assert backend.identity == {"backend": "animatic", "version": "1"}
    rng = np.random.default_rng(0)
    blurred = cv2.GaussianBlur(rng.normal(0, 1, (180, 320, 3)), (0, 0), 6)
    a = cv2.normalize(blurred, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    b = np.ascontiguousarray(a[::-1])
    pa, pb = _write_png(tmp_path / "a.png", a), _write_png(tmp_path / "b.png", b)

    request = _req(tmp_path, movement="push-in", duration=0.5, images=[pa])
    shot = backend.render_shot(request, tmp_path / "shot.mp4")
    assert (shot.frame_count, shot.width, shot.height) == (12, 160, 90)
    assert shot.path == tmp_path / "shot.mp4"

    info = backend.render_transition(pa, pb, request, tmp_path / "t.mp4")
    assert info.frame_count == 12
    small = (160, 90)
    want_a = cv2.resize(a, small, interpolation=cv2.INTER_AREA).astype(np.int16)
    want_b = cv2.resize(b, small, interpolation=cv2.INTER_AREA).astype(np.int16)
    first = extract_frame(info.path, "first").astype(np.int16)
    last = extract_frame(info.path, "last").astype(np.int16)
    assert np.abs(first - want_a).mean() < 6 and np.abs(last - want_b).mean() < 6
    assert np.abs(first - want_b).mean() > 15


def test_registry(tmp_path: Path) -> None:
    assert {"animatic", "ltx", "wan"} <= set(available_backends())
    with pytest.raises(KeyError, match="unknown video backend"):
        get_backend("sora")

    class NotABackend:
        pass

    with pytest.raises(TypeError, match="must declare its capabilities"):
        register_backend("broken-test", NotABackend)  # type: ignore[arg-type]
    register_backend("broken-test", NotABackend, capabilities("animatic"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="does not implement"):
        get_backend("broken-test")
