"""10. Delivery: what the edit and its versions cost against one encode, and live progress.

(a) A cold delivery of the seed film: its shots as animatic clips (at the film's size and
durations) in a fresh bucket, then the edit (`assemble_film`: the clean master) and the
storyboard's default version (`export_version` at the demo profile's delivery size, captions
burned in), timed together; against one ffmpeg encode of the delivered film (its video, read
back and encoded again at the same settings: libx264, the profile's crf, preset medium, its
size). Goal: delivery <= 1.5x that encode, in wall seconds and in CPU seconds (the steadier
figure on a shared machine). The same delivery with the master encoded at the
delivery preset (how it was made before) is timed beside it for reference.

(b), (c) The 40-shot previz film (the seed's shots repeated, `boards.scaled_board(40)`) through
the CLI as a creator runs it: `reelflow up` in an empty folder, then `reelflow render ...
--profile previz --auto-approve`. Every output line is stamped as it arrives. (b) Each stage's
wall time is read from the progress lines (from a stage's first line to the next stage's
first line): goal edit + versions <= clips. (c) The longest gap between two progress lines
(`[  12.3s] ...`) after the first: goal <= 10 s.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import boards
from bench.common import Context, Section, fresh_bucket, scratch_dir, worker_env

SHOTS = 40
"""Shots of the long previz film (the issue's 40-shot film)."""
PROGRESS = re.compile(r"\[\s*(\d+\.\d)s\] (\S+)")


def cpu_timed(fn: Any) -> tuple[float, float, Any]:
    """Wall seconds, CPU seconds (this process and the children it waited for: the ffmpeg
    encodes) and the value of one call. On a machine shared with other work the CPU seconds
    are the steadier figure: they do not grow while the process waits for a core."""
    import resource

    def cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    wall, before = time.perf_counter(), cpu()
    value = fn()
    return time.perf_counter() - wall, cpu() - before, value


def _seed_clips(store: Any, board: dict[str, Any], paths: list[Path]) -> dict[str, str]:
    """The seed film's clips put in the bucket as animatic clips: shot id -> clip key."""
    keys = {}
    for shot, path in zip(board["shots"], paths, strict=True):
        key = f"projects/{board['project']}/bench-clips/{path.name}"
        store.put_file(key, path, "video/mp4", {"kind": "clip", "extra": {"backend": "animatic"}})
        keys[shot["id"]] = key
    return keys


def _deliver(store: Any, board_text: str, clips: dict[str, str]) -> tuple[str, str]:
    """The edit and the default version, as the flow makes them (no music in the seed film)."""
    from reelflow.render.edit import assemble_film, export_version
    from reelflow.render.jobs import cut_plan, default_export, edit_job, version_job
    from reelflow.render.profiles import get_profile
    from reelflow.storyboard import parse_storyboard

    board = parse_storyboard(board_text)
    profile = get_profile("demo")
    export = default_export(board)
    plan = cut_plan(board, export.cut)
    master = assemble_film(store, edit_job(board, clips, plan, profile.crf))
    job = version_job(board, master, export, [d for d, _, _ in plan], profile.delivery)
    return master, export_version(store, job)


def seed_delivery(ctx: Context, section: Section) -> None:
    """(a): cold delivery of the seed film against one encode of the delivered film."""
    from reelflow.media.ffmpeg import ffmpeg_exe
    from reelflow.media.probe import probe
    from reelflow.render.edit import assembly
    from reelflow.render.profiles import get_profile
    from reelflow.store.artifacts import ArtifactStore

    stack = ctx.get_stack()
    board = boards.seed_board(ctx.quick)
    text = boards.dump(board)
    samples: dict[str, list[float]] = {"delivery": [], "master at medium": [], "ffmpeg": []}
    cpu: dict[str, list[float]] = {name: [] for name in samples}
    with scratch_dir(ctx.work, "delivery") as tmp:
        from bench.assembly import render_clips

        (tmp / "clips").mkdir()
        paths = render_clips(board, tmp / "clips")
        for rep in range(ctx.reps):
            for side, preset in (("delivery", assembly.MASTER_PRESET),
                                 ("master at medium", "medium")):  # fmt: skip
                store = ArtifactStore(stack.settings.with_bucket(fresh_bucket("delivery")))
                store.ensure_bucket()
                clips = _seed_clips(store, board, paths)
                kept, assembly.MASTER_PRESET = assembly.MASTER_PRESET, preset
                try:
                    seconds, used, (_, film_key) = cpu_timed(
                        lambda s=store, c=clips: _deliver(s, text, c))
                finally:
                    assembly.MASTER_PRESET = kept
                samples[side].append(seconds)
                cpu[side].append(used)
                if side == "delivery":
                    film = store.get_file(film_key, tmp / f"film-{rep}.mp4")
            info = probe(film)
            cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
                   "-i", str(film), "-map", "0:v", "-c:v", "libx264", "-preset", "medium",
                   "-crf", str(get_profile("demo").crf), "-pix_fmt", "yuv420p",
                   "-movflags", "+faststart", str(tmp / "one-encode.mp4")]  # fmt: skip
            seconds, used, _ = cpu_timed(
                lambda c=cmd: subprocess.run(c, check=True, capture_output=True))
            samples["ffmpeg"].append(seconds)
            cpu["ffmpeg"].append(used)
    section.add("seed delivery", "edit + default version of the seed film, cold",
                samples["delivery"])  # fmt: skip
    section.add("seed delivery, master at medium",
                "the same, the master's parts at the delivery preset (as before)",
                samples["master at medium"])  # fmt: skip
    section.add("one encode", "ffmpeg -i delivered.mp4 -c:v libx264 -preset medium, same crf",
                samples["ffmpeg"])  # fmt: skip
    section.add("seed delivery, CPU", "CPU seconds of the delivery (and its ffmpeg)",
                cpu["delivery"])  # fmt: skip
    section.add("seed delivery before, CPU", "CPU seconds, master at medium",
                cpu["master at medium"])  # fmt: skip
    section.add("one encode, CPU", "CPU seconds of the one ffmpeg encode", cpu["ffmpeg"])
    section.ratio("(a) seed delivery / one encode", "seed delivery", "one encode", goal=1.5)
    section.ratio("(a) seed delivery / one encode, CPU", "seed delivery, CPU", "one encode, CPU",
                  goal=1.5)  # fmt: skip
    section.ratio("seed delivery before / one encode, CPU", "seed delivery before, CPU",
                  "one encode, CPU")  # fmt: skip
    section.ratio("seed delivery before / one encode", "seed delivery, master at medium",
                  "one encode")  # fmt: skip
    section.notes.append(f"(a) delivered film: {info.width}x{info.height}, {info.frame_count} "
                         f"frames at {info.fps:g} fps")  # fmt: skip


