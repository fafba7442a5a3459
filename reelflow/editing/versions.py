"""Delivery versions: aspect ratios (16:9, 9:16, 1:1) with a subject-following crop, and codecs.

Subject-following crop
----------------------
A 16:9 film becomes 9:16 by keeping a window about a third of its width; a fixed centre crop
cuts off whoever is not in the middle. The window instead follows the subject:

1. one streaming pass samples the film at ``analysis_fps`` (4 per second) at 160 px wide;
2. each sample's *attention map* is the frame difference to the previous sample (what moves is
   what the eye follows) plus a small share of edge energy (where the detail is, so a still
   shot still has a subject); its weighted centroid is the subject's position;
3. the positions are smoothed with a centred moving average over ``smooth`` seconds (a crop
   that twitches with every sample looks like a nervous camera operator) and clamped so the
   window stays inside the frame;
4. ffmpeg's ``crop`` is steered per frame with ``sendcmd`` (positions interpolated between
   samples), so the crop itself happens inside the encode, frame by frame.

Memory is one analysis frame plus one number per sample, whatever the film's length.

Codecs: ``h264`` (libx264, everywhere), ``h265`` (libx265, tagged ``hvc1`` for Apple players),
``av1`` (libsvtav1, else libaom-av1), each only where this ffmpeg build has the encoder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

from reelflow.media.encode import Codec, VideoEncode
from reelflow.media.ffmpeg import PathLike, has_encoder, run
from reelflow.media.frames import iter_frames
from reelflow.media.probe import probe

if TYPE_CHECKING:
    from reelflow.editing.upscaler import UpscalerChoice

__all__ = [
    "ASPECTS", "available_codecs", "codec_args", "crop_window", "export_version",
    "reframe_filter", "render_version_part", "subject_path",
]  # fmt: skip

ASPECTS: dict[str, tuple[int, int]] = {"16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1)}


def codec_args(codec: Codec, crf: int | None = None) -> list[str]:
    """Encoder arguments for ``codec`` (yuv420p) at a quality comparable across codecs by
    default (see :data:`reelflow.media.encode.DEFAULT_CRF`)."""
    if codec not in ("h264", "h265", "av1"):
        raise ValueError(f"unknown codec {codec!r}")
    return VideoEncode(codec=codec, crf=crf).args()


def available_codecs() -> list[Codec]:
    """The codecs this ffmpeg build can export."""
    out: list[Codec] = ["h264"]
    if has_encoder("libx265"):
        out.append("h265")
    if has_encoder("libsvtav1") or has_encoder("libaom-av1"):
        out.append("av1")
    return out


def _attention(grey: np.ndarray, prev: np.ndarray | None) -> np.ndarray:
    g = grey.astype(np.float32)
    edges = cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    edges /= max(float(edges.sum()), 1e-6)
    if prev is None:
        return edges
    motion = cv2.GaussianBlur(np.abs(g - prev.astype(np.float32)), (0, 0), 2)
    total = float(motion.sum())
    if total < 1e-3 * g.size:  # (almost) nothing moves: the detail is the subject
        return edges
    return 0.85 * motion / total + 0.15 * edges


def subject_path(
    video: PathLike,
    *,
    follow: Literal["motion", "center"] = "motion",
    analysis_fps: float = 4.0,
    smooth: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(times, xs, ys)``: smoothed subject position over time, as fractions of width/height."""
    info = probe(video)
    if follow == "center":
        return np.array([0.0]), np.array([0.5]), np.array([0.5])
    aw = 160
    ah = max(2, round(info.height * aw / info.width / 2) * 2)
    times, xs, ys = [], [], []
    prev = None
    for k, frame in enumerate(iter_frames(video, size=(aw, ah), vf=f"fps={analysis_fps}")):
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        weight = _attention(grey, prev)
        prev = grey
        total = float(weight.sum())
        if total <= 0:
            cx, cy = 0.5, 0.5
        else:
            cx = float((weight.sum(axis=0) * (np.arange(aw) + 0.5)).sum() / total) / aw
            cy = float((weight.sum(axis=1) * (np.arange(ah) + 0.5)).sum() / total) / ah
        times.append(k / analysis_fps)
        xs.append(cx)
        ys.append(cy)
    if not times:
        return np.array([0.0]), np.array([0.5]), np.array([0.5])
    win = max(1, int(round(smooth * analysis_fps)) | 1)  # odd window, centred
    kernel = np.ones(win) / win

    def smoothed(v: list[float]) -> np.ndarray:
        padded = np.pad(np.asarray(v), win // 2, mode="edge")
        return np.convolve(padded, kernel, mode="valid")

    return np.asarray(times), smoothed(xs), smoothed(ys)


def crop_window(src_w: int, src_h: int, aspect: str, height: int | None = None
                ) -> tuple[int, int, int, int]:
    """``(cw, ch, out_w, out_h)``: the crop window in the source and the output size."""
    if aspect not in ASPECTS:
        raise ValueError(f"aspect must be one of {sorted(ASPECTS)}, got {aspect!r}")
    aw, ah = ASPECTS[aspect]
    if src_w / src_h > aw / ah:  # window narrower than the source: move horizontally
        cw, ch = int(src_h * aw / ah) // 2 * 2, src_h // 2 * 2
    else:
        cw, ch = src_w // 2 * 2, int(src_w * ah / aw) // 2 * 2
    out_h = (height or ch) // 2 * 2
    out_w = max(2, round(out_h * cw / ch / 2) * 2)
    return cw, ch, out_w, out_h


def reframe_filter(
    video: PathLike,
    work: Path,
    *,
    aspect: str,
    height: int | None = None,
    follow: Literal["motion", "center"] = "motion",
    smooth: float = 1.0,
) -> tuple[str, int, int]:
    """The subject-following crop as a filter chain (its ``sendcmd`` file written to
    ``work``), and the output ``(width, height)``: reusable inside a larger encode."""
    info = probe(video)
    src_w, src_h = info.width, info.height
    cw, ch, out_w, out_h = crop_window(src_w, src_h, aspect, height)
    times, xs, ys = subject_path(video, follow=follow, smooth=smooth)
    cmds = work / "crop.cmd"
    x0 = np.clip(np.round(xs * src_w - cw / 2), 0, src_w - cw).astype(int)
    y0 = np.clip(np.round(ys * src_h - ch / 2), 0, src_h - ch).astype(int)
    with cmds.open("w") as f:  # one command per output frame, positions interpolated
        for n in range(max(1, info.frame_count)):
            t = n / info.fps if info.fps else 0.0
            x = int(round(np.interp(t, times, x0)))
            y = int(round(np.interp(t, times, y0)))
            f.write(f"{t:.6f} crop@follow x {x}, crop@follow y {y};\n")
    vf = (
        f"sendcmd=f={cmds},crop@follow=w={cw}:h={ch}:x={x0[0]}:y={y0[0]},"
        f"scale={out_w}:{out_h}:flags=lanczos,setsar=1"
    )
    return vf, out_w, out_h


def export_version(
    video: PathLike,
    out: PathLike,
    *,
    aspect: str = "9:16",
    height: int | None = None,
    codec: Codec = "h264",
    crf: int | None = None,
    follow: Literal["motion", "center"] = "motion",
    smooth: float = 1.0,
) -> Path:
    """Write ``video`` re-framed to ``aspect`` (a key of :data:`ASPECTS`) and encoded as ``codec``.

    The output is ``height`` pixels tall (default: the source height), audio copied.
    """
    if aspect not in ASPECTS:
        raise ValueError(f"aspect must be one of {sorted(ASPECTS)}, got {aspect!r}")
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="reelflow-version-") as tmp:
        vf, _, _ = reframe_filter(
            video, Path(tmp), aspect=aspect, height=height, follow=follow, smooth=smooth
        )
        tmp_out = out.with_name(out.stem + ".tmp" + (out.suffix or ".mp4"))
        run(
            ["-i", str(video), "-map", "0:v:0", "-map", "0:a?", "-vf", vf,
             *codec_args(codec, crf), "-c:a", "copy",
             "-movflags", "+faststart", str(tmp_out)],
            what=f"export {aspect} {codec} version of {Path(video).name}",
        )  # fmt: skip
    os.replace(tmp_out, out)
    return out


