"""Assembly: approved clips in storyboard order, cut to their shots' lengths, joined by transitions.

Timing model (why the film's length is exactly the sum of its shots)
--------------------------------------------------------------------
Everything is counted in frames of the film's rate: shot ``i`` starts at frame
``S_i = round((d_0 + ... + d_{i-1}) * fps)`` and lasts ``n_i = S_{i+1} - S_i`` frames (cut
points are rounded on the cumulative timeline, so rounding errors never add up). A transition
of ``m`` frames *into* shot ``i`` starts exactly at ``S_i`` (the cut point stays where the
storyboard put it) and blends the first ``m`` frames of shot ``i`` with the ``m`` frames of
shot ``i-1`` that come *after* its out-point. Those are real frames when the source clip is
longer than the shot (generators usually overshoot), and clones of its last frame (``tpad``)
when it is not. So each transition borrows its overlap from the outgoing clip's tail instead
of shortening the film, and::

    total frames = sum(n_i) = round(sum(d_i) * fps)      (whatever the transitions)

A transition can be at most as long as the shot it enters.

Parts, streaming and memory
---------------------------
A single filter graph over every clip would open one decoder per shot at once, so memory would
grow with the film. Instead the film is cut into *parts* (:func:`plan_parts`): each shot's
*body* (the frames no transition touches, one input) and each *transition* (the outgoing clip's
tail blended with the incoming clip's head, two inputs). Every part is its own ffmpeg process,
encoded with identical, deterministic libx264 settings into MPEG-TS, and the parts are joined by
the concat demuxer with stream copy (every frame is encoded exactly once). Peak memory is that
of one two-input ffmpeg, whatever the number of shots; and since a part depends only on the
clips it reads, a cache of parts (:func:`reelflow.render.edit.assemble_film`) re-encodes only
the parts that touch a changed shot.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reelflow.media.encode import VideoEncode
from reelflow.media.ffmpeg import PathLike, fps_arg, run

__all__ = [
    "XFADE", "AssemblyClip", "Part", "Transition", "assemble", "join_parts", "plan_parts",
    "plan_segments", "render_part",
]  # fmt: skip

Transition = Literal[
    "cut", "crossfade", "dip-to-black", "wipe-left", "wipe-right", "slide-left", "slide-right"
]

#: Storyboard transition names -> ffmpeg ``xfade`` transition names.
XFADE: dict[str, str] = {
    "crossfade": "fade",
    "dip-to-black": "fadeblack",
    "wipe-left": "wipeleft",
    "wipe-right": "wiperight",
    "slide-left": "slideleft",
    "slide-right": "slideright",
}


class AssemblyClip(BaseModel):
    """One shot on the timeline.

    ``transition`` is how this shot *enters* from the previous one (ignored on the first shot);
    ``in_point`` skips that many seconds of the source and ``out_point`` (source time) ends it
    early: waste removal trims black or frozen heads and tails with them. A source that runs out
    before the shot (and its outgoing transition) ends holds its last frame.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path
    duration: float = Field(gt=0, description="seconds this shot lasts in the film")
    transition: Transition = "cut"
    transition_duration: float = Field(default=0.5, ge=0)
    in_point: float = Field(default=0.0, ge=0)
    out_point: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _transition_fits(self) -> AssemblyClip:
        if self.out_point is not None and self.out_point <= self.in_point:
            raise ValueError(f"out_point {self.out_point} is not after in_point {self.in_point}")
        if self.transition != "cut" and self.transition_duration > self.duration:
            raise ValueError(
                f"transition_duration {self.transition_duration}s is longer than the shot "
                f"({self.duration}s) it enters"
            )
        return self


class Segment(BaseModel):
    """One ffmpeg run: body frames of ``clip`` and, if any, the transition into ``next_clip``."""

    index: int
    clip: AssemblyClip
    start_frame: int  # first frame of the (normalised) clip to show: after the incoming overlap
    end_frame: int  # frames of the clip used in total, including the outgoing tail
    body_frames: int  # frames shown before the outgoing transition starts
    next_clip: AssemblyClip | None = None
    overlap_frames: int = 0

    @property
    def frames(self) -> int:
        """Frames this segment contributes to the film."""
        return self.end_frame - self.start_frame