def _stamped_run(args: list[str], cwd: Path, env: dict[str, str], timeout: float
                 ) -> list[tuple[float, str]]:  # fmt: skip
    """Run a command, stamping each output line (stdout and stderr) as it arrives."""
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)  # fmt: skip
    lines: list[tuple[float, str]] = []
    start = time.monotonic()
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.monotonic() - start, line.rstrip("\n")))
        if time.monotonic() - start > timeout:
            proc.kill()
            break
    if proc.wait() != 0:
        tail = "\n".join(text for _, text in lines[-15:])
        raise RuntimeError(f"{' '.join(args[:2])} failed (rc {proc.returncode}):\n{tail}")
    return lines


def stage_times(lines: list[tuple[float, str]]) -> dict[str, float]:
    """Wall seconds per stage from the output: from a stage's first progress line to the first
    line of any kind after its last one (its own counters, or a `still working` line naming
    it), so the work after its last counter (a join, an upload) is counted. `version X` lines
    are one stage, versions; stages that overlap (the cover beside the versions) each count.
    """
    def stage_of(text: str) -> str | None:
        found = PROGRESS.search(text)
        if not found or "still working" in text:
            return None
        return "versions" if found.group(2) == "version" else found.group(2)

    spans: dict[str, list[int]] = {}  # stage -> [first line, last line] (indices)
    for i, (_, text) in enumerate(lines):
        stage = stage_of(text)
        if stage is not None:
            spans.setdefault(stage, [i, i])[1] = i
    for i, (_, text) in enumerate(lines):
        if "still working" in text:
            for stage, span in spans.items():
                word = "version " if stage == "versions" else f"{stage} "
                if word in text.split("still working", 1)[1] and i > span[0]:
                    span[1] = max(span[1], i)
    times = {}
    for stage, (first, last) in spans.items():
        after = lines[last + 1][0] if last + 1 < len(lines) else lines[last][0]
        times[stage] = after - lines[first][0]
    return times


