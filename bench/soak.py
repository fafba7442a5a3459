"""Soak: films rendered on the local stack while a fault injector kills and pauses its servers.

`python -m bench --only soak --minutes 30` (not part of CI, not in the default set). A private
stack (`reelflow up` in a home of its own, on a free block of ports: S3 `weed mini`, PostgreSQL,
Redis, the Prefect server) renders small storyboards through the real CLI (`reelflow render
--profile test --auto-approve`, tiny models), `--concurrency` at once; every few films one is
rendered twice at the same time, so the Redis locks have something to serialise. Meanwhile a
fault injector, one fault at a time at random intervals, picks S3, Prefect, Redis, PostgreSQL or
a running render and either SIGKILLs its process group (a service is restarted with `up`, a
render is launched again) or SIGSTOPs it for a few seconds and SIGCONTs it.

A render that exits non-zero is launched again (the pipeline resumes from what is cached) up to
`MAX_ATTEMPTS` times. When the time is up, no new film starts and faults stop; the films in
flight get `DRAIN_MINUTES` to finish. Then the whole bucket is checked:

- every object against its sidecar (`reelflow.store.verify.verify_project`, what `reelflow
  verify` runs): both present, size, sha256, lineage parents;
- every delivered film's lineage, walked down to its images: every ancestor and its sidecar there;
- duplicate renders: per task cache key, the task runs that ran to `Completed` (not `Cached`)
  on the Prefect server; more than one is a step rendered twice.

Reported: films delivered, render launches, faults injected (by target and kind), objects lost,
integrity problems, duplicates, the slowest recovery (fault -> stack healthy again; for a killed
render, kill -> its film delivered), and the load average over the run.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import ROOT, Context, Section

MAX_ATTEMPTS = 12
"""Launches of one film before it counts as never recovered."""
DRAIN_MINUTES = 12.0
"""After the soak's time: how long the films in flight may take to finish (no faults then)."""
SERVICES = ("s3", "prefect", "redis", "postgres")
TARGETS = (*SERVICES, "render")
HEALTHY_TIMEOUT = 240.0

BOARD = """
title: "Soak film {index}"
project: {project}
width: 128
height: 72
fps: 8
style:
  palette: ["#f5c518", "#e8f1f8"]
  visual_style: cinematic
  negative_prompt: blurry
  model: some-real-model
  base_seed: {seed}
shots:
{shots}
"""
PLACES = ["a snowy road", "the summit", "a tunnel", "the sea", "a village", "a forest",
          "a bridge", "the desert"]
SIZES = ["wide", "full", "medium"]


def board_text(index: int) -> str:
    """Film `index`: 2-3 one-second shots in project `soak-<index>`, its own seed (no film
    shares a cache key with another)."""
    rng = random.Random(index)
    shots = []
    for n in range(rng.choice((2, 3))):
        place = rng.choice(PLACES)
        shots.append(f"  - {{id: s{n}, description: a yellow car in {place}, duration: 1.0, "
                     f"camera: {{size: {rng.choice(SIZES)}, angle: eye-level, "
                     f"movement: static}}}}")
    return BOARD.format(index=index, project=f"soak-{index}", seed=1000 + index,
                        shots="\n".join(shots))


# -- records -----------------------------------------------------------------------------------


@dataclass
class Fault:
    """One injected fault and how long the stack (or the film) took to be whole again."""

    at: float  # seconds since the soak started
    target: str
    kind: str  # kill | pause
    pid: int | None
    hold_s: float  # outage before restart (kill) or pause length
    recovery_s: float | None = None  # fault -> healthy again (render: -> film delivered)
    note: str = ""


@dataclass
class Film:
    index: int
    board: Path
    copies: int  # renders of it launched together
    attempts: int = 0
    exits: list[int] = field(default_factory=list)
    delivered_at: float | None = None
    film_key: str | None = None
    failed: bool = False
    last_log: str = ""


@dataclass
class Render:
    film: Film
    process: subprocess.Popen[bytes]
    log: Path
    started: float


# -- the soak ----------------------------------------------------------------------------------


