"""Animatic camera moves and the optical-flow morph, checked on real encoded clips.

Directions are measured, not assumed: phase correlation between consecutive decoded frames
gives the sign of the image motion, and a drawn white disc's radius gives the zoom.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from reelflow.media.frames import extract_frame, read_frames
from reelflow.media.probe import probe
from reelflow.motion.animatic import MOVEMENTS, camera_frames, render_camera_move
from reelflow.motion.morph import morph_frames, render_morph

W, H, FPS = 320, 180, 24
REPO = Path(__file__).resolve().parents[1]
STORYBOARD_MOVES = [
    "static", "push-in", "pull-out", "pan-left", "pan-right",
    "tilt-up", "tilt-down", "orbit", "tracking",
]  # fmt: skip


def _scene(width: int = 640, height: int = 360, seed: int = 0) -> np.ndarray:
    """Gradient + many small rectangles + fine noise (texture everywhere, so motion can be
    measured in any strip) + a white disc at the centre.

    Nothing but the disc is near-white (rectangle channels stay < 180, noise is +-20, the
    gradient has no green), so the disc can be segmented by threshold in any frame.
    """
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.int16)
    img[..., 0] = np.linspace(0, 235, width)[None, :].astype(np.int16)
    img[..., 2] = np.linspace(0, 235, height)[:, None].astype(np.int16)
    for _ in range(200):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(8, 60)), y0 + int(rng.integers(8, 60))
        colour = tuple(int(c) for c in rng.integers(0, 180, 3))
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, -1)
    noise = cv2.GaussianBlur(rng.normal(0, 40, (height, width, 3)), (0, 0), 1.5)
    img = np.clip(img + noise, 0, 235).astype(np.uint8)
    cv2.circle(img, (width // 2, height // 2), height // 9, (255, 255, 255), -1)
    return img


def _disc_radius(frame: np.ndarray) -> float:
    white = np.all(frame > 225, axis=2)
    return float(np.sqrt(white.sum() / np.pi))


def _shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(dx, dy) image motion from ``a`` to ``b``; positive dx = content moved right."""
    ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float32)
    win = cv2.createHanningWindow(ga.shape[::-1], cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(ga, gb, win)
    return dx, dy


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture(scope="module")
def scene_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    cv2.imwrite(str(path), cv2.cvtColor(_scene(), cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="module")
def clips(scene_png: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every storyboard movement rendered once (1.5 s at 320x180) from a PNG on disk."""
    out_dir = tmp_path_factory.mktemp("moves")
    out: dict[str, Path] = {}
    for movement in STORYBOARD_MOVES:
        info = render_camera_move(
            scene_png,
            out_dir / f"{movement}.mp4",
            duration=1.5,
            fps=FPS,
            width=W,
            height=H,
            movement=movement,
            preset="ultrafast",
        )
        assert info.frame_count == 36
        out[movement] = info.path
    return out


def _mid_pair(path: Path) -> tuple[np.ndarray, np.ndarray]:
    n = probe(path).frame_count
    frames = read_frames(path)
    pair = []
    for i, frame in enumerate(frames):
        if i in (n // 2 - 1, n // 2):
            pair.append(frame.copy())
        if len(pair) == 2:
            frames.close()
            break
    return pair[0], pair[1]


@pytest.mark.parametrize("movement", STORYBOARD_MOVES)
def test_every_movement_has_exact_timing_and_moves(movement: str, clips: dict[str, Path]) -> None:
    info = probe(clips[movement])
    assert (info.width, info.height) == (W, H)
    assert info.fps == pytest.approx(FPS)
    assert info.frame_count == round(1.5 * FPS)
    assert info.duration == pytest.approx(1.5)
    first = extract_frame(clips[movement], "first")
    last = extract_frame(clips[movement], "last")
    # Encoding noise alone is well under 1; every move, even the static drift, exceeds it.
    assert _mad(first, last) > 2.0


def test_static_only_drifts(clips: dict[str, Path]) -> None:
    static = _mad(extract_frame(clips["static"], "first"), extract_frame(clips["static"], "last"))
    pan = _mad(
        extract_frame(clips["pan-right"], "first"), extract_frame(clips["pan-right"], "last")
    )
    assert static < pan / 2
    dx, dy = _shift(*_mid_pair(clips["static"]))
    assert abs(dx) < 0.5 and abs(dy) < 0.5


@pytest.mark.parametrize(
    ("movement", "axis", "sign"),
    [
        ("pan-right", 0, -1),  # camera turns right: the picture slides left
        ("pan-left", 0, +1),
        ("tracking", 0, -1),  # camera slides right: the picture slides left
        ("tilt-up", 1, +1),  # camera tilts up: the picture slides down
        ("tilt-down", 1, -1),
    ],
)
def test_direction_of_image_motion(
    movement: str, axis: int, sign: int, clips: dict[str, Path]
) -> None:
    shift = _shift(*_mid_pair(clips[movement]))
    assert sign * shift[axis] > 0.4, f"{movement}: measured shift {shift}"
    assert abs(shift[1 - axis]) < 0.3, f"{movement}: unexpected cross-axis motion {shift}"


def test_push_in_grows_and_pull_out_shrinks_the_subject(clips: dict[str, Path]) -> None:
    r_in = [_disc_radius(extract_frame(clips["push-in"], w)) for w in ("first", "last")]
    r_out = [_disc_radius(extract_frame(clips["pull-out"], w)) for w in ("first", "last")]
    assert r_in[0] > 10
    # strength 0.15 -> 15 % zoom; allow for disc edge anti-aliasing and chroma subsampling.
    assert r_in[1] / r_in[0] == pytest.approx(1.15, abs=0.05)
    assert r_out[0] / r_out[1] == pytest.approx(1.15, abs=0.05)
    # The subject stays centred: push-in is a zoom, not a pan.
    last = extract_frame(clips["push-in"], "last")
    ys, xs = np.nonzero(np.all(last > 225, axis=2))
    assert abs(xs.mean() - W / 2) < 2 and abs(ys.mean() - H / 2) < 2


def _strip_shifts(path: Path) -> tuple[float, float, float]:
    """Horizontal motion first -> last frame of the top (far), middle and bottom (near) strips."""
    a, b = extract_frame(path, "first"), extract_frame(path, "last")
    strips = [slice(0, H // 4), slice(3 * H // 8, 5 * H // 8), slice(3 * H // 4, H)]
    return tuple(_shift(a[s], b[s])[0] for s in strips)  # type: ignore[return-value]


def test_tracking_has_parallax(clips: dict[str, Path]) -> None:
    far, _, near = _strip_shifts(clips["tracking"])
    assert far < -10 and near < -10  # everything slides left...
    assert near < far * 1.2  # ...the near layer clearly faster
    # A pan is a rotation: no parallax, every layer moves alike.
    pan = _strip_shifts(clips["pan-right"])
    assert max(pan) - min(pan) < 2.0, pan


def test_orbit_moves_background_and_foreground_apart(clips: dict[str, Path]) -> None:
    far, mid, near = _strip_shifts(clips["orbit"])
    # Orbit right: the background slides with the camera, the foreground against it.
    assert far > 10, (far, mid, near)
    assert near < far - 10, (far, mid, near)
    assert abs(mid) < far / 3  # the subject (centre) stays roughly put


def test_frame_count_rounds_odd_durations(tmp_path: Path) -> None:
    info = render_camera_move(
        _scene(), tmp_path / "odd.mp4", duration=1.03, fps=30, width=160, height=90,
        movement="pan-left", preset="ultrafast",
    )  # fmt: skip
    assert info.frame_count == 31
    assert info.fps == pytest.approx(30)


def test_source_of_other_aspect_never_shows_borders() -> None:
    """A square still in a 16:9 frame, and a tall one: every pose stays inside the picture."""
    for shape in ((300, 300), (400, 200)):
        img = np.full((*shape, 3), 180, np.uint8)
        for movement in MOVEMENTS:
            for frame in camera_frames(
                img, n_frames=5, width=160, height=90, movement=movement, strength=0.3
            ):
                # Reflection at the border would still be grey; a missing margin shows black.
                assert frame.min() >= 170, (shape, movement)
    assert len(list(camera_frames(_scene(), n_frames=1, width=64, height=36,
                                  movement="orbit"))) == 1  # fmt: skip


def test_easing_starts_slow() -> None:
    frames = list(
        camera_frames(_scene(), n_frames=25, width=W, height=H, movement="pan-right",
                      easing="ease-in-out")
    )  # fmt: skip
    start = abs(_shift(frames[0], frames[1])[0])
    middle = abs(_shift(frames[12], frames[13])[0])
    assert start < middle / 4
    linear = list(
        camera_frames(_scene(), n_frames=25, width=W, height=H, movement="pan-right",
                      easing="linear")
    )  # fmt: skip
    assert abs(_shift(linear[0], linear[1])[0]) == pytest.approx(
        abs(_shift(linear[12], linear[13])[0]), rel=0.25
    )


def test_rejects_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="movement"):
        next(camera_frames(_scene(), n_frames=2, width=64, height=36, movement="dolly-zoom"))
    with pytest.raises(ValueError, match="easing"):
        next(camera_frames(_scene(), n_frames=2, width=64, height=36, movement="static",
                           easing="bouncy"))  # fmt: skip
    with pytest.raises(ValueError):
        render_camera_move(_scene(), tmp_path / "x.mp4", duration=0, fps=24, width=64,
                           height=36, movement="static")  # fmt: skip
    assert not (tmp_path / "x.mp4").exists()


# -- morph -----------------------------------------------------------------------------------


def _textured(seed: int, tint: tuple[int, int, int]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, (H, W, 3)).astype(np.uint8)
    tex = cv2.GaussianBlur(noise, (0, 0), 3)
    return np.clip(tex.astype(np.int16) // 2 + np.array(tint, np.int16), 0, 255).astype(np.uint8)


def _yellow_centroid(frame: np.ndarray) -> tuple[float, int]:
    mask = (frame[..., 0] > 200) & (frame[..., 1] > 180) & (frame[..., 2] < 90)
    xs = np.nonzero(mask)[1]
    return (float(xs.mean()) if xs.size else float("nan")), int(mask.sum())


def test_morph_ends_on_both_stills_and_moves_shared_structure(tmp_path: Path) -> None:
    tex = _textured(1, (40, 40, 40))
    a = tex.copy()
    cv2.circle(a, (120, 90), 30, (255, 220, 0), -1)
    b = np.clip(tex.astype(np.int16) + np.array([0, 50, 0], np.int16), 0, 255).astype(np.uint8)
    cv2.circle(b, (160, 90), 30, (255, 220, 0), -1)

    info = render_morph(a, b, tmp_path / "m.mp4", duration=1.0, fps=FPS, width=W, height=H,
                        preset="ultrafast", crf=12)  # fmt: skip
    assert info.frame_count == FPS and info.fps == pytest.approx(FPS)
    first, last = extract_frame(info.path, "first"), extract_frame(info.path, "last")
    mid = extract_frame(info.path, FPS // 2)
    assert _mad(first, a) < 3 and _mad(last, b) < 3
    assert _mad(mid, a) > 8 and _mad(mid, b) > 8

    # A crossfade would show two half-strength discs (no solid yellow) at mid-time; the
    # flow morph carries one solid disc halfway across.
    frames = list(morph_frames(a, b, n_frames=9, width=W, height=H, easing="linear"))
    cx, area = _yellow_centroid(frames[4])
    assert area > 0.7 * np.pi * 30**2
    assert cx == pytest.approx(140, abs=5)
    assert _yellow_centroid(frames[2])[0] == pytest.approx(130, abs=5)


def test_morph_of_unrelated_stills_degrades_to_a_clean_crossfade() -> None:
    a = np.full((H, W, 3), (30, 40, 90), np.uint8)
    b = np.full((H, W, 3), (40, 110, 50), np.uint8)
    cv2.rectangle(b, (150, 50), (230, 130), (255, 220, 0), -1)
    mid = list(morph_frames(a, b, n_frames=3, width=W, height=H, easing="linear"))[1]
    left = mid[:, :100].reshape(-1, 3).astype(np.float32)
    # Flat regions stay flat (no flow texture drawn into them) at the halfway colour.
    assert left.std(axis=0).max() < 2.0
    assert np.allclose(left.mean(axis=0), [35, 75, 70], atol=3)


# -- streaming -------------------------------------------------------------------------------

_RSS_SCRIPT = """
import json, resource, sys
from pathlib import Path
import numpy as np
from reelflow.motion.animatic import render_camera_move
from reelflow.motion.morph import render_morph
seconds, out = float(sys.argv[1]), Path(sys.argv[2])
img = np.random.default_rng(0).integers(0, 255, (360, 640, 3)).astype(np.uint8)
img2 = img[:, ::-1].copy()
a = render_camera_move(img, out / "cam.mp4", duration=seconds, fps=24, width=320, height=180,
                       movement="orbit", preset="ultrafast")
b = render_morph(img, img2, out / "morph.mp4", duration=seconds, fps=24, width=320, height=180,
                 preset="ultrafast")
print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "frames": [a.frame_count, b.frame_count]}))
"""


def _peak_rss(seconds: float, out: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(seconds), str(out)],
        capture_output=True, text=True, env=env, check=True, timeout=300,
    )  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_long_renders_stream_instead_of_buffering(tmp_path: Path) -> None:
    """20 s vs 2 s: 480 RGB frames at 320x180 would be ~83 MB if anything kept them."""
    short = _peak_rss(2, tmp_path)
    long = _peak_rss(20, tmp_path)
    assert short["frames"] == [48, 48] and long["frames"] == [480, 480]
    growth_mb = (int(long["maxrss_kb"]) - int(short["maxrss_kb"])) / 1024  # type: ignore[call-overload]
    assert growth_mb < 25, f"peak RSS grew {growth_mb:.1f} MB from 2 s to 20 s"
