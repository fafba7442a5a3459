"""Camera-move animatic: a moving virtual camera over one still, with no model at all.

This is the preview a director times the cut with, and the offline default backend: it renders
in real time on a CPU, is deterministic, and moves the camera the way the storyboard says, so
the edit can be locked before any GPU time is spent on image-to-video.

The geometry works in *cover coordinates*: the still scaled so it just covers the output frame
(zoom 1 shows the whole composition). A pose is a zoom, a view-centre offset, and for the
2.5D moves (tracking, orbit) a parallax shift scaled by a pseudo-depth map plus a small yaw
keystone. Each pose gets the smallest extra zoom that keeps the view inside the picture, found
numerically, so no move ever shows a border. The source is pre-scaled once to the sharpest
resolution the shot needs; every frame is one ``warpAffine``/``remap`` straight into the
encoder, so memory stays at a few frames whatever the duration.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import cv2
import numpy as np

from reelflow.media.frames import VideoWriter
from reelflow.media.probe import VideoInfo
from reelflow.motion.common import ImageLike, ease, frame_count, frame_times, load_rgb
from reelflow.storyboard import Movement

__all__ = [
    "DEFAULT_STRENGTH",
    "MOVEMENTS",
    "camera_frames",
    "pseudo_depth",
    "render_camera_move",
    "visible_region",
]

#: Movement names the animatic understands. The first nine are the storyboard vocabulary;
#: orbit and tracking default to moving right, and take an explicit ``-left``/``-right`` too.
MOVEMENTS: tuple[str, ...] = (
    *get_args(Movement),
    "orbit-left",
    "orbit-right",
    "tracking-left",
    "tracking-right",
)

_MAX_ZOOM = 4.0

#: how far a move travels unless told (a fraction of the composition); the clip step's default,
#: and what :func:`visible_region` assumes when a drawn still lays out its text
DEFAULT_STRENGTH = 0.15


@dataclass(frozen=True)
class _Pose:
    """One frame's virtual camera, in cover coordinates.

    ``ox``/``oy`` move the view centre by a fraction of the composition's width/height (positive
    is right/down). ``parallax`` shifts the sampling point horizontally by
    ``parallax * width * (depth - pivot)``: near and far layers slide by different amounts.
    ``yaw`` (radians) turns the camera about its vertical axis, giving a keystone.
    """

    zoom: float = 1.0
    ox: float = 0.0
    oy: float = 0.0
    parallax: float = 0.0
    yaw: float = 0.0

    @property
    def is_affine(self) -> bool:
        return self.parallax == 0.0 and self.yaw == 0.0


def _pose(movement: str, t: float, e: float, s: float) -> _Pose:
    """The pose at linear progress ``t`` (eased ``e``) for strength ``s``, before fitting."""
    sweep = e - 0.5  # -0.5 .. +0.5 across the shot
    if movement == "static":
        # A locked-off shot still breathes a little; a dead-still frame reads as a still image.
        return _Pose(zoom=1.0 + 0.05 * s * t, ox=0.1 * s * (t - 0.5), oy=-0.04 * s * (t - 0.5))
    if movement == "push-in":
        return _Pose(zoom=1.0 + s * e)
    if movement == "pull-out":
        return _Pose(zoom=1.0 + s * (1.0 - e))
    if movement == "pan-left":
        return _Pose(ox=-s * sweep)
    if movement == "pan-right":
        return _Pose(ox=s * sweep)
    if movement == "tilt-up":
        return _Pose(oy=-s * sweep)
    if movement == "tilt-down":
        return _Pose(oy=s * sweep)
    if movement in ("tracking", "tracking-right", "tracking-left"):
        sign = -1.0 if movement == "tracking-left" else 1.0
        # Camera slides sideways: everything moves against it, near layers faster.
        return _Pose(ox=sign * s * sweep, parallax=0.4 * sign * s * sweep)
    if movement in ("orbit", "orbit-right", "orbit-left"):
        sign = -1.0 if movement == "orbit-left" else 1.0
        # Camera circles the subject at the pivot depth: the background slides with the camera,
        # the foreground against it, the subject stays put, and the frame turns slightly.
        return _Pose(parallax=0.6 * sign * s * sweep, yaw=-0.4 * sign * s * sweep)
    raise ValueError(f"unknown movement {movement!r}; choose from {list(MOVEMENTS)}")


def pseudo_depth(width: int, height: int) -> np.ndarray:
    """A generic depth guess (1 = near, 0 = far) for 2.5D moves when no depth map is given.

    Most establishing and story frames have a ground plane (lower is nearer) and a subject near
    the centre; blending those two cues gives plausible parallax on typical generated stills.
    A real monocular depth map can be passed to :func:`camera_frames` instead.
    """
    y = (np.arange(height, dtype=np.float32) + 0.5) / height
    x = (np.arange(width, dtype=np.float32) + 0.5) / width
    ramp = np.broadcast_to(y[:, None], (height, width))
    blob = np.exp(-(((x[None, :] - 0.5) / 0.3) ** 2) - (((y[:, None] - 0.55) / 0.35) ** 2))
    depth = 0.65 * ramp + 0.35 * blob
    depth -= depth.min()
    depth /= max(float(depth.max()), 1e-6)
    return depth.astype(np.float32)


def _yaw_homography(yaw: float, width: int, height: int) -> np.ndarray:
    """Map output points to where a camera turned by ``yaw`` sees them, centre held fixed."""
    f = float(width)  # ~53 degree horizontal field of view, a normal lens
    k = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=np.float64)
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)
    hom = k @ rot @ np.linalg.inv(k)
    centre = hom @ np.array([width / 2, height / 2, 1.0])
    centre /= centre[2]
    shift = np.array([[1, 0, width / 2 - centre[0]], [0, 1, height / 2 - centre[1]], [0, 0, 1]])
    return shift @ hom


def _apply_homography(hom: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    w = hom[2, 0] * x + hom[2, 1] * y + hom[2, 2]
    return (
        (hom[0, 0] * x + hom[0, 1] * y + hom[0, 2]) / w,
        (hom[1, 0] * x + hom[1, 1] * y + hom[1, 2]) / w,
    )


class _Camera:
    """Samples cover coordinates for output pixels; shared by fitting and rendering."""

    def __init__(
        self,
        width: int,
        height: int,
        cover_w: float,
        cover_h: float,
        depth: np.ndarray,
        pivot: float,
    ) -> None:
        self.width, self.height = width, height
        self.cover_w, self.cover_h = cover_w, cover_h
        self.depth = depth
        self.pivot = pivot

    def sample(
        self, pose: _Pose, zoom: float, x: np.ndarray, y: np.ndarray, depth: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cover coordinates (continuous, pixel centre = i + 0.5) seen at output points x, y."""
        if pose.yaw:
            x, y = _apply_homography(_yaw_homography(pose.yaw, self.width, self.height), x, y)
        cx = self.cover_w / 2 + pose.ox * self.cover_w
        cy = self.cover_h / 2 + pose.oy * self.cover_h
        sx = cx + (x - self.width / 2) / zoom
        sy = cy + (y - self.height / 2) / zoom
        if pose.parallax:
            sx = sx + pose.parallax * self.cover_w * (depth - self.pivot)
        return sx, sy

    def fits(self, pose: _Pose, zoom: float, grid: tuple[np.ndarray, ...]) -> bool:
        sx, sy = self.sample(pose, zoom, *grid)
        eps = 1e-6
        return bool(
            sx.min() >= -eps
            and sy.min() >= -eps
            and sx.max() <= self.cover_w + eps
            and sy.max() <= self.cover_h + eps
        )

    def min_zoom(self, pose: _Pose, grid: tuple[np.ndarray, ...]) -> float:
        """Smallest zoom >= pose.zoom at which the view stays inside the picture (bisection)."""
        lo = pose.zoom
        if self.fits(pose, lo, grid):
            return lo
        hi = lo
        while not self.fits(pose, hi, grid):
            hi *= 1.25
            if hi > _MAX_ZOOM:  # offset larger than the picture: clamp, the border reflects
                return _MAX_ZOOM
        for _ in range(30):
            mid = (lo + hi) / 2
            if self.fits(pose, mid, grid):
                hi = mid
            else:
                lo = mid
        return hi


