"""`doctor`: per model of a storyboard, where it would load, the peak, and what does not fit."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelflow.gpu.doctor import REFERENCE_MODELS, doctor, reference_plans
from reelflow.gpu.memory import GiB, parse_memory

SEED = Path(__file__).resolve().parents[1] / "examples" / "su7-winter-spring.yaml"


def test_doctor_plans_the_seed_film_for_a_24gb_card():
    report = doctor(SEED, "full", gpu_memory="24GB", host_memory="64GB")
    images, clips = report.checks
    assert images.name == "flux1-dev-fp8" and images.architecture == "flux1-dev"
    # the full profile's hi-res fix doubles the storyboard's 1536x864
    assert (images.workload.width, images.workload.height) == (3072, 1728)
    assert images.plan.fits and images.plan.peak_bytes <= 24 * GiB
    assert images.plan.offload != "none"  # Flux with its T5 is ~31 GB: it cannot all stay
    assert clips.plan is None and "no model" in clips.note
    text = report.text()
    assert "images: flux1-dev-fp8 (sized as flux1-dev) at 3072x1728" in text
    assert "transformer" in text and "every model fits" in text


def test_doctor_says_what_does_not_fit(tmp_path):
    board = tmp_path / "sdxl.yaml"
    board.write_text(SEED.read_text().replace("model: flux1-dev-fp8", "model: sdxl-base-1.0"))
    report = doctor(board, "full", gpu_memory="4GB", host_memory="32GB",
                    video_model="wan2.2-a14b")
    images, clips = report.checks
    assert images.architecture == "sdxl-base-1.0" and clips.architecture == "wan2.2-i2v-a14b"
    assert clips.workload.frames % 4 == 1  # Wan makes 4k+1 frames
    for check in (images, clips):
        assert not check.plan.fits and check.plan.peak_bytes > parse_memory("4GB")
        assert check.plan.reason.startswith("does not fit: device memory")
    assert not report.fits
    assert report.text().splitlines()[-1] == "does not fit: sdxl-base-1.0, wan2.2-a14b"
    # a 24 GB card with 64 GB of RAM runs both, offloading
    report = doctor(board, "full", gpu_memory="24GB", host_memory="64GB",
                    video_model="wan2.2-a14b")
    assert report.fits and all(c.plan.offload != "none" for c in report.checks)
    # the same storyboard on an 80 GB card fits everything
    assert doctor(board, "full", gpu_memory="80GB", host_memory="128GB",
                  video_model="wan2.2-a14b").fits


def test_doctor_refuses_a_bad_profile_and_memory_size():
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        doctor(SEED, "nope", gpu_memory="24GB")
    with pytest.raises(ValueError, match="memory size 'huge'"):
        doctor(SEED, "full", gpu_memory="huge")


def test_reference_plans_for_24_and_80_gb_cards():
    text = reference_plans()
    for budget in ("24GB", "80GB"):
        assert f"== {budget} card" in text
    for name in REFERENCE_MODELS:
        assert text.count(f"-- {name} at") == 2
    assert "DOES NOT FIT" not in text
    section_80 = text.split("== 80GB card")[1]
    assert section_80.count("everything resident") == 4


def test_the_doctor_command(tmp_path, capsys):
    """`reelflow doctor`: the report, exit 1 when a model does not fit, one line for bad input."""
    from cli.main import main

    assert main(["doctor", str(SEED), "--gpu-memory", "24GB", "--host-memory", "64GB"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "every model fits" and "flux1-dev" in out
    board = tmp_path / "sdxl.yaml"
    board.write_text(SEED.read_text().replace("model: flux1-dev-fp8", "model: sdxl-base-1.0"))
    assert main(["doctor", str(board), "--gpu-memory", "4GB", "--host-memory", "32GB",
                 "--video-model", "wan2.2-a14b"]) == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("does not fit: sdxl-base-1.0")
    assert main(["doctor", str(SEED), "--gpu-memory", "huge"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "memory size 'huge'" in err[0]
    assert main(["doctor", "--reference"]) == 0
    out = capsys.readouterr().out
    assert "== 24GB card" in out and "== 80GB card" in out and "ltx-2" in out.lower()


def test_doctor_plans_a_skyreels_long_shot_model():
    report = doctor(SEED, "full", gpu_memory="24GB", host_memory="64GB",
                    video_model="skyreels-v2-df-14b")
    clips = report.checks[1]
    assert clips.name == "skyreels-v2-df-14b" and clips.architecture == "wan2.2-i2v-a14b"
    assert clips.workload.frames <= 97 and (clips.workload.frames - 1) % 4 == 0
    assert clips.plan.fits and clips.plan.peak_bytes <= 24 * GiB
