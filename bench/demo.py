"""9. The first impression: the README's `make demo`, timed as a newcomer runs it.

Each repetition starts in an empty folder (so a fresh `.reelflow/`: new S3 data, new database,
nothing cached) and runs the two commands `make demo` runs, through the installed `reelflow`
console script: `reelflow up` (on free ports, so a stack the machine already runs is left
alone), then `reelflow render examples/su7-winter-spring.yaml --auto-approve --profile previz
--out out`, unedited; then `reelflow down`. The goal is on the render's wall time; `up` is
reported beside it. The load average before each repetition is noted: on a shared 2-core
machine it moves the absolute figure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from bench import boards
from bench.common import ROOT, Context, Section, scratch_dir, worker_env

GOAL_SECONDS = 150.0


def reelflow_exe() -> str:
    """The console script beside this interpreter (what `make demo` calls), else the module."""
    script = Path(sys.executable).with_name("reelflow")
    return str(script) if script.exists() else f"{sys.executable} -m cli"


def run_command(args: list[str], cwd: Path, timeout: float = 900) -> tuple[float, str]:
    """Seconds the command took and its output; a failure raises with the output's tail."""
    env = worker_env()
    for name in [k for k in env if k.startswith(("REELFLOW_", "PREFECT_"))]:
        env.pop(name)  # a newcomer's shell: the stack file in cwd is the only configuration
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env.pop("OMP_NUM_THREADS", None)  # make demo runs with the machine's defaults
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    seconds = time.perf_counter() - start
    output = done.stdout + done.stderr
    if done.returncode != 0:
        tail = "\n".join(output.splitlines()[-15:])
        raise RuntimeError(f"{' '.join(args[:2])} failed (rc {done.returncode}):\n{tail}")
    return seconds, output


def run(ctx: Context) -> Section:
    section = Section(
        key="demo",
        title="9. make demo",
        method=(
            "The README's `make demo` as a newcomer runs it after install, in an empty folder "
            "each time (fresh `.reelflow/`: new S3 data and database, nothing cached): "
            "`reelflow up` on free ports, then `reelflow render examples/su7-winter-spring.yaml "
            "--auto-approve --profile previz --out out` (the example unedited; quick mode: its "
            f"first 4 shots at 128x72), then `reelflow down`. {ctx.reps} repetitions; the "
            "goal is on the render's wall time."
        ),
    )
    exe = reelflow_exe().split()
    ups: list[float] = []
    renders: list[float] = []
    for rep in range(ctx.reps):
        with scratch_dir(ctx.work, "demo") as folder:
            if ctx.quick:
                storyboard = boards.write(boards.seed_board(True), folder / "demo.yaml")
            else:
                storyboard = ROOT / "examples" / "su7-winter-spring.yaml"
            load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            # one free block for every port of the stack (the S3 server's master, filer, volume
            # and admin ports included; three single ports left those at their defaults, where
            # another stack on the machine could hold them), retried by `up` if it is taken
            ports = ["--base-port=auto"]
            try:
                up_s, _ = run_command([*exe, "up", *ports], folder)
                render_s, output = run_command(
                    [*exe, "render", str(storyboard), "--auto-approve", "--profile", "previz",
                     "--out", "out"], folder)
            finally:
                subprocess.run([*exe, "down"], cwd=folder, env=worker_env(),
                               capture_output=True, timeout=120)
            films = list((folder / "out").glob("*/final.mp4"))
            said = re.search(r"rendered in (\d+) s", output)
            section.notes.append(
                f"run {rep + 1}: load average before {load}; up {up_s:.1f} s, render "
                f"{render_s:.1f} s (the CLI's own clock: "
                f"{said.group(1) + ' s' if said else 'not printed'}); final.mp4 "
                + (f"{films[0].stat().st_size / 1e3:.0f} kB" if films else "MISSING")
            )
            if not films:
                raise RuntimeError("make demo's render left no out/*/final.mp4")
            ups.append(up_s)
            renders.append(render_s)
    section.add("render", "`reelflow render ... --profile previz --out out`, wall time", renders)
    section.add("up", "`reelflow up` on an empty folder, wall time", ups)
    section.within("9. demo render wall time", "render", GOAL_SECONDS)
    return section
