"""Estimates (reelflow/render/estimates.py): a film's work counted from its storyboard and
profile, seconds per unit from earlier steps, the declared rule without history, the cost.
The estimate from real Prefect history is tested on the seed film (tests/test_previz.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from reelflow.render.estimates import (
    MIN_SPREAD,
    RULE_RANGE,
    RULES,
    Sample,
    WorkItem,
    estimate,
    fit_rate,
    kind_of,
    plan_work,
    price_per_gpu_hour,
)
from reelflow.render.profiles import get_profile
from reelflow.storyboard import load_storyboard

SEED = Path(__file__).resolve().parents[1] / "examples" / "su7-winter-spring.yaml"


def test_kinds_come_from_task_run_names() -> None:
    assert kind_of("variants-s01-mountain-aerial") == "variants"
    assert kind_of("frame-s05-from-s04") == "frame"
    assert kind_of("clip-a") == "clip" and kind_of("assemble-film") == "assemble-film"
    assert kind_of("version-16x9-h264") == "version" and kind_of("cover-16:9") == "cover"
    assert kind_of("score-variants") is None and kind_of("drift-a") is None


def test_work_scales_with_steps_size_and_frames() -> None:
    board = load_storyboard(SEED)
    full = {i.task: i for i in plan_work(board, get_profile("full"))}
    demo = {i.task: i for i in plan_work(board, get_profile("demo"))}
    first = board.shots[0]
    # 30 steps x 3 variants x 1536x864 against 4 steps x 3 variants x 128x72
    assert full[f"variants-{first.id}"].units == pytest.approx(3 * 30 * 1536 * 864 / 1e6)
    assert demo[f"variants-{first.id}"].units == pytest.approx(3 * 4 * 128 * 72 / 1e6)
    assert full[f"clip-{first.id}"].units == pytest.approx(
        first.duration * board.fps * board.width * board.height / 1e6)
    transition = next(s for s in board.shots if s.first_frame and s.last_frame)
    assert f"variants-{transition.id}" not in full  # built from other clips' frames
    assert {i.stage for i in full.values()} == {"sound", "images", "clips", "edit"}


def test_voice_lines_and_a_generated_bed_are_the_sound_stage() -> None:
    """The voice-over lines (one step per line and language spoken, sized by its characters)
    and the music bed from a prompt (seconds x steps) are estimated as the run's first stage;
    a recorded take is no work; a silent film's estimate has no sound row."""
    from reelflow.render.estimates import WorkRecord
    from reelflow.storyboard.model import Music

    board = load_storyboard(SEED)
    lines = [s for s in board.shots if s.voiceover is not None]
    spoken = [i for i in plan_work(board, get_profile("previz"), ["zh", "en"])
              if i.kind == "speech"]
    assert len(spoken) == 2 * len(lines) and {i.stage for i in spoken} == {"sound"}
    first = lines[0]
    assert [i.units for i in spoken if i.task == f"speech-{first.id}"] == [
        len(first.voiceover.zh), len(first.voiceover.en)]  # type: ignore[union-attr]
    # the history cannot tell a line's two languages apart (one task run name): their mean
    record = WorkRecord.of(spoken, "previz", "cpu")
    assert record.units[f"speech-{first.id}"] == pytest.approx(
        (len(first.voiceover.zh) + len(first.voiceover.en)) / 2)  # type: ignore[union-attr]

    scored = board.model_copy(update={"music": Music(prompt="温柔的钢琴与弦乐", steps=20)})
    work = plan_work(scored, get_profile("previz"))
    (bed,) = [i for i in work if i.kind == "music-bed"]
    assert bed.stage == "sound" and bed.units == pytest.approx(-(-scored.duration // 1) * 20)
    history = [Sample(kind="speech", units=10.0, seconds=1.0, run="r"),
               Sample(kind="music-bed", units=100.0, seconds=5.0, run="r")]
    result = estimate(work, history, profile="previz", device="cpu")
    assert list(result.stages)[0] == "sound"
    expected = sum(0.1 * i.units for i in work if i.kind == "speech") + 0.05 * bed.units
    assert result.stages["sound"].expected == pytest.approx(expected)
    assert "sound" not in result.remaining("images").stages

    silent = board.model_copy(update={"shots": [s.model_copy(update={"voiceover": None})
                                                for s in board.shots], "music": None})
    quiet = estimate(plan_work(silent, get_profile("previz")), [], profile="previz",
                     device="cpu")
    assert list(quiet.stages) == ["images", "clips", "edit"]


def test_history_gives_rates_per_unit_with_a_range_and_the_cost() -> None:
    board = load_storyboard(SEED)
    work = plan_work(board, get_profile("full"))
    samples = [Sample(kind="variants", seconds=s, units=10.0, run="r1") for s in (8, 10, 12)]
    samples += [Sample(kind="clip", seconds=2.0, units=100.0, run="r1")]
    samples += [Sample(kind=k, seconds=1.0, units=100.0, run="r2")
                for k in ("frame", "assemble-film", "cover", "version")]
    result = estimate(work, samples, profile="full", device="cuda", price=2.5, currency="USD")
    variants = sum(i.units for i in work if i.kind == "variants")
    hires = sum(i.units for i in work if i.kind == "hires") * RULES["cuda"]["hires"]
    images = result.stages["images"]
    assert images.expected == pytest.approx(variants * 1.0 + hires)  # median 10 s / 10 units
    assert images.low == pytest.approx(variants * 0.8 + hires * RULE_RANGE[0])  # at least ±20%
    assert images.high == pytest.approx(variants * 1.2 + hires * RULE_RANGE[1])
    assert result.from_history and result.runs == 2
    assert "from 8 steps of 2 earlier run(s) at profile full on cuda" in result.basis
    assert "declared rule for hires" in result.basis  # no hi-res history: said, per kind
    assert result.gpu_hours == pytest.approx(result.total.expected / 3600)
    assert f"~{result.gpu_hours * 2.5:.2f} USD" in result.cost_line()
    rest = result.remaining("images")
    assert list(rest.stages) == ["clips", "edit"]
    assert "| clips |" in rest.markdown() and "| images |" not in rest.markdown()


def test_no_history_says_so_and_uses_the_declared_rule() -> None:
    board = load_storyboard(SEED)
    result = estimate(plan_work(board, get_profile("previz")), [], profile="previz",
                      device="cpu")
    assert not result.from_history
    assert result.basis.startswith("no history for profile previz on cpu")
    assert "declared rule" in result.basis
    total = result.total
    assert 0 < total.low < total.expected < total.high
    assert result.lines()[-1].strip() == "on cpu: no GPU-hours"


def test_price_per_gpu_hour_from_the_environment() -> None:
    assert price_per_gpu_hour({}) == (None, "")
    assert price_per_gpu_hour({"REELFLOW_GPU_HOUR_PRICE": "2.50 USD"}) == (2.5, "USD")
    with pytest.raises(ValueError, match="REELFLOW_GPU_HOUR_PRICE"):
        price_per_gpu_hour({"REELFLOW_GPU_HOUR_PRICE": "cheap"})


def _samples(pairs: list[tuple[float, float]], kind: str = "variants") -> list[Sample]:
    return [Sample(kind=kind, units=u, seconds=s, run="r1") for u, s in pairs]


def test_sizes_that_vary_fit_an_overhead_and_a_rate() -> None:
    """Steps of several sizes: seconds = overhead + rate x units, so a larger step is not
    charged the small steps' fixed cost per unit."""
    rate = fit_rate(_samples([(1.0, 2.5), (4.0, 4.0), (10.0, 7.0)]))
    assert rate.fitted and rate.steps == 3
    assert rate.overhead == pytest.approx(2.0) and rate.per_unit == pytest.approx(0.5)
    assert rate.seconds(20.0) == pytest.approx(12.0)
    # an exact fit has no spread of its own: the range is the narrowest, ±MIN_SPREAD
    assert (rate.low, rate.high) == pytest.approx((1 - MIN_SPREAD, 1 + MIN_SPREAD))
    # a per-unit rate alone would have said 20 x 13.5 / 15 = 18 s
    work = [WorkItem(task="variants-x", kind="variants", stage="images", units=20.0)]
    result = estimate(work, _samples([(1.0, 2.5), (4.0, 4.0), (10.0, 7.0)]), profile="p",
                      device="cpu")
    assert result.stages["images"].expected == pytest.approx(12.0)


def test_the_fit_stays_non_negative_and_its_range_is_the_spread() -> None:
    # larger steps slower than proportionally: no negative overhead, a line through zero
    through_zero = fit_rate(_samples([(1.0, 0.5), (2.0, 2.0), (4.0, 5.0)]))
    assert through_zero.overhead == 0.0 and through_zero.per_unit > 0
    assert through_zero.seconds(0.0) == 0.0
    # larger steps were not slower: no negative rate, the mean time per step
    flat = fit_rate(_samples([(1.0, 3.0), (2.0, 2.0), (4.0, 1.0)]))
    assert flat.per_unit == 0.0 and flat.overhead == pytest.approx(2.0)
    assert flat.low == pytest.approx(0.5) and flat.high == pytest.approx(1.5)


def test_one_size_uses_the_mean_step_and_scales_outside_it() -> None:
    """History of one size cannot tell overhead from work: that size takes the steps' mean;
    a size outside the span scales with its units from the span's edge."""
    rate = fit_rate(_samples([(10.0, 8.0), (10.0, 10.0), (10.0, 12.0)]))
    assert not rate.fitted and rate.span == (10.0, 10.0)
    assert rate.seconds(10.0) == pytest.approx(10.0)
    assert rate.seconds(30.0) == pytest.approx(30.0) and rate.seconds(5.0) == pytest.approx(5.0)
    assert (rate.low, rate.high) == pytest.approx((0.8, 1.2))
    # within a narrow span (less than FIT_SPAN apart) it is the same mean, not a line
    narrow = fit_rate(_samples([(10.0, 4.0), (12.0, 6.0), (11.0, 5.0)]))
    assert not narrow.fitted and narrow.seconds(11.5) == pytest.approx(5.0)


def test_recent_runs_weigh_more() -> None:
    old = [Sample(kind="clip", units=10.0, seconds=20.0, run="old", weight=0.25)]
    new = [Sample(kind="clip", units=10.0, seconds=10.0, run="new", weight=1.0)]
    assert fit_rate(old + new).seconds(10.0) == pytest.approx((20 * 0.25 + 10) / 1.25)
    work = [WorkItem(task="clip-a", kind="clip", stage="clips", units=10.0)]
    ignored = [Sample(kind="clip", units=10.0, seconds=99.0, run="x", weight=0.0)]
    assert estimate(work, new + ignored, profile="p", device="cpu").runs == 1


def test_step_shares_add_up_to_the_time_a_stage_was_busy() -> None:
    """Steps that wait in a running state for the device's slot, or run side by side, are
    each given a share of the stage's busy time; the shares add up to that time."""
    from flows.history import step_shares

    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def step(name: str, start: float, end: float) -> SimpleNamespace:
        return SimpleNamespace(id=name, name=name, state_name="Completed",
                               start_time=t0 + timedelta(seconds=start),
                               end_time=t0 + timedelta(seconds=end))

    # one slot: b starts with a but waits for it; c waits for b
    queued = [step("variants-a", 0, 1), step("variants-b", 0, 2), step("variants-c", 1, 3)]
    shares = step_shares(queued)
    assert sum(shares.values()) == pytest.approx(3.0)  # not 1 + 2 + 2 = 5
    assert shares["variants-b"] == pytest.approx(1.0)
    # two encodes side by side, then a gap, then a frame: the same stage (clips)
    side = [step("clip-a", 10, 14), step("clip-b", 10, 14), step("frame-c-from-b", 15, 16)]
    side.append(SimpleNamespace(id="x", name="clip-x", state_name="Cached",
                                start_time=t0, end_time=t0 + timedelta(seconds=99)))
    side.append(step("score-variants", 0, 50))  # not counted
    shares = step_shares(side)
    assert shares == pytest.approx({"clip-a": 2.0, "clip-b": 2.0, "frame-c-from-b": 1.0})


def test_a_stage_is_laid_out_on_its_lanes_after_the_steps_it_waits_for() -> None:
    """Steps side by side on the run's workers, a transition's frame after the clip it is
    taken from and its clip after the frame: what an estimate and a run both do."""
    from reelflow.render.estimates import stage_time

    def item(task: str, *after: str) -> WorkItem:
        return WorkItem(task=task, kind=kind_of(task) or task, stage="clips", units=1.0,
                        after=after)

    four = [item(f"clip-{n}") for n in "abcd"]
    assert stage_time(four, [2.0] * 4, 1) == pytest.approx(8.0)
    assert stage_time(four, [2.0] * 4, 2) == pytest.approx(4.0)
    chain = [item("clip-a"), item("clip-b"), item("frame-c-from-b", "clip-b"),
             item("frame-c-from-b", "clip-b"), item("clip-c", "frame-c-from-b")]
    # b (2) -> both frames side by side (1) -> c (3); a beside b
    assert stage_time(chain, [2.0, 2.0, 1.0, 1.0, 3.0], 2) == pytest.approx(6.0)
    assert stage_time(chain, [2.0, 2.0, 1.0, 1.0, 3.0], 1) == pytest.approx(9.0)
    assert stage_time(chain, [2.0, 2.0, 1.0, 1.0, 3.0], 8) == pytest.approx(6.0)


def test_the_lanes_of_the_run_shape_each_stage() -> None:
    """On two workers and one model slot (this CPU machine's previz run): the images, model
    steps, one at a time; the animatic clips two at a time; a later estimate on a bigger
    machine lays the same steps out on its own lanes. The record keeps the run's lanes."""
    from reelflow.render.estimates import Lanes, WorkRecord

    board = load_storyboard(SEED)
    work = plan_work(board, get_profile("previz"))
    samples = [Sample(kind=k, seconds=1.0, units=u, run="r")
               for k, u in {i.kind: i.units for i in work}.items()]
    one = estimate(work, samples, profile="previz", device="cpu")
    two = estimate(work, samples, profile="previz", device="cpu", lanes=Lanes(cpu=2, model=1))
    assert two.stages["images"].expected == pytest.approx(one.stages["images"].expected)
    assert two.stages["clips"].expected < 0.7 * one.stages["clips"].expected
    assert two.stages["clips"].low <= two.stages["clips"].expected <= two.stages["clips"].high
    record = WorkRecord.of(work, "previz", "cpu", Lanes(cpu=2, model=1))
    assert record.lanes == {"sound": 2, "images": 1, "clips": 2, "edit": 2}
    modelled = plan_work(board, get_profile("previz").model_copy(update={"video_backend": "ltx"}))
    assert WorkRecord.of(modelled, "p", "cpu", Lanes(cpu=2, model=1)).lanes["clips"] == 1
    assert WorkRecord.model_validate({"profile": "p", "device": "cpu"}).lanes == {}  # older


def test_step_time_on_a_lane_counts_steps_side_by_side_in_full() -> None:
    """Two encodes on two lanes each held a lane the whole time; three on two lanes held
    two thirds of it each; on one lane (the default) the shares add up to the busy time."""
    from flows.history import step_shares

    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def step(name: str, start: float, end: float) -> SimpleNamespace:
        return SimpleNamespace(id=name, name=name, state_name="Completed",
                               start_time=t0 + timedelta(seconds=start),
                               end_time=t0 + timedelta(seconds=end))

    two = [step("clip-a", 0, 3), step("clip-b", 0, 3)]
    assert step_shares(two, {"clips": 2}) == pytest.approx({"clip-a": 3.0, "clip-b": 3.0})
    assert step_shares(two) == pytest.approx({"clip-a": 1.5, "clip-b": 1.5})
    three = [*two, step("clip-c", 0, 3)]
    assert step_shares(three, {"clips": 2}) == pytest.approx(
        {"clip-a": 2.0, "clip-b": 2.0, "clip-c": 2.0})
