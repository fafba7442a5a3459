"""Long shots: peak RSS of a 20 s shot vs a 5 s one on a backend with a 5 s window.

The 20 s shot renders through the chained-windows fallback (four windows, each continuing from
the previous one's last frame), its latents kept before each window's streamed, chunked decode.
If any stage held the whole clip (the decoded frames, the retimed output), the long shot's peak
would grow with its length; the goal is <= 1.3x the short one's.

The model is the tiny LTX-2 (built from configs, CPU), so the figures are about what the code
holds, not about a real model's activations: the GPU figures belong in the `gpu` section. Not
part of the quick (CI) run: it samples seven windows in two fresh interpreters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import MB, Context, Section, run_worker, scratch_dir

WINDOW_S = 5.0
NATIVE_FPS = 8  # the tiny model moves at 8 fps: a 41-frame (8k+1) window is 5 s


def render_shot(model: str, image: str, duration: float, fps: int, width: int, height: int,
                out: str, latents: str) -> dict[str, Any]:
    """Worker: one tiny-LTX-2 clip of `duration` seconds, latents kept in `latents`."""
    import psutil

    from reelflow.motion.backends import ClipRequest, get_backend
    from reelflow.motion.latents import FolderLatents

    backend = get_backend("ltx2", model=model, steps=2, max_frames=int(WINDOW_S * NATIVE_FPS) + 1,
                          native_fps=NATIVE_FPS, max_area=64 * 32, preset="ultrafast")  # fmt: skip
    backend.pipe  # noqa: B018 -- loaded before the baseline, like a resident worker's model
    base = psutil.Process().memory_info().rss
    request = ClipRequest(images=[Path(image)], duration=duration, fps=fps, width=width,
                          height=height, motion_prompt="snow drifts")  # fmt: skip
    info = backend.render_shot(request, Path(out), latents=FolderLatents(Path(latents)))
    return {"baseline_rss": base, "frames": info.frame_count,
            "windows": backend.window_plan(request).windows}  # fmt: skip


def run(ctx: Context) -> Section:
    section = Section(
        key="longshots",
        title="Long shots (chained windows, streamed decode)",
        method=(
            f"Peak RSS of the process tree (psutil, every 20 ms) rendering a 20 s vs a 5 s shot "
            f"with the tiny LTX-2 (CPU, 2 steps, sampled at 64x32, {WINDOW_S:g} s windows at "
            f"{NATIVE_FPS} fps), delivered at 640x360 @ 24 fps. Fresh interpreter each, model "
            "loaded before the baseline; 1 run each."
        ),
    )
    if ctx.quick:
        section.status = "skipped"
        section.notes.append("not in the quick run (seven tiny-LTX-2 windows); "
                             "`python -m bench --only longshots`")  # fmt: skip
        return section
    from PIL import Image

    from bench.assembly import synthetic_still
    from reelflow.motion.tiny import build_tiny_ltx2

    with scratch_dir(ctx.work, "longshots") as tmp:
        model = str(build_tiny_ltx2(tmp / "tiny-ltx2"))
        still = tmp / "still.png"
        Image.fromarray(synthetic_still(640, 360)).save(still)
        results = {
            name: run_worker(
                "longshots:render_shot",
                {"model": model, "image": str(still), "duration": seconds, "fps": 24,
                 "width": 640, "height": 360, "out": str(tmp / f"{name}.mp4"),
                 "latents": str(tmp / f"{name}-latents")},
                sample_rss=True,
            )  # fmt: skip
            for name, seconds in (("short", WINDOW_S), ("long", 4 * WINDOW_S))
        }
    for name, label in (("long", "20 s shot"), ("short", "5 s shot")):
        r = results[name]
        grown = (r["tree_peak_rss"] - r["baseline_rss"]) / MB
        section.add(name, f"{label}: peak tree RSS", [r["tree_peak_rss"] / MB], "MB")
        section.notes.append(
            f"{label}: {r['frames']} frames from windows {r['windows']}; worker RSS with the "
            f"model loaded {r['baseline_rss'] / MB:.0f} MB, tree peak "
            f"{r['tree_peak_rss'] / MB:.0f} MB (+{grown:.0f} MB)"
        )
    section.ratio("20 s / 5 s shot", "long", "short", goal=1.3)
    return section
