"""4. Assembly: `reelflow.editing.assemble.assemble` vs one hand-written ffmpeg command.

The demo clips are the seed film's shots rendered by the animatic at the film's size and
durations (from one synthetic still). The hand-written command does the same edit in a single
process and a single encode: every clip normalised (fill-crop, fps, yuv420p, last-frame hold),
trimmed to its frames, and chained with `xfade` (transitions) or `concat` (cuts), with the same
libx264 settings (preset medium, crf 18) and +faststart. Both run in the benchmark process
(ffmpeg is a subprocess either way); sides alternate.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench import boards
from bench.common import Context, Section, alternate, scratch_dir, timed


def synthetic_still(width: int, height: int, seed: int = 0):
    """A textured RGB still (gradients + noise), so the encoder has real work to do."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 37.0 + y / 23.0)], axis=-1)
    noise = rng.normal(0.0, 0.08, size=(height, width, 3))
    return (np.clip(base + noise, 0, 1) * 255).astype(np.uint8)


def render_clips(board: dict, out_dir: Path) -> list[Path]:
    """One animatic clip per shot, at the film's size, fps and the shot's duration."""
    from reelflow.motion.animatic import render_camera_move

    still = synthetic_still(max(board["width"], 640), max(board["height"], 360))
    paths = []
    for i, shot in enumerate(board["shots"]):
        movement = shot.get("camera", {}).get("movement", "static")
        path = out_dir / f"{i:02d}-{shot['id']}.mp4"
        render_camera_move(still, path, duration=shot["duration"], fps=board["fps"],
                           width=board["width"], height=board["height"], movement=movement)
        paths.append(path)
    return paths


def hand_written_command(clips: list, out: Path, *, width: int, height: int, fps: int,
                         crf: int = 18, preset: str = "medium") -> list[str]:
    """One ffmpeg command for the whole edit (uses the same frame arithmetic as assemble)."""
    from reelflow.editing.assemble import XFADE, plan_segments
    from reelflow.media.ffmpeg import ffmpeg_exe

    segments = plan_segments(clips, fps)
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-y", "-loglevel", "error"]
    chains = []
    for i, seg in enumerate(segments):
        args += ["-i", str(seg.clip.path)]
        chains.append(
            f"[{i}:v]scale={width}:{height}:force_original_aspect_ratio=increase:flags=lanczos,"
            f"crop={width}:{height},setsar=1,fps={fps},format=yuv420p,setpts=PTS-STARTPTS,"
            f"tpad=stop_mode=clone:stop_duration={(seg.end_frame + 2) / fps:.4f},"
            f"trim=start_frame=0:end_frame={seg.end_frame},setpts=N/FRAME_RATE/TB[c{i}]"
        )
    current, length = "c0", segments[0].end_frame
    for i, seg in enumerate(segments[1:], start=1):
        nxt = f"j{i}"
        m = seg.start_frame  # frames of the transition into this clip
        if m:
            chains.append(
                f"[{current}][c{i}]xfade=transition={XFADE[seg.clip.transition]}:"
                f"duration={m / fps:.6f}:offset={(length - m) / fps:.6f}[{nxt}]"
            )
        else:
            chains.append(
                f"[{current}][c{i}]concat=n=2:v=1:a=0,settb=1/{fps},setpts=N/{fps}/TB[{nxt}]"
            )
        current, length = nxt, length + seg.end_frame - m
    args += [
        "-filter_complex", ";".join(chains), "-map", f"[{current}]", "-an",
        "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
        "-r", str(fps), "-frames:v", str(length), "-movflags", "+faststart", str(out),
    ]  # fmt: skip
    return args


def assembly_clips(board: dict, paths: list[Path]) -> list:
    from reelflow.editing.assemble import AssemblyClip

    return [
        AssemblyClip(
            path=path, duration=shot["duration"],
            transition=shot.get("transition_in", "cut") if i else "cut",
            transition_duration=shot.get("transition_duration", 0.5) if i else 0.0,
        )
        for i, (shot, path) in enumerate(zip(board["shots"], paths, strict=True))
    ]


def run(ctx: Context) -> Section:
    from reelflow.editing.assemble import assemble
    from reelflow.media.probe import probe

    board = boards.seed_board(ctx.quick)
    w, h, fps = board["width"], board["height"], board["fps"]
    section = Section(
        key="assembly",
        title="4. Assembly",
        method=(
            f"The seed film's {len(board['shots'])} shots as animatic clips ({w}x{h} @ {fps} "
            "fps, the storyboard's durations and transitions). `assemble()` (one ffmpeg per "
            "part: each shot's body and each transition, + a stream-copy join) vs one "
            "hand-written ffmpeg command "
            "(single filter graph, single encode), same libx264 preset/crf; sides alternate."
        ),
    )
    with scratch_dir(ctx.work, "assembly") as tmp:
        clips_dir = tmp / "clips"
        clips_dir.mkdir()
        render_s, paths = timed(lambda: render_clips(board, clips_dir))
        clips = assembly_clips(board, paths)
        outs = {"reelflow": tmp / "reelflow.mp4", "ffmpeg": tmp / "ffmpeg.mp4"}

        def ours(_: int) -> float:
            return timed(lambda: assemble(clips, outs["reelflow"], width=w, height=h, fps=fps))[0]

        def theirs(_: int) -> float:
            cmd = hand_written_command(clips, outs["ffmpeg"], width=w, height=h, fps=fps)
            return timed(lambda: subprocess.run(cmd, check=True, capture_output=True))[0]

        samples = alternate(ctx.reps, {"reelflow": ours, "ffmpeg": theirs})
        a, b = probe(outs["reelflow"]), probe(outs["ffmpeg"])
    section.add("reelflow", "assemble() of the demo clips", samples["reelflow"])
    section.add("ffmpeg", "one hand-written ffmpeg command, same output", samples["ffmpeg"])
    section.ratio("reelflow / ffmpeg", "reelflow", "ffmpeg", goal=1.0)
    section.notes.append(f"rendering the {len(paths)} demo clips (not timed in the ratio): "
                         f"{render_s:.1f} s")
    section.notes.append(
        f"outputs: reelflow {a.frame_count} frames {a.width}x{a.height} {a.codec}, "
        f"hand-written {b.frame_count} frames {b.width}x{b.height} {b.codec} "
        f"({'same frame count' if a.frame_count == b.frame_count else 'FRAME COUNTS DIFFER'})"
    )
    return section