class Soak:
    def __init__(self, work: Path, minutes: float, concurrency: int, fault_every: float,
                 seed: int) -> None:
        self.work = work
        self.minutes = minutes
        self.concurrency = concurrency
        self.fault_every = fault_every
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.films: list[Film] = []
        self.renders: list[Render] = []
        self.faults: list[Fault] = []
        self.launches = 0
        self.loads: list[float] = []
        self.stop_faults = threading.Event()
        self.t0 = time.monotonic()
        self.config: Any = None
        self.env: dict[str, str] = {}
        self.render_kills: dict[int, list[Fault]] = {}  # film index -> its kills

    def now(self) -> float:
        return time.monotonic() - self.t0

    # -- stack ----------------------------------------------------------------------------------

    def start_stack(self) -> None:
        from deployments.automations import ensure_zombie_automation
        from reelflow import devstack

        home = self.work / "reelflow"
        self.config, _ = devstack.start_on_free_ports(home, start_s3=True, start_redis=True,
                                                      db="postgres", timeout=180)
        state = devstack.read_state(self.config.home)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PREFECT_", "REELFLOW_"))}
        env.update(
            PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(
                os.pathsep),
            REELFLOW_HOME=str(self.config.home),
            REELFLOW_MODELS=str(self.work / "models"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_HOME=str(self.work / "client-prefect-home"),
            PREFECT_LOGGING_LEVEL="INFO",
            OMP_NUM_THREADS="1",
            TOKENIZERS_PARALLELISM="false",
        )
        self.env = env
        self.api_url = state["prefect"]["api_url"]
        self.auth = tuple(state["prefect"]["auth_string"].split(":", 1))
        # a killed render's run is marked Crashed once its heartbeats stop, as `deploy` sets up
        from prefect.client.orchestration import get_client
        from prefect.settings import (
            PREFECT_API_AUTH_STRING,
            PREFECT_API_URL,
            temporary_settings,
        )

        with temporary_settings(updates={PREFECT_API_URL: self.api_url,
                                         PREFECT_API_AUTH_STRING: ":".join(self.auth)}):
            with get_client(sync_client=True) as client:
                ensure_zombie_automation(client, 60)

    def stop_stack(self) -> None:
        from reelflow import devstack

        if self.config is not None:
            devstack.down(self.config)

    def service_pid(self, name: str) -> int | None:
        from reelflow import devstack

        return devstack.running_pid(self.config, name)

    def healthy(self) -> bool:
        from reelflow import devstack

        try:
            return bool(devstack.status(self.config)["healthy"])
        except Exception:  # noqa: BLE001 - a server mid-restart: not healthy yet
            return False

    def heal(self) -> None:
        """`up` until every service answers (restarts what is not running)."""
        from reelflow import devstack

        deadline = time.monotonic() + HEALTHY_TIMEOUT
        while True:
            try:
                devstack.up(self.config)
                if self.healthy():
                    return
            except devstack.StackError as err:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the stack did not come back: {err}") from err
            if time.monotonic() > deadline:
                raise RuntimeError("the stack did not come back healthy")
            time.sleep(1)

    # -- renders --------------------------------------------------------------------------------

    def new_film(self) -> Film:
        index = len(self.films)
        board = self.work / "boards" / f"soak-{index}.yaml"
        board.parent.mkdir(parents=True, exist_ok=True)
        board.write_text(board_text(index), encoding="utf-8")
        film = Film(index=index, board=board, copies=2 if index % 4 == 3 else 1)
        self.films.append(film)
        return film

    def launch(self, film: Film) -> None:
        film.attempts += 1
        self.launches += 1
        log = self.work / "logs" / f"soak-{film.index}-{film.attempts}-{self.launches}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "cli", "render", str(film.board), "--profile", "test",
                 "--auto-approve"],
                cwd=film.board.parent, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.renders.append(Render(film=film, process=process, log=log, started=self.now()))

    def reap(self) -> None:
        """Collect finished renders: a film is delivered on its first exit 0; any other exit
        launches it again (until MAX_ATTEMPTS)."""
        for render in [r for r in self.renders if r.process.poll() is not None]:
            self.renders.remove(render)
            film, code = render.film, render.process.returncode
            film.exits.append(code)
            text = render.log.read_text(errors="replace")
            if code == 0:
                match = re.search(r"^film:\s+s3://[^/]+/(\S+)", text, re.M)
                if film.delivered_at is None:
                    film.delivered_at = self.now()
                    film.film_key = match.group(1) if match else None
                    for fault in self.render_kills.get(film.index, []):
                        fault.recovery_s = film.delivered_at - fault.at
                continue
            film.last_log = "\n".join(text.splitlines()[-6:])
            busy = any(r.film is film for r in self.renders)
            if film.delivered_at is None and not busy:
                if film.attempts >= MAX_ATTEMPTS:
                    film.failed = True
                else:
                    time.sleep(1)
                    self.launch(film)

    def fill(self) -> None:
        """Start new films while there is room (a two-copy film takes two places)."""
        while len(self.renders) < self.concurrency:
            film = self.new_film()
            for _ in range(film.copies):
                self.launch(film)

    # -- faults ---------------------------------------------------------------------------------

    def inject_one(self) -> None:
        target = self.rng.choice(TARGETS)
        kind = self.rng.choice(("kill", "pause"))
        at = self.now()
        if target == "render":
            with self.lock:
                live = [r for r in self.renders if r.process.poll() is None]
            if not live:
                return
            render = self.rng.choice(live)
            pid = render.process.pid
        else:
            pid = self.service_pid(target)
            if pid is None:
                self.heal()
                return
        hold = self.rng.uniform(0.5, 4.0) if kind == "kill" else self.rng.uniform(2.0, 20.0)
        fault = Fault(at=at, target=target, kind=kind, pid=pid, hold_s=round(hold, 2))
        try:
            os.killpg(pid, signal.SIGKILL if kind == "kill" else signal.SIGSTOP)
        except ProcessLookupError:
            return  # ended on its own just now: no fault
        self.faults.append(fault)
        print(f"[soak] {at:7.0f}s fault {len(self.faults)}: {kind} {target} (pid {pid}, "
              f"{hold:.1f} s)", flush=True)
        time.sleep(hold)
        if kind == "pause":
            try:
                os.killpg(pid, signal.SIGCONT)
            except ProcessLookupError:
                fault.note = "gone while paused"
        if target == "render":
            if kind == "kill":
                self.render_kills.setdefault(render.film.index, []).append(fault)
            else:  # a paused render has recovered once it runs again
                fault.recovery_s = self.now() - at
            return
        try:
            self.heal()
            fault.recovery_s = self.now() - at
        except RuntimeError as err:
            fault.note = str(err)

    def inject(self) -> None:
        """One fault at a time, at random intervals, until told to stop."""
        while not self.stop_faults.wait(self.rng.uniform(0.5, 1.5) * self.fault_every):
            try:
                self.inject_one()
            except Exception as err:  # noqa: BLE001 - the soak goes on; the note says why
                print(f"[soak] injector: {type(err).__name__}: {err}", flush=True)

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        print(f"[soak] stack up under {self.work}", flush=True)
        self.start_stack()
        # one film first without faults: the tiny models are built once, outside the clock
        warm = self.new_film()
        self.launch(warm)
        while self.renders:
            self.reap()
            time.sleep(1)
        if warm.delivered_at is None:
            raise RuntimeError(f"the warm-up film failed:\n{warm.last_log}")
        self.t0 = time.monotonic()
        end = self.minutes * 60
        injector = threading.Thread(target=self.inject, name="soak-faults", daemon=True)
        injector.start()
        next_load = 0.0
        while self.now() < end:
            with self.lock:
                self.reap()
                self.fill()
            if self.now() >= next_load:
                self.loads.append(os.getloadavg()[0])
                next_load = self.now() + 30
            time.sleep(1)
        self.stop_faults.set()
        injector.join()
        soak_seconds = self.now()
        print(f"[soak] {soak_seconds:.0f}s: time is up; draining {len(self.renders)} renders",
              flush=True)
        self.heal()
        drain_end = self.now() + DRAIN_MINUTES * 60
        while self.renders and self.now() < drain_end:
            with self.lock:
                self.reap()
            time.sleep(1)
        for render in self.renders:  # never finished: counted as not recovered
            os.killpg(render.process.pid, signal.SIGKILL)
            render.film.last_log = "still running at the end of the drain"
        pending = [f for f in self.films if f.delivered_at is None]
        for film in pending:
            film.failed = True
        print("[soak] verifying the bucket", flush=True)
        checks = self.verify()
        return self.summary(soak_seconds, checks)

    # -- checks ---------------------------------------------------------------------------------

    def verify(self) -> dict[str, Any]:
        from reelflow.store.artifacts import ArtifactStore
        from reelflow.store.settings import S3Settings
        from reelflow.store.verify import list_projects, verify_project

        store = ArtifactStore(S3Settings.from_stack_file(self.config.stack_file))
        problems: list[dict[str, str]] = []
        checked = 0
        for project in list_projects(store):
            report = verify_project(store, project)
            checked += report.checked
            problems += [{"project": project, "key": p.key, "issue": p.issue,
                          "detail": p.detail} for p in report.problems]
        lineage = [self.walk(store, f.film_key) for f in self.films if f.film_key]
        return {"objects_checked": checked, "problems": problems,
                "lineage": lineage, "duplicates": self.duplicates()}

    @staticmethod
    def walk(store: Any, film_key: str) -> dict[str, Any]:
        """Every ancestor of a film (edits, clips, down to the generated images, whose spec
        is their origin) with its sidecar; complete when none is missing."""
        from reelflow.store.artifacts import ObjectNotFound
        from reelflow.store.keys import sidecar_key

        seen: set[str] = set()
        missing: list[str] = []
        todo = [film_key]
        kinds: Counter[str] = Counter()
        while todo:
            key = todo.pop()
            if key in seen:
                continue
            seen.add(key)
            if not (store.exists(key) and store.exists(sidecar_key(key))):
                missing.append(key)
                continue
            try:
                lin = store.lineage(key)
            except ObjectNotFound:
                missing.append(key)
                continue
            kinds[lin.kind] += 1
            todo += lin.parents
        complete = not missing and kinds["image"] > 0
        return {"film": film_key, "ancestors": len(seen), "missing": missing,
                "kinds": dict(kinds), "complete": complete}

    def duplicates(self) -> dict[str, Any]:
        """Task runs per cache key on the Prefect server: more than one run that ended
        `Completed` (not `Cached`) under one key is a step rendered twice."""
        import httpx

        runs: list[dict[str, Any]] = []
        offset = 0
        while True:
            response = httpx.post(f"{self.api_url}/task_runs/filter", auth=self.auth,
                                  json={"limit": 200, "offset": offset}, timeout=60)
            response.raise_for_status()
            page = response.json()
            runs += page
            if len(page) < 200:
                break
            offset += 200
        completed: Counter[str] = Counter()
        states: Counter[str] = Counter()
        names: dict[str, str] = {}
        for run in runs:
            state = (run.get("state") or {}).get("name", "?")
            states[state] += 1
            if run.get("cache_key") and state == "Completed":
                completed[run["cache_key"]] += 1
                names[run["cache_key"]] = run["name"]
        dupes = {names[k]: n for k, n in completed.items() if n > 1}
        return {"task_runs": len(runs), "states": dict(states),
                "cache_keys_completed": len(completed),
                "duplicate_steps": dupes, "duplicates": sum(n - 1 for n in dupes.values())}

    def summary(self, soak_seconds: float, checks: dict[str, Any]) -> dict[str, Any]:
        lost_issues = {"no-object", "missing-parent"}
        problems = checks["problems"]
        lost = sum(p["issue"] in lost_issues for p in problems)
        lost += sum(len(x["missing"]) for x in checks["lineage"])
        by_target: dict[str, dict[str, int]] = {}
        for fault in self.faults:
            by_target.setdefault(fault.target, Counter())[fault.kind] += 1
        recoveries = [f for f in self.faults if f.recovery_s is not None]
        slowest = max(recoveries, key=lambda f: f.recovery_s or 0, default=None)
        services = [f.recovery_s for f in recoveries if f.target in SERVICES]
        delivered = [f for f in self.films if f.delivered_at is not None]
        unrecovered = [f for f in self.faults if f.recovery_s is None]
        return {
            "minutes": self.minutes,
            "soak_seconds": soak_seconds,
            "concurrency": self.concurrency,
            "fault_every_s": self.fault_every,
            "films_started": len(self.films) - 1,  # the warm-up film is not counted
            "films_delivered": len(delivered) - 1,
            "films_never_recovered": [
                {"film": f.index, "attempts": f.attempts, "exits": f.exits, "log": f.last_log}
                for f in self.films if f.failed],
            "render_launches": self.launches - 1,
            "faults_injected": len(self.faults),
            "faults_by_target": {k: dict(v) for k, v in sorted(by_target.items())},
            "faults_without_recovery": [asdict(f) for f in unrecovered],
            "objects_checked": checks["objects_checked"],
            "objects_lost": lost,
            "integrity_problems": problems,
            "films_lineage_complete": sum(x["complete"] for x in checks["lineage"]),
            "films_lineage_checked": len(checks["lineage"]),
            "lineage_incomplete": [x for x in checks["lineage"] if not x["complete"]],
            "duplicates": checks["duplicates"]["duplicates"],
            "duplicate_steps": checks["duplicates"]["duplicate_steps"],
            "task_runs": checks["duplicates"]["task_runs"],
            "task_run_states": checks["duplicates"]["states"],
            "slowest_recovery_s": slowest.recovery_s if slowest else None,
            "slowest_recovery": asdict(slowest) if slowest else None,
            "slowest_service_recovery_s": max(services, default=None),
            "median_service_recovery_s": statistics.median(services) if services else None,
            "load_average_1m": {"min": min(self.loads, default=0.0),
                                "median": statistics.median(self.loads) if self.loads else 0.0,
                                "max": max(self.loads, default=0.0)},
            "faults": [asdict(f) for f in self.faults],
        }