def plan_segments(clips: Sequence[AssemblyClip], fps: float) -> list[Segment]:
    """Turn the timeline into per-shot segments (pure arithmetic; see the module docstring)."""
    if not clips:
        raise ValueError("nothing to assemble: no clips")
    # Cut points are rounded on the cumulative timeline, so rounding never accumulates:
    # the film has round(sum(d) * fps) frames however many shots it has.
    bounds = [0]
    total = 0.0
    for c in clips:
        total += c.duration
        bounds.append(max(bounds[-1] + 1, round(total * fps)))
    frames = [b - a for a, b in zip(bounds, bounds[1:], strict=False)]
    overlaps = [0] * len(clips)  # overlaps[i]: frames of the transition into clip i
    for i, clip in enumerate(clips[1:], start=1):
        if clip.transition != "cut":
            overlaps[i] = min(frames[i], round(clip.transition_duration * fps))
    segments = []
    for i, clip in enumerate(clips):
        out = overlaps[i + 1] if i + 1 < len(clips) else 0
        segments.append(
            Segment(
                index=i,
                clip=clip,
                start_frame=overlaps[i],
                end_frame=frames[i] + out,
                body_frames=frames[i] - overlaps[i],
                next_clip=clips[i + 1] if out else None,
                overlap_frames=out,
            )
        )
    return segments


def _normalise(
    label: str, *, width: int, height: int, fps: float, start: int, end: int, pad_s: float
) -> str:
    """Filter chain: fill-crop to the film's size, film rate, yuv420p, frames [start, end).

    ``tpad`` clones the last frame so a clip shorter than its shot still fills it; ``setpts``
    renumbers frames so both xfade inputs share a clean time base starting at zero.
    """
    return (
        f"[{label}]scale={width}:{height}:force_original_aspect_ratio=increase:flags=lanczos,"
        f"crop={width}:{height},setsar=1,fps={fps_arg(fps)},format=yuv420p,setpts=PTS-STARTPTS,"
        f"tpad=stop_mode=clone:stop_duration={pad_s:.4f},"
        f"trim=start_frame={start}:end_frame={end},setpts=N/FRAME_RATE/TB"
    )


def _input_args(clip: AssemblyClip) -> list[str]:
    args = ["-ss", f"{clip.in_point:.6f}"]
    if clip.out_point is not None:
        args += ["-t", f"{clip.out_point - clip.in_point:.6f}"]
    return [*args, "-i", str(clip.path)]


class Part(BaseModel):
    """One encode of the film, cached on its own: a shot's *body* or the *transition* between two.

    A body reads one clip, a transition two (the outgoing clip's tail after its out-point and
    the incoming clip's head), so changing one shot's clip changes only its body and the
    transitions on either side of it; every other part (and its object key) stays the same.
    """

    index: int  # position in the film
    kind: Literal["body", "transition"]
    shots: tuple[int, ...]  # indices of the clips it reads (one, or two for a transition)
    clip: AssemblyClip
    start_frame: int  # first frame of the normalised ``clip`` it shows
    end_frame: int  # one past the last
    next_clip: AssemblyClip | None = None  # transitions: the incoming clip, frames [0, frames)
    first_frame: int = 0  # where this part starts in the film

    @property
    def frames(self) -> int:
        return self.end_frame - self.start_frame

    def spec(self, sources: Sequence[str]) -> dict[str, object]:
        """What decides this part's pixels, with clip identities (e.g. object keys) in
        ``sources`` (indexed like the timeline) instead of local paths."""

        def source(i: int, clip: AssemblyClip) -> dict[str, object]:
            return {"source": sources[i], "in": clip.in_point, "out": clip.out_point}

        spec: dict[str, object] = {
            "kind": self.kind,
            "a": source(self.shots[0], self.clip),
            "frames": [self.start_frame, self.end_frame],
            "version": PART_VERSION,
            "threads": ENCODE_THREADS,
        }
        if self.next_clip is not None:
            spec["b"] = source(self.shots[1], self.next_clip)
            spec["transition"] = XFADE[self.next_clip.transition]
        return spec


#: A fixed x264 thread count makes the encode deterministic across machines (x264's output
#: depends on its thread count), so a part cached on one worker equals one encoded on another.
ENCODE_THREADS = int(os.environ.get("REELFLOW_ENCODE_THREADS", "2"))


def part_workers() -> int:
    """Parts encoded at once (``REELFLOW_EDIT_WORKERS``, default: the cores). Each x264 runs
    ``ENCODE_THREADS`` threads, but a short part spends much of its time starting ffmpeg and
    decoding, so one per core keeps the cores busy."""
    env = os.environ.get("REELFLOW_EDIT_WORKERS")
    return max(1, int(env)) if env else max(1, os.cpu_count() or 1)


#: Bump when a part's filter graph or encode changes: it is in every part's spec.
PART_VERSION = 1


def part_encode(crf: int, preset: str = "medium") -> VideoEncode:
    """The encode of every part of a film (and of a version's H.264 parts): identical and
    deterministic, so parts join by stream copy and a cached part equals a fresh one."""
    return VideoEncode(crf=crf, preset=preset, threads=ENCODE_THREADS, bitexact=True)