def longest_gap(lines: list[tuple[float, str]]) -> tuple[float, str]:
    """The longest time between two progress lines, and the line that ended it."""
    times = [(at, text) for at, text in lines if PROGRESS.search(text)]
    gaps = [(b - a, text) for (a, _), (b, text) in zip(times, times[1:], strict=False)]
    return max(gaps, default=(0.0, ""))


def long_previz(ctx: Context, section: Section) -> None:
    """(b) and (c): the 40-shot previz film through the CLI."""
    from bench.demo import reelflow_exe

    exe = reelflow_exe().split()
    n = 6 if ctx.quick else SHOTS
    env = worker_env()
    for name in [k for k in env if k.startswith(("REELFLOW_", "PREFECT_"))]:
        env.pop(name)  # a creator's shell: the stack file in the folder is the configuration
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env.pop("OMP_NUM_THREADS", None)
    with scratch_dir(ctx.work, "previz40") as folder:
        board = boards.scaled_board(n)
        board["project"] = "previz-forty"
        storyboard = boards.write(board, folder / "forty.yaml")
        up = [*exe, "up", "--base-port", "auto"]  # every port free, S3's master's too
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        try:
            _stamped_run(up, folder, env, timeout=300)
            start = time.perf_counter()
            lines = _stamped_run([*exe, "render", str(storyboard), "--auto-approve",
                                  "--profile", "previz"], folder, env, timeout=3600)  # fmt: skip
            wall = time.perf_counter() - start
        finally:
            subprocess.run([*exe, "down"], cwd=folder, env=env, capture_output=True, timeout=120)
        (ctx.work.parent / "previz40.log").write_text(
            "".join(f"{at:8.1f} {text}\n" for at, text in lines), encoding="utf-8")
    stages = stage_times(lines)
    gap, after = longest_gap(lines)
    section.add(f"{n}-shot previz render", "`reelflow render --profile previz`, wall", [wall])
    for stage in ("clips", "edit", "versions"):
        section.add(f"{n}-shot {stage}", f"the {stage} stage, wall (from the progress lines)",
                    [stages.get(stage, 0.0)])  # fmt: skip
    section.add(f"{n}-shot edit + versions", "edit and versions stages together, wall",
                [stages.get("edit", 0.0) + stages.get("versions", 0.0)])
    section.ratio(f"(b) {n}-shot edit + versions / clips", f"{n}-shot edit + versions",
                  f"{n}-shot clips", goal=1.0)  # fmt: skip
    section.add("longest progress gap", "the longest time between two progress lines", [gap])
    section.within("(c) longest progress gap (s)", "longest progress gap", 10.0)
    section.notes.append(f"(b, c) load average before the render: {load}; stages (s): "
                         + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()))
    section.notes.append(f"(c) the longest gap ended with: {after.strip()[:120]}")


def run(ctx: Context) -> Section:
    section = Section(key="delivery", title="10. Delivery", method=__doc__.split("\n\n", 1)[1])
    only = os.environ.get("BENCH_DELIVERY_PARTS", "a,bc").split(",")
    if "a" in only:
        seed_delivery(ctx, section)
    if "bc" in only:
        long_previz(ctx, section)
    return section