# -- the report --------------------------------------------------------------------------------


def table(result: dict[str, Any]) -> str:
    """The soak's outcome as a markdown table (printed, and in the report)."""
    load = result["load_average_1m"]
    by = ", ".join(f"{t} " + "/".join(f"{n} {k}" for k, n in sorted(c.items()))
                   for t, c in result["faults_by_target"].items())
    slowest = result["slowest_recovery"]
    where = f" ({slowest['kind']} {slowest['target']})" if slowest else ""
    rows = [
        ("soak time", f"{result['soak_seconds'] / 60:.1f} min, {result['concurrency']} "
                      "renders at once"),
        ("films delivered", f"{result['films_delivered']} of {result['films_started']} started"),
        ("films never recovered", str(len(result["films_never_recovered"]))),
        ("render launches", str(result["render_launches"])),
        ("faults injected", f"{result['faults_injected']} ({by})"),
        ("faults without recovery", str(len(result["faults_without_recovery"]))),
        ("objects checked", str(result["objects_checked"])),
        ("objects lost (goal 0)", str(result["objects_lost"])),
        ("integrity problems", str(len(result["integrity_problems"]))),
        ("films with complete lineage", f"{result['films_lineage_complete']} of "
                                        f"{result['films_lineage_checked']}"),
        ("duplicate renders (goal 0)", str(result["duplicates"])),
        ("slowest recovery", f"{result['slowest_recovery_s'] or 0:.1f} s{where}"),
        ("slowest / median service recovery",
         f"{result['slowest_service_recovery_s'] or 0:.1f} s / "
         f"{result['median_service_recovery_s'] or 0:.1f} s"),
        ("load average (1 min)", f"min {load['min']:.1f}, median {load['median']:.1f}, "
                                 f"max {load['max']:.1f}"),
    ]
    return "\n".join(["| soak | result |", "|---|---|",
                      *[f"| {name} | {value} |" for name, value in rows]])


