"""5. Memory at scale: peak RSS of the whole process tree, long vs short.

Each measurement is a fresh interpreter (`bench.worker`) sampled every 20 ms with psutil: the
figure is the largest sum of RSS over the worker and all its descendants (the ffmpeg processes
included). The worker also reports `ru_maxrss` of itself and of its largest child
(`RUSAGE_CHILDREN`), which catches a child too short-lived for the sampler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import MB, Context, Section, run_worker, scratch_dir


def assemble_film(clips: list[str], shots: int, shot_s: float, fps: int, width: int,
                  height: int, out: str) -> dict[str, Any]:
    """Worker: assemble `shots` shots (cycling `clips`, a crossfade into every other shot)."""
    import psutil

    from reelflow.editing.assemble import AssemblyClip, assemble

    base = psutil.Process().memory_info().rss
    timeline = [
        AssemblyClip(path=Path(clips[i % len(clips)]), duration=shot_s,
                     transition="crossfade" if i % 2 else "cut", transition_duration=0.5)
        for i in range(shots)
    ]
    assemble(timeline, out, width=width, height=height, fps=fps)
    return {"baseline_rss": base}


def animatic(image: str, duration: float, fps: int, width: int, height: int,
             out: str) -> dict[str, Any]:
    """Worker: one camera-move clip of `duration` seconds."""
    import psutil

    from reelflow.motion.animatic import render_camera_move

    base = psutil.Process().memory_info().rss
    render_camera_move(Path(image), Path(out), duration=duration, fps=fps, width=width,
                       height=height, movement="push-in")
    return {"baseline_rss": base}


def run(ctx: Context) -> Section:
    from PIL import Image

    from bench.assembly import synthetic_still
    from reelflow.motion.animatic import render_camera_move

    if ctx.quick:
        film = {"fps": 12, "width": 128, "height": 72, "shot_s": 3.0, "short": 12, "long": 60}
        anim = {"fps": 12, "width": 128, "height": 72, "short": 1.0, "long": 6.0}
    else:
        film = {"fps": 24, "width": 320, "height": 180, "shot_s": 5.0, "short": 60, "long": 600}
        anim = {"fps": 24, "width": 640, "height": 360, "short": 5.0, "long": 60.0}
    section = Section(
        key="memory",
        title="5. Memory at scale",
        method=(
            f"Peak RSS of the process tree (psutil, every 20 ms; sum over the worker and its "
            f"ffmpeg children). Assembly: a {film['long']:g} s vs a {film['short']:g} s film of "
            f"{film['shot_s']:g} s shots ({film['width']}x{film['height']} @ {film['fps']} fps, "
            "3 animatic clips cycled, a crossfade into every other shot). Animatic: "
            f"`render_camera_move` of a {anim['long']:g} s vs a {anim['short']:g} s push-in at "
            f"{anim['width']}x{anim['height']} @ {anim['fps']} fps. Fresh interpreter each; "
            "1 run each (peaks are deterministic to a few MB)."
        ),
    )
    with scratch_dir(ctx.work, "memory") as tmp:
        still = synthetic_still(1280, 720)
        still_path = tmp / "still.png"
        Image.fromarray(still).save(still_path)
        clips = []
        for i, movement in enumerate(("push-in", "pan-right", "static")):
            path = tmp / f"clip{i}.mp4"
            render_camera_move(still, path, duration=film["shot_s"], fps=film["fps"],
                               width=film["width"], height=film["height"], movement=movement)
            clips.append(str(path))
        results: dict[str, dict[str, Any]] = {}
        for size in ("short", "long"):
            shots = int(film[size] // film["shot_s"])
            results[f"film-{size}"] = run_worker(
                "memory:assemble_film",
                {"clips": clips, "shots": shots, "shot_s": film["shot_s"], "fps": film["fps"],
                 "width": film["width"], "height": film["height"],
                 "out": str(tmp / f"film-{size}.mp4")},
                sample_rss=True,
            )
            results[f"anim-{size}"] = run_worker(
                "memory:animatic",
                {"image": str(still_path), "duration": anim[size], "fps": anim["fps"],
                 "width": anim["width"], "height": anim["height"],
                 "out": str(tmp / f"anim-{size}.mp4")},
                sample_rss=True,
            )
    labels = {
        "film-long": f"assemble a {film['long'] / 60:g}-min film",
        "film-short": f"assemble a {film['short'] / 60:g}-min film",
        "anim-long": f"animatic, {anim['long']:g} s shot",
        "anim-short": f"animatic, {anim['short']:g} s shot",
    }
    for key, label in labels.items():
        section.add(key, f"{label}: peak tree RSS", [results[key]["tree_peak_rss"] / MB], "MB")
    section.ratio("assembly long / short", "film-long", "film-short", goal=1.3)
    section.ratio("animatic long / short", "anim-long", "anim-short", goal=1.3)
    for key, label in labels.items():
        r = results[key]
        section.notes.append(
            f"{label}: worker RSS before the work {r['baseline_rss'] / MB:.0f} MB, largest "
            f"child (ffmpeg) ru_maxrss {r['ru_maxrss_children'] / MB:.0f} MB, sampled tree "
            f"peak {r['tree_peak_rss'] / MB:.0f} MB"
        )
    section.notes.append(
        "the worker's own ru_maxrss is not reported: Linux carries the high-water mark across "
        "fork+exec, so it shows the benchmark parent's RSS, not the worker's"
    )
    return section
