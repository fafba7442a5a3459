"""Estimates (reelflow/render/estimates.py): a film's work counted from its storyboard and
profile, seconds per unit from earlier steps, the declared rule without history, the cost.
The estimate from real Prefect history is tested on the seed film (tests/test_previz.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelflow.render.estimates import (
    RULE_RANGE,
    RULES,
    Sample,
    estimate,
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
    assert {i.stage for i in full.values()} == {"images", "clips", "edit"}


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
