"""`python -m bench [--quick] [--only a,b] [--reps N] [--out DIR]`: run and write the report."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from bench.common import ROOT, Context, Section, machine_info, write_report  # noqa: E402

BENCHMARKS: list[str] = [
    "scale",
    "storage",
    "orchestration",
    "incremental",
    "residency",
    "assembly",
    "memory",
    "longshots",
    "demo",
    "delivery",
    "estimates",
    "gpu",
]
OPTIONAL: list[str] = ["soak"]
"""Run only when named in --only: the soak takes its --minutes (30 by default)."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="smoke mode: tiny sizes, 1 repetition (CI)")
    parser.add_argument("--only", default="",
                        help=f"comma-separated subset of: {', '.join(BENCHMARKS + OPTIONAL)}")
    parser.add_argument("--reps", type=int, default=None,
                        help="repetitions per side (default 3, quick 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results",
                        help="where the JSON and markdown reports go")
    parser.add_argument("--merge-into", type=Path, default=None, metavar="REPORT.json",
                        help="re-run the --only sections and replace them in this report "
                             "(marked as re-run, with this run's time and load)")
    parser.add_argument("--minutes", type=float, default=30.0,
                        help="soak: how long faults are injected while films render")
    parser.add_argument("--concurrency", type=int, default=3,
                        help="soak: renders at once")
    parser.add_argument("--fault-every", type=float, default=25.0, metavar="SECONDS",
                        help="soak: mean seconds between faults")
    return parser.parse_args(argv)


def merge(base: dict, rerun: dict) -> dict:
    """`base` with the sections of `rerun` replacing its own, each marked as re-run."""
    load = ", ".join(f"{x:.2f}" for x in rerun["machine"]["load_average_at_start"])
    fresh = {}
    for section in rerun["sections"]:
        section["notes"].insert(0, f"re-run at {rerun['started_at']} (load average {load}) "
                                   "and merged into this report")
        fresh[section["key"]] = section
    base["sections"] = [fresh.pop(s["key"], s) for s in base["sections"]] + list(fresh.values())
    base["seconds"] += rerun["seconds"]
    base.setdefault("reruns", []).append(
        {"started_at": rerun["started_at"], "sections": [s["key"] for s in rerun["sections"]]}
    )
    return base


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or BENCHMARKS
    unknown = sorted(set(names) - set(BENCHMARKS) - set(OPTIONAL))
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}")
    if names == ["gpu"]:
        from bench.gpu import NO_CUDA, has_cuda

        if not has_cuda():  # one line, no report: there is nothing to measure here
            print(NO_CUDA, flush=True)
            return 0
    reps = args.reps or (1 if args.quick else 3)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    report: dict = {
        "mode": "quick" if args.quick else "full",
        "started_at": started.isoformat(timespec="seconds"),
        "reps": reps,
        "machine": machine_info(),
        "sections": [],
    }
    with tempfile.TemporaryDirectory(prefix="reelflow-bench-") as tmp:
        ctx = Context(quick=args.quick, reps=reps, work=Path(tmp))
        ctx.shared.update(minutes=args.minutes, concurrency=args.concurrency,
                          fault_every=args.fault_every, out=args.out,
                          started_at=report["started_at"])
        try:
            for name in names:
                print(f"[bench] {name} ...", flush=True)
                module = importlib.import_module(f"bench.{name}")
                start = time.perf_counter()
                try:
                    section: Section = module.run(ctx)
                except Exception as err:  # one broken benchmark must not hide the others
                    section = Section(key=name, title=name, method="", status="error")
                    section.notes.append(f"{type(err).__name__}: {err}")
                    traceback.print_exc()
                section.seconds = time.perf_counter() - start
                report["sections"].append(section.to_dict())
                for ratio in section.ratios:
                    print(f"[bench]   {ratio.name}: {ratio.value:.3f} "
                          f"(goal {ratio.goal}) {ratio.status}", flush=True)
                print(f"[bench]   {section.status} in {section.seconds:.0f} s", flush=True)
        finally:
            if ctx.stack is not None:
                ctx.stack.stop()
    report["seconds"] = time.perf_counter() - t0
    if args.merge_into is not None:
        report = merge(json.loads(args.merge_into.read_text()), report)
    json_path, md_path = write_report(report, args.out)
    print(f"[bench] report: {md_path}\n[bench] data:   {json_path}")
    return 1 if any(s["status"] == "error" for s in report["sections"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
