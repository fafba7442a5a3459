"""How long a film will take, and what it will cost, from the studio's own history.

Why here (plain Python, no Prefect): the work of a film is counted from its storyboard and
profile (:func:`plan_work`: per step, in units that scale with what the step does, e.g. a
variant's steps x megapixels); earlier runs' steps (the time each held one of its run's lanes,
which flows/history.py reads from the Prefect server) become, per kind of step, an overhead plus
a rate per unit (:func:`fit_rate`); :func:`estimate` applies it to each step of the film and lays
each stage's steps out on this machine's lanes (:func:`stage_time`: steps side by side on the
CPU workers, model steps one per model slot, a transition after the clip it takes frames from).
Without history for this profile and device, a declared rule (:data:`RULES`) stands in, and the
estimate says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, Field

from reelflow.render.jobs.builders import generation_size, needs_image, shot_video
from reelflow.render.profiles import RenderProfile
from reelflow.storyboard import Storyboard

__all__ = [
    "KINDS",
    "Lanes",
    "PRICE_ENV",
    "RULES",
    "STAGES",
    "Estimate",
    "Rate",
    "Sample",
    "StageEstimate",
    "WorkItem",
    "estimate",
    "fit_rate",
    "kind_of",
    "plan_work",
    "price_per_gpu_hour",
    "stage_time",
]

Stage = Literal["sound", "images", "clips", "edit"]
#: in the order a run does them: the voice-over lines and the generated music bed are made
#: after the storyboard gate, before the images (their lengths place the cuts)
STAGES: tuple[Stage, ...] = ("sound", "images", "clips", "edit")

#: the kind of a step (its task run name's prefix: `variants-s01`, `clip-s01`) -> its stage,
#: and what one unit of its work is
KINDS: dict[str, tuple[Stage, str]] = {
    "speech": ("sound", "character"),
    "music-bed": ("sound", "second·step"),
    "variants": ("images", "step·megapixel"),
    "hires": ("images", "step·megapixel"),
    "frame": ("clips", "megapixel"),
    "clip": ("clips", "frame·megapixel"),
    "assemble-film": ("edit", "frame·megapixel"),
    "cover": ("edit", "megapixel"),
    "version": ("edit", "frame·megapixel"),
}

#: the declared rule, seconds per unit, when the studio has no history for a profile and device:
#: rough figures (a tiny or previz step on a CPU core; SD-class sampling on a 24 GB GPU), hence
#: the wide range (:data:`RULE_RANGE`)
RULES: dict[str, dict[str, float]] = {
    "cpu": {"speech": 0.05, "music-bed": 0.05, "variants": 2.0, "hires": 2.0, "frame": 1.0,
            "clip": 0.05, "assemble-film": 0.02, "cover": 1.0, "version": 0.02},
    "cuda": {"speech": 0.01, "music-bed": 0.002, "variants": 0.15, "hires": 0.15,
             "frame": 0.5, "clip": 0.02, "assemble-film": 0.01, "cover": 0.5, "version": 0.01},
}  # fmt: skip
RULE_RANGE = (0.5, 3.0)
#: the narrowest range history gives (a single earlier step says little about spread)
MIN_SPREAD = 0.2
#: a kind's overhead and rate are fitted apart only over sizes this far apart, from this many
#: steps: closer sizes cannot separate a fixed cost from a cost per unit
FIT_SPAN = 1.5
FIT_STEPS = 3
#: an animatic transition draws two pictures per frame (a morph from one panel to the other)
MORPH_WEIGHT = 2.0
#: the price of one GPU-hour, e.g. `2.50` or `2.50 USD`
PRICE_ENV = "REELFLOW_GPU_HOUR_PRICE"


class WorkItem(BaseModel):
    """One step of a film's work: its task run name (`*` where the name is not known before the
    run, e.g. versions), kind, stage and size in its kind's units; whether it holds a model
    slot while it runs, and the steps of its stage it starts after (by task run name)."""

    task: str
    kind: str
    stage: Stage
    units: float
    model: bool = False
    after: tuple[str, ...] = ()


class Lanes(BaseModel):
    """How many steps of a run work at once: the run's CPU workers (its task runner's threads),
    and of those, how many may hold a model slot (one per device). Why it matters: a stage of
    nine encodes on two workers takes half their time added up, one of three shots in a chain
    does not; an estimate made from one must lay the other out."""

    cpu: int = Field(default=1, ge=1)
    model: int = Field(default=1, ge=1)

    def of_stage(self, items: Sequence[WorkItem]) -> int:
        """A stage whose steps all hold a model slot runs as many at once as there are slots;
        else as many as there are workers."""
        if items and all(item.model for item in items):
            return min(self.model, self.cpu)
        return self.cpu


class Sample(BaseModel):
    """One finished step of an earlier run: how long it ran for how many units."""

    kind: str
    seconds: float
    units: float
    run: str = ""  # the flow run it belongs to
    weight: float = 1.0  # how much it counts (recent runs more: flows/history.py)


class StageEstimate(BaseModel):
    expected: float
    low: float
    high: float


class Estimate(BaseModel):
    """Seconds per stage (how long its steps keep it busy, laid out on the run's lanes), with
    a range; `basis` says where the rates come from."""

    profile: str
    device: str
    stages: dict[str, StageEstimate]
    basis: str
    from_history: bool
    runs: int = 0  # earlier runs the history came from
    price: float | None = None  # per GPU-hour
    currency: str = ""

    @property
    def total(self) -> StageEstimate:
        parts = self.stages.values()
        return StageEstimate(expected=sum(p.expected for p in parts),
                             low=sum(p.low for p in parts), high=sum(p.high for p in parts))

    @property
    def gpu_hours(self) -> float:
        """Hours the device is busy (0 on a CPU: no GPU is held)."""
        return self.total.expected / 3600 if self.device.startswith("cuda") else 0.0

    def remaining(self, after: Stage) -> Estimate:
        """The estimate of the stages after ``after`` (what a later gate still has to run)."""
        rest = STAGES[STAGES.index(after) + 1:]
        return self.model_copy(update={"stages": {s: self.stages[s] for s in rest
                                                  if s in self.stages}})

    def lines(self) -> list[str]:
        """The estimate as plain lines: one per stage, then the film's total and its cost."""
        out = [f"estimate ({self.basis}):"]
        for name, stage in [*self.stages.items(), ("total", self.total)]:
            out.append(f"  {name:<7} ~{_duration(stage.expected)} "
                       f"({_duration(stage.low)} to {_duration(stage.high)})")
        out.append("  " + self.cost_line())
        return out

    def cost_line(self) -> str:
        if not self.device.startswith("cuda"):
            return f"on {self.device}: no GPU-hours"
        hours = self.gpu_hours
        line = f"{hours:.3f} GPU-hours on {self.device}"
        if self.price is not None:
            money = hours * self.price
            low, high = (self.total.low / 3600 * self.price, self.total.high / 3600 * self.price)
            unit = f" {self.currency}" if self.currency else ""
            line += (f", ~{money:.2f}{unit} ({low:.2f} to {high:.2f}) at "
                     f"{self.price:g}{unit} per GPU-hour")
        else:
            line += f" (set {PRICE_ENV} for the price)"
        return line

    def markdown(self, title: str = "Estimate") -> str:
        """The estimate as a gate's description shows it: a table of stages."""
        rows = [f"**{title}** ({self.basis})", "", "| stage | expected | range |",
                "|---|---|---|"]
        for name, stage in [*self.stages.items(), ("total", self.total)]:
            rows.append(f"| {name} | {_duration(stage.expected)} | "
                        f"{_duration(stage.low)} to {_duration(stage.high)} |")
        return "\n".join([*rows, "", self.cost_line()])


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def kind_of(task_name: str) -> str | None:
    """The kind of a step from its task run name (`variants-s01` -> `variants`), None for
    steps the estimate does not count (scores, uploads)."""
    for kind in sorted(KINDS, key=len, reverse=True):
        if task_name == kind or task_name.startswith(kind + "-"):
            return kind
    return None


def plan_work(
    board: Storyboard, profile: RenderProfile, languages: Sequence[str] | None = None
) -> list[WorkItem]:
    """The film's steps and their sizes, from the storyboard and the profile alone (what the
    storyboard gate knows, before any model is loaded). ``languages``: those the run speaks
    (each version's; default: the film's own), one speech step per line in each."""
    import math

    from reelflow.sound.lines import line_text
    from reelflow.sound.sources import line_engine

    style = board.style
    width, height = generation_size(board, profile)
    steps = profile.steps or style.steps
    variants = profile.variants or style.variants
    still = width * height / 1e6
    film = board.width * board.height / 1e6
    video_steps = float(profile.video_options.get("steps", 1))
    items: list[WorkItem] = []

    def add(task: str, units: float, *, model: bool = False, after: Sequence[str] = ()) -> None:
        kind = kind_of(task) or task
        items.append(WorkItem(task=task, kind=kind, stage=KINDS[kind][0], units=units,
                              model=model, after=tuple(after)))

    voiced = any(shot.voiceover is not None for shot in board.shots)
    for language in (languages or [board.voice_language]) if voiced else []:
        for shot in board.shots:
            text = line_text(board, shot, language)  # type: ignore[arg-type]
            if text and line_engine(board, shot, language) != "recorded":  # a take: no work
                add(f"speech-{shot.id}", float(len(text)))
    if board.music is not None and board.music.prompt is not None:
        add("music-bed", math.ceil(board.duration) * float(board.music.steps), model=True)
    for shot in board.shots:  # images and frames are model steps (tasks/images.py)
        if needs_image(shot):
            add(f"variants-{shot.id}", variants * steps * still, model=True)
            if profile.hires_fix and profile.image_model != "previz":
                strength_steps = max(1.0, steps * profile.hires_strength)
                add(f"hires-{shot.id}", strength_steps * still * profile.hires_scale**2,
                    model=True, after=[f"variants-{shot.id}"])
        frames_taken = [f"frame-{shot.id}-from-{ref.shot}"
                        for ref in (shot.first_frame, shot.last_frame) if ref is not None]
        for task in frames_taken:  # from the source's finished clip
            add(task, film, model=True, after=[f"clip-{task.rsplit('-from-', 1)[1]}"])
        backend = shot_video(board, shot, profile.video_backend).backend
        morph = not needs_image(shot) and backend == "animatic"
        add(f"clip-{shot.id}", shot.duration * board.fps * film * video_steps
            * (MORPH_WEIGHT if morph else 1.0), model=_holds_model(backend),
            after=frames_taken)
    frames = board.duration * board.fps * film
    add("assemble-film", frames)
    add("cover-*", film, after=["assemble-film"])
    add("version-*", frames, after=["assemble-film"])
    return items


def _holds_model(backend: str) -> bool:
    """A clip of ``backend`` holds a model slot (tasks/clips.py): every backend with a pipeline."""
    from reelflow.motion.capabilities import capabilities

    try:
        return capabilities(backend).pipeline is not None
    except KeyError:
        return True


def stage_time(items: Sequence[WorkItem], seconds: Sequence[float], lanes: int) -> float:
    """How long a stage's steps keep it busy on ``lanes`` workers, laid out as the flow runs
    them: a step is queued once the steps it starts after have ended (every step of that name),
    and each worker, when free, takes the step queued first (plan order on a tie)."""
    present = {item.task for item in items}
    left: dict[str, int] = {}  # steps of each name not yet laid out
    for item in items:
        left[item.task] = left.get(item.task, 0) + 1
    ends: dict[str, float] = {}
    free = [0.0] * max(1, lanes)  # when each worker is next free
    pending = list(zip(items, seconds, strict=True))
    while pending:
        ready: list[tuple[float, int]] = []
        for i, (item, _) in enumerate(pending):
            waits = [name for name in item.after if name in present]
            if not any(left[name] for name in waits):
                ready.append((max((ends[name] for name in waits), default=0.0), i))
        queued, i = min(ready) if ready else (0.0, 0)  # no cycle comes from plan_work
        item, took = pending.pop(i)
        worker = free.index(min(free))
        end = max(free[worker], queued) + took
        free[worker] = end
        ends[item.task] = max(ends.get(item.task, 0.0), end)
        left[item.task] -= 1
    return max(ends.values(), default=0.0)


class Rate(BaseModel):
    """A kind of step's time for its size, from history: ``seconds = overhead + per_unit *
    units`` (each part >= 0), and the spread of the history's steps around it (``low`` and
    ``high``: factors on the expected time).

    When the history's steps are all about one size (``fitted`` False), its overhead and its
    work cannot be told apart: inside the sizes seen (``span``) a step takes the steps' mean
    time, and beyond them its time scales with its units from the nearest edge (all counted as
    work: for a much larger step, the cautious side)."""

    overhead: float
    per_unit: float
    low: float
    high: float
    steps: int
    fitted: bool
    span: tuple[float, float]

    def seconds(self, units: float) -> float:
        if self.fitted:
            return self.overhead + self.per_unit * units
        lo, hi = self.span
        mean = self.overhead
        if units > hi:
            return mean * units / hi
        if units < lo:
            return mean * units / lo
        return mean


def fit_rate(samples: Sequence[Sample]) -> Rate:
    """The kind's :class:`Rate` from its history's steps (weighted by ``Sample.weight``).

    Sizes that vary (the largest at least :data:`FIT_SPAN` times the smallest, at least
    :data:`FIT_STEPS` steps): a weighted least-squares line, held to a non-negative overhead and
    rate. Else the steps' mean time, scaled outside the sizes seen (see :class:`Rate`). The
    range is the steps' spread around the model (the lowest and highest ratio of a step's time
    to the model's), never narrower than ±MIN_SPREAD."""
    units = [s.units for s in samples]
    seconds = [s.seconds for s in samples]
    weights = [s.weight for s in samples]
    span = (min(units), max(units))
    if len(samples) >= FIT_STEPS and span[1] >= FIT_SPAN * span[0]:
        total = sum(weights)
        mean_u = sum(w * u for w, u in zip(weights, units, strict=True)) / total
        mean_s = sum(w * s for w, s in zip(weights, seconds, strict=True)) / total
        var = sum(w * (u - mean_u) ** 2 for w, u in zip(weights, units, strict=True))
        cov = sum(w * (u - mean_u) * (s - mean_s)
                  for w, u, s in zip(weights, units, seconds, strict=True))
        per_unit = cov / var
        overhead = mean_s - per_unit * mean_u
        if per_unit < 0:  # bigger steps were not slower: a fixed time per step
            per_unit, overhead = 0.0, mean_s
        elif overhead < 0:  # no fixed part: a line through zero
            overhead = 0.0
            per_unit = (sum(w * u * s for w, u, s in zip(weights, units, seconds, strict=True))
                        / sum(w * u * u for w, u in zip(weights, units, strict=True)))
        rate = Rate(overhead=overhead, per_unit=per_unit, low=1.0, high=1.0,
                    steps=len(samples), fitted=True, span=span)
    else:
        mean = sum(w * s for w, s in zip(weights, seconds, strict=True)) / sum(weights)
        rate = Rate(overhead=mean, per_unit=0.0, low=1.0,
                    high=1.0, steps=len(samples), fitted=False, span=span)
    ratios = [s / m for s, u in zip(seconds, units, strict=True)
              if (m := rate.seconds(u)) > 0]
    low = min([*ratios, 1 - MIN_SPREAD])
    high = max([*ratios, 1 + MIN_SPREAD])
    return rate.model_copy(update={"low": max(low, 0.0), "high": high})


def estimate(
    work: Sequence[WorkItem],
    samples: Iterable[Sample],
    *,
    profile: str,
    device: str,
    price: float | None = None,
    currency: str = "",
    lanes: Lanes | None = None,
) -> Estimate:
    """Seconds per stage: each step's time for its size from its kind's :class:`Rate` fitted
    to ``samples`` (:func:`fit_rate`; the range from the history's spread), else the declared
    rule for ``device`` (seconds per unit, range RULE_RANGE), the stage's steps laid out on
    ``lanes`` (:func:`stage_time`; default one: one step after another). ``samples`` are this
    profile's and device's history."""
    by_kind: dict[str, list[Sample]] = {}
    runs: set[str] = set()
    for sample in samples:
        if sample.units > 0 and sample.seconds >= 0 and sample.weight > 0:
            by_kind.setdefault(sample.kind, []).append(sample)
            runs.add(sample.run)
    rates = {kind: fit_rate(found) for kind, found in by_kind.items()}
    rule = RULES["cuda" if device.startswith("cuda") else "cpu"]
    lanes = lanes or Lanes()
    worked = {item.stage for item in work}
    declared: set[str] = set()
    times: dict[str, list[tuple[WorkItem, float, float, float]]] = {}
    for item in work:
        rate = rates.get(item.kind)
        if rate is not None:
            mid = rate.seconds(item.units)
            low, high = mid * rate.low, mid * rate.high
        else:
            declared.add(item.kind)
            mid = item.units * rule[item.kind]
            low, high = mid * RULE_RANGE[0], mid * RULE_RANGE[1]
        times.setdefault(item.stage, []).append((item, mid, low, high))
    stages = {}
    for name in STAGES:
        if name == "sound" and name not in worked:
            continue  # a silent film's estimate has no sound row
        steps = times.get(name, [])
        items = [step[0] for step in steps]
        on = lanes.of_stage(items)
        stages[name] = StageEstimate(
            expected=stage_time(items, [step[1] for step in steps], on),
            low=stage_time(items, [step[2] for step in steps], on),
            high=stage_time(items, [step[3] for step in steps], on))
    counted = sum(len(v) for v in by_kind.values())
    if not rates:
        basis = (f"no history for profile {profile} on {device} in this studio's runs; "
                 f"declared rule: {_rule_text(rule)}")
    else:
        basis = (f"from {counted} steps of {len(runs)} earlier run(s) at profile {profile} "
                 f"on {device}")
        if declared:
            basis += f"; declared rule for {', '.join(sorted(declared))} (no history)"
    return Estimate(profile=profile, device=device, stages=stages, basis=basis,
                    from_history=bool(rates), runs=len(runs), price=price, currency=currency)


def _rule_text(rule: dict[str, float]) -> str:
    return ", ".join(f"{kind} {rule[kind]:g} s per {KINDS[kind][1]}"
                     for kind in ("variants", "clip", "version"))


def price_per_gpu_hour(env: dict[str, str] | None = None) -> tuple[float | None, str]:
    """The configured price of a GPU-hour (`REELFLOW_GPU_HOUR_PRICE=2.50 USD`), else None."""
    text = (env if env is not None else os.environ).get(PRICE_ENV, "").strip()
    if not text:
        return None, ""
    amount, _, currency = text.partition(" ")
    try:
        return float(amount), currency.strip()
    except ValueError:
        raise ValueError(f"{PRICE_ENV}={text!r}: expected a number, e.g. 2.50 or '2.50 USD'")\
            from None


class WorkRecord(BaseModel):
    """What a run stores beside its steps so later estimates can read them: its profile,
    device, each step's units by task run name (`*` names: by kind), and how many of each
    stage's steps it ran at once (a record without: one)."""

    profile: str
    device: str
    units: dict[str, float] = Field(default_factory=dict)
    lanes: dict[str, int] = Field(default_factory=dict)

    @classmethod
    def of(cls, work: Sequence[WorkItem], profile: str, device: str,
           lanes: Lanes | None = None) -> WorkRecord:
        # a line spoken in two languages is two steps of one name (`speech-s01`), which the
        # history cannot tell apart: each counts as their mean
        found: dict[str, list[float]] = {}
        by_stage: dict[str, list[WorkItem]] = {}
        for item in work:
            found.setdefault(item.task, []).append(item.units)
            by_stage.setdefault(item.stage, []).append(item)
        lanes = lanes or Lanes()
        return cls(profile=profile, device=device,
                   units={task: sum(units) / len(units) for task, units in found.items()},
                   lanes={stage: lanes.of_stage(items) for stage, items in by_stage.items()})

    def units_of(self, task_name: str) -> float | None:
        """A finished step's units, by its task run name (a version by its kind's entry)."""
        if task_name in self.units:
            return self.units[task_name]
        kind = kind_of(task_name)
        return self.units.get(f"{kind}-*") if kind else None