def run(ctx: Context) -> Section:
    minutes = float(ctx.shared.get("minutes", 30.0))
    concurrency = int(ctx.shared.get("concurrency", 3))
    fault_every = float(ctx.shared.get("fault_every", 25.0))
    seed = int(ctx.shared.get("seed", 23))
    out: Path = ctx.shared.get("out", ROOT / "bench" / "results")
    section = Section(
        key="soak",
        title="Soak under random faults",
        method=(
            f"{minutes:g} min of `reelflow render --profile test --auto-approve` (2-3 shot "
            f"films, every 4th rendered twice at once), {concurrency} renders at once, on a "
            "private stack (weed mini, PostgreSQL, Redis, Prefect server) on free ports; one "
            f"fault every ~{fault_every:g} s (0.5-1.5x), at random: SIGKILL (then `up` / launch "
            "again) or SIGSTOP for 2-20 s (then SIGCONT) of S3, Prefect, Redis, PostgreSQL or a "
            "render's process group. Then every object against its sidecar, every delivered "
            "film's lineage, and the task runs per cache key."
        ),
    )
    # REELFLOW_SOAK_HOME keeps the stack, boards and render logs after the run (to look into)
    home = Path(os.environ.get("REELFLOW_SOAK_HOME") or ctx.work / "soak")
    soak = Soak(home, minutes, concurrency, fault_every, seed)
    try:
        result = soak.run()
    finally:
        soak.stop_stack()
    result["started_at"] = ctx.shared.get("started_at", datetime.now(UTC).isoformat())
    text = table(result)
    print(text, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"soak-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"soak-{stamp}.md").write_text(f"# reelflow soak ({stamp})\n\n{section.method}\n\n"
                                          f"{text}\n")
    section.add("films delivered", "films rendered to the end", [result["films_delivered"]],
                unit="films")
    section.add("faults injected", "kills and pauses", [result["faults_injected"]],
                unit="faults")
    section.add("objects lost", "objects or lineage parents missing", [result["objects_lost"]],
                unit="objects")
    section.add("duplicates", "extra Completed task runs per cache key",
                [result["duplicates"]], unit="runs")
    section.add("slowest recovery", "fault -> healthy (render: -> film delivered)",
                [result["slowest_recovery_s"] or 0.0])
    section.notes += [f"soak report: {out / f'soak-{stamp}.md'} and .json", *text.splitlines()]
    bad = (result["objects_lost"] or result["duplicates"] or result["integrity_problems"]
           or result["films_never_recovered"])
    section.notes.append("FAIL: see the report" if bad else "goals met: 0 lost, 0 duplicates")
    return section