def render_version_part(
    part: PathLike,
    out: PathLike,
    *,
    frames: int,
    aspect: str | None = None,
    codec: Codec = "h264",
    crf: int | None = None,
    preset: str | None = None,
    threads: int | None = None,
    enhance: Sequence[str] = (),
    subtitles: PathLike | None = None,
    fonts_dir: PathLike | None = None,
    upscale: tuple[UpscalerChoice, PathLike, tuple[int, int]] | None = None,
    fps: float | None = None,
) -> Path:
    """One part of a delivered version in ONE encode: reframe (``aspect``), then the
    ``enhance`` filters, then the captions of ``subtitles`` (an ASS file for the output size)
    burned in; exactly ``frames`` frames, MPEG-TS so the parts join by stream copy.

    ``upscale``: (upscaler, its folder, the delivery size): the learned upscaler runs between
    the ``enhance`` filters (which then hold no scale) and a scale to the delivery size, and
    the captions are drawn after it, at that size; ``fps``: the part's frame rate then."""
    out = Path(out)
    chain: list[str] = []
    with tempfile.TemporaryDirectory(prefix="reelflow-vpart-") as tmp:
        size_in = None
        if aspect is not None:
            vf, out_w, out_h = reframe_filter(part, Path(tmp), aspect=aspect)
            chain.append(vf)
            size_in = (out_w, out_h)
        chain += list(enhance)
        after: list[str] = []
        if upscale is not None:
            after.append(f"scale={upscale[2][0]}:{upscale[2][1]}:flags=lanczos")
        if subtitles is not None:
            sub = f"subtitles=filename={subtitles}"
            (after if upscale is not None else chain).append(
                sub + (f":fontsdir={fonts_dir}" if fonts_dir else ""))
        # MPEG-TS has no MP4 tag (the join sets it); an H.264 part is encoded like the film's
        encode = VideoEncode(codec=codec, crf=crf, threads=threads, bitexact=True,
                             mp4_tag=False, preset=preset or "medium")  # fmt: skip
        output = [*encode.args(), "-frames:v", str(frames), "-f", "mpegts"]
        if upscale is not None:
            from reelflow.editing.upscaler import upscale_stream

            info = probe(part)
            choice, folder, _ = upscale
            return upscale_stream(
                part, out, choice=choice, folder=folder, before=chain, after=after,
                size_in=size_in or (info.width, info.height), output_args=output,
                frames=frames, fps=fps or info.fps, size_out=upscale[2],
            )  # fmt: skip
        run(
            ["-i", str(part), "-map", "0:v:0", "-vf", ",".join(chain or ["null"]),
             *output, str(out)],
            what=f"version part {out.name}",
        )  # fmt: skip
    return out