def plan_parts(clips: Sequence[AssemblyClip], fps: float) -> list[Part]:
    """The film as bodies and transitions, in order (pure arithmetic on :func:`plan_segments`)."""
    parts: list[Part] = []
    at = 0
    for seg in plan_segments(clips, fps):
        body_end = seg.start_frame + seg.body_frames
        if seg.body_frames > 0:
            parts.append(Part(index=len(parts), kind="body", shots=(seg.index,), clip=seg.clip,
                              start_frame=seg.start_frame, end_frame=body_end, first_frame=at))
            at += seg.body_frames
        if seg.next_clip is not None:
            parts.append(Part(index=len(parts), kind="transition",
                              shots=(seg.index, seg.index + 1), clip=seg.clip,
                              start_frame=body_end, end_frame=body_end + seg.overlap_frames,
                              next_clip=seg.next_clip, first_frame=at))
            at += seg.overlap_frames
    return parts


def render_part(
    part: Part,
    out: PathLike,
    *,
    width: int,
    height: int,
    fps: float,
    crf: int = 18,
    preset: str = "medium",
) -> Path:
    """Encode one part to MPEG-TS at ``out`` (same x264 settings for every part, so the parts
    join by stream copy). Deterministic for the same inputs: x264 is, at a fixed thread count."""
    out = Path(out)
    size = {"width": width, "height": height, "fps": fps}
    m = part.frames
    args = _input_args(part.clip)
    chains = [
        _normalise("0:v", start=part.start_frame, end=part.end_frame,
                   pad_s=(part.end_frame + 2) / fps, **size)
    ]  # fmt: skip
    if part.next_clip is not None:
        args += _input_args(part.next_clip)
        chains[0] += "[a]"
        chains.append(_normalise("1:v", start=0, end=m, pad_s=(m + 2) / fps, **size) + "[b]")
        chains.append(
            f"[a][b]xfade=transition={XFADE[part.next_clip.transition]}:"
            f"duration={m / fps:.6f}:offset=0"
        )
    chains[-1] += "[v]"
    args += [
        "-filter_complex", ";".join(chains), "-map", "[v]", "-an",
        *part_encode(crf, preset).args(),
        "-r", fps_arg(fps), "-frames:v", str(m), "-f", "mpegts", str(out),
    ]  # fmt: skip
    run(args, what=f"assemble {part.kind} {part.index} ({part.clip.path.name})")
    return out


def join_parts(
    parts: Sequence[PathLike], out: PathLike, *, fps: float, extra: Sequence[str] = ()
) -> Path:
    """Join encoded parts by stream copy (concat demuxer) into a faststart MP4 at ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="reelflow-join-", dir=out.parent))
    try:
        listing = work / "parts.txt"
        listing.write_text("".join(f"file '{Path(p).resolve()}'\n" for p in parts))
        tmp_out = work / f"joined{out.suffix or '.mp4'}"
        run(
            ["-f", "concat", "-safe", "0", "-i", str(listing), "-map", "0:v", "-c", "copy",
             "-r", fps_arg(fps), *extra, "-fflags", "+bitexact", "-movflags", "+faststart",
             str(tmp_out)],
            what=f"join {len(parts)} parts into {out.name}",
        )  # fmt: skip
        os.replace(tmp_out, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def assemble(
    clips: Sequence[AssemblyClip],
    out: PathLike,
    *,
    width: int,
    height: int,
    fps: float,
    crf: int = 18,
    preset: str = "medium",
) -> Path:
    """Render ``clips`` into one H.264/yuv420p MP4 (faststart) at ``out``; return its path.

    The film lasts ``round(sum(durations) * fps)`` frames (see the module docstring for why
    transitions do not shorten it). The file appears at ``out`` only when complete. Every part
    is encoded here; :func:`reelflow.render.edit.assemble_film` caches them in the bucket.
    """
    if width % 2 or height % 2:
        raise ValueError(f"yuv420p needs even dimensions, got {width}x{height}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = plan_parts(clips, fps)
    for clip in clips:
        if not clip.path.is_file():
            raise FileNotFoundError(clip.path)
    work = Path(tempfile.mkdtemp(prefix="reelflow-assemble-", dir=out.parent))
    try:
        with ThreadPoolExecutor(max_workers=part_workers()) as pool:
            paths = list(pool.map(
                lambda part: render_part(part, work / f"part{part.index:05d}.ts", width=width,
                                         height=height, fps=fps, crf=crf, preset=preset),
                parts,
            ))  # fmt: skip
        join_parts(paths, out, fps=fps)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out