@dataclass(frozen=True)
class _Move:
    """A fitted move: the camera, each frame's pose and zoom, and the source's cover scale."""

    camera: _Camera
    poses: list[_Pose]
    zooms: list[float]
    cover: float


def _plan(
    movement: str,
    n_frames: int,
    size: tuple[int, int],
    source_size: tuple[int, int],
    easing: str,
    strength: float,
    depth: np.ndarray | None,
) -> _Move:
    """Validate a move and fit every frame's zoom: what rendering and :func:`visible_region`
    share, so the region a panel lays its text in is the one the frames really show."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    if movement not in MOVEMENTS:
        raise ValueError(f"unknown movement {movement!r}; choose from {list(MOVEMENTS)}")
    ease(easing, 0.0)  # validate the name before any work

    (width, height), (w0, h0) = size, source_size
    cover = max(width / w0, height / h0)
    cover_w, cover_h = w0 * cover, h0 * cover

    if depth is None:
        dmap = pseudo_depth(width, height)
    else:
        d = np.asarray(depth, dtype=np.float32)
        if d.ndim != 2:
            raise ValueError(f"depth must be HxW, got shape {d.shape}")
        dmap = cv2.resize(d, (width, height), interpolation=cv2.INTER_LINEAR)
        dmap = (dmap - dmap.min()) / max(float(dmap.max() - dmap.min()), 1e-6)
    pivot = float(dmap[height // 2, width // 2])
    cam = _Camera(width, height, cover_w, cover_h, dmap, pivot)

    # Fit: one coarse grid over the output (edges included) is enough to bound every sample.
    gx = np.linspace(0, width, 33, dtype=np.float64)
    gy = np.linspace(0, height, 19, dtype=np.float64)
    cgx, cgy = np.meshgrid(gx, gy)
    cdepth = cv2.resize(dmap, (33, 19), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    grid = (cgx, cgy, cdepth)

    times = frame_times(n_frames)
    poses = [_pose(movement, t, ease(easing, t), strength) for t in times]
    # Moves that do not zoom on purpose keep one constant zoom (a zoom that creeps with the
    # offset would read as an unintended push-in); push-in/pull-out fit per frame.
    zooms = [cam.min_zoom(p, grid) for p in poses]
    if movement not in ("push-in", "pull-out"):
        base = max(z / p.zoom for z, p in zip(zooms, poses, strict=True))
        zooms = [p.zoom * base for p in poses]
    return _Move(cam, poses, zooms, cover)


def camera_frames(
    image: ImageLike,
    *,
    n_frames: int,
    width: int,
    height: int,
    movement: str,
    easing: str = "ease-in-out",
    strength: float = DEFAULT_STRENGTH,
    depth: np.ndarray | None = None,
) -> Iterator[np.ndarray]:
    """Yield ``n_frames`` HxWx3 uint8 RGB frames of ``movement`` over ``image``, one at a time.

    ``strength`` is how far the camera travels, as a fraction of the composition: 0.15 pans
    across 15 % of the width, or pushes in 15 %. ``depth`` (HxW, any size, larger = nearer)
    drives the parallax of tracking/orbit; without it :func:`pseudo_depth` is used.
    """
    src = load_rgb(image)
    h0, w0 = src.shape[:2]
    move = _plan(movement, n_frames, (width, height), (w0, h0), easing, strength, depth)
    cam, poses, zooms, dmap = move.camera, move.poses, move.zooms, move.camera.depth
    cover, cover_w, cover_h = move.cover, cam.cover_w, cam.cover_h
    z_max = max(zooms)

    # Pre-scale once so the tightest frame samples the source at ~1:1 (sharp) and wider
    # frames only downsample a little.
    k = cover * z_max
    sw, sh = max(1, round(w0 * k)), max(1, round(h0 * k))
    interp = cv2.INTER_AREA if sw * sh < w0 * h0 else cv2.INTER_CUBIC
    scaled = cv2.resize(src, (sw, sh), interpolation=interp)
    del src
    kx, ky = sw / cover_w, sh / cover_h  # cover -> scaled-source factor (== z_max up to rounding)

    px = np.arange(width, dtype=np.float32) + 0.5
    py = np.arange(height, dtype=np.float32) + 0.5
    full_x, full_y = np.meshgrid(px, py)
    flags = cv2.INTER_LINEAR
    border = cv2.BORDER_REFLECT_101

    for pose, zoom in zip(poses, zooms, strict=True):
        if pose.is_affine:
            # Output pixel index p -> scaled-source index: k*(c + (p + 0.5 - O)/zoom) - 0.5.
            cx = cover_w / 2 + pose.ox * cover_w
            cy = cover_h / 2 + pose.oy * cover_h
            m = np.array(
                [
                    [kx / zoom, 0.0, kx * (cx + (0.5 - width / 2) / zoom) - 0.5],
                    [0.0, ky / zoom, ky * (cy + (0.5 - height / 2) / zoom) - 0.5],
                ],
                dtype=np.float64,
            )
            frame = cv2.warpAffine(
                scaled, m, (width, height), flags=flags | cv2.WARP_INVERSE_MAP, borderMode=border
            )
        else:
            sx, sy = cam.sample(pose, zoom, full_x, full_y, dmap)
            map_x = (sx * kx - 0.5).astype(np.float32)
            map_y = (sy * ky - 0.5).astype(np.float32)
            frame = cv2.remap(scaled, map_x, map_y, flags, borderMode=border)
        yield frame


def visible_region(
    movement: str,
    width: int,
    height: int,
    *,
    easing: str = "ease-in-out",
    strength: float = DEFAULT_STRENGTH,
    depth: np.ndarray | None = None,
    n_frames: int = 25,
) -> tuple[float, float, float, float]:
    """The part of a still that every frame of ``movement`` shows, as fractions of the still
    (x0, y0, x1, y1), for a ``width`` x ``height`` output of the still's own shape.

    What a drawn still (a previz panel) keeps its text inside, so a push-in or a tracking shot
    never starts with a cut-off caption. Each frame sees, row by row, the source between its
    left and right edges' samples (the map is continuous along a row); the box takes the
    innermost edge of every frame, so it is inside the view of all of them. The extremes of
    every move are its first and last frames, which any ``n_frames`` >= 2 includes.
    """
    size = (width, height)
    move = _plan(movement, max(2, n_frames), size, size, easing, strength, depth)
    cam = move.camera
    ys = np.linspace(0, height, 65)
    xs = np.linspace(0, width, 65)
    rows = np.clip(ys.astype(int), 0, height - 1)
    cols = np.clip(xs.astype(int), 0, width - 1)
    edges = {  # output boundary points and their depth: left, right, top, bottom
        "left": (np.zeros_like(ys), ys, cam.depth[rows, 0]),
        "right": (np.full_like(ys, width), ys, cam.depth[rows, -1]),
        "top": (xs, np.zeros_like(xs), cam.depth[0, cols]),
        "bottom": (xs, np.full_like(xs, height), cam.depth[-1, cols]),
    }
    x0, y0, x1, y1 = 0.0, 0.0, 1.0, 1.0
    for pose, zoom in zip(move.poses, move.zooms, strict=True):
        seen = {name: cam.sample(pose, zoom, *points) for name, points in edges.items()}
        x0 = max(x0, float(seen["left"][0].max()) / cam.cover_w)
        x1 = min(x1, float(seen["right"][0].min()) / cam.cover_w)
        y0 = max(y0, float(seen["top"][1].max()) / cam.cover_h)
        y1 = min(y1, float(seen["bottom"][1].min()) / cam.cover_h)
    return x0, y0, x1, y1


def render_camera_move(
    image: ImageLike,
    out: Path,
    *,
    duration: float,
    fps: int,
    width: int,
    height: int,
    movement: str,
    easing: str = "ease-in-out",
    strength: float = DEFAULT_STRENGTH,
    depth: np.ndarray | None = None,
    crf: int = 18,
    preset: str = "medium",
) -> VideoInfo:
    """Render ``movement`` over ``image`` to an H.264 MP4 at ``out`` and return its probe.

    The clip has exactly ``round(duration * fps)`` frames. Frames are generated and encoded one
    at a time, so a long shot costs no more memory than a short one.
    """
    n = frame_count(duration, fps)
    frames = camera_frames(
        image,
        n_frames=n,
        width=width,
        height=height,
        movement=movement,
        easing=easing,
        strength=strength,
        depth=depth,
    )
    with VideoWriter(out, width=width, height=height, fps=fps, crf=crf, preset=preset) as w:
        for frame in frames:
            w.write(frame)
    assert w.info is not None
    return w.info
