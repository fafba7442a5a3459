"""Pinned memory choices: fp8 storage changes pixels and so the job's key; offloading moves the
same weights and does not; the sidecar records both, and the pipeline gets both.

Real tiny diffusers models on CPU, a real S3 bucket (`weed mini`); nothing mocked.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from reelflow.gpu.pins import MemoryPins, plan_for
from reelflow.render import images, models, weights
from reelflow.render.jobs import image_job
from reelflow.render.profiles import get_profile
from reelflow.store.artifacts import ArtifactStore
from reelflow.storyboard import parse_storyboard

BOARD = """
title: Memory
project: memory-pins
style: {model: m}
shots:
  - id: road
    description: a mountain road at dawn
    duration: 1
"""


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pins-models")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REELFLOW_MODELS", str(root))
        models.prepare_demo_models([])
    return root


@pytest.fixture
def env(tiny_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REELFLOW_MODELS", str(tiny_home))
    monkeypatch.setenv("REELFLOW_WEIGHT_HASHES", str(tmp_path / "weight-hashes.json"))
    monkeypatch.setattr(weights, "_memo", None)
    return tiny_home


def _job(memory: object = None):
    board = parse_storyboard(BOARD)
    profile = get_profile("test").model_copy(update={
        "variants": 1, "device": "cpu",
        "memory": None if memory is None else MemoryPins.model_validate(memory),
    })
    return image_job(board, board.shots[0], profile)


def test_shorthands_and_mappings_pin_the_same_choices() -> None:
    assert MemoryPins.model_validate("model-offload").job_options() == {"offload": "model"}
    assert MemoryPins.model_validate({"fp8": True}).job_options() == {"fp8": True}
    assert MemoryPins.model_validate("auto").job_options() == {}
    with pytest.raises(ValueError, match="memory: 'huge' is not one of"):
        MemoryPins.model_validate("huge")
    plan = plan_for("cpu", "/nowhere/tiny", "float32", {"offload": "group", "fp8": True})
    assert (plan.offload, plan.storage_dtype, plan.vae_tiling) == ("group", "float8_e4m3fn",
                                                                   False)
    assert plan_for("cpu", "/nowhere/tiny", "float32").offload == "none"


def test_fp8_changes_the_key_offload_does_not_and_the_sidecar_records_both(
    env: Path, store: ArtifactStore, caplog: pytest.LogCaptureFixture
) -> None:
    plain, offloaded, fp8 = _job(), _job("model-offload"), _job({"fp8": True})
    both = _job({"offload": "model", "fp8": True})
    assert "memory" not in plain.model_dump()  # nothing pinned: the keys stay what they were
    assert offloaded.spec_hash() == plain.spec_hash()
    assert offloaded.model.memory == {"offload": "model"}  # ... but the worker is told
    assert fp8.spec_hash() != plain.spec_hash()
    assert both.spec_hash() == fp8.spec_hash()

    caplog.set_level(logging.INFO, logger="reelflow.gpu.memory")
    (plain_key,) = images.render_variants(store, plain)
    (both_key,) = images.render_variants(store, both)
    assert both_key != plain_key
    lineage = store.lineage(both_key)
    assert lineage.extra["memory"] == {"offload": "model", "device": "cpu", "fp8": True}
    assert lineage.spec["model"]["memory"] == {"offload": "model", "fp8": True}
    assert "memory" not in store.lineage(plain_key).extra

    # the choices reached the resident pipeline: fp8 weights and model offload hooks
    from reelflow.imaging.pipelines import get_pipeline_cache

    pipe = get_pipeline_cache().text2image(models.model_source(both.model))
    assert pipe.unet.down_blocks[0].resnets[0].conv1.weight.dtype == torch.float8_e4m3fn
    assert hasattr(pipe.unet, "_hf_hook")
    # fp8 storage changes the pixels, as its place in the key says
    assert store.get_bytes(both_key) != store.get_bytes(plain_key)

    # the plan is logged once per process, not once per shot
    images.render_variants(store, _job({"offload": "model", "fp8": True}).model_copy(
        update={"seed": 7}))
    logged = [r.message for r in caplog.records if r.message.startswith("memory plan:")]
    assert len([m for m in logged if "model CPU offload + float8_e4m3fn" in m]) == 1


def test_doctor_plans_with_the_profiles_pins_and_names_the_pin_a_plan_needs() -> None:
    from reelflow.gpu.doctor import _image_check
    from reelflow.storyboard import load_storyboard

    board = load_storyboard(Path(__file__).resolve().parents[1] / "examples"
                            / "su7-winter-spring.yaml", check_files=False)
    full = get_profile("full")
    tight = _image_check(board, full, "8GB", "128GB", "cuda")
    assert tight.plan.vae_tiling and "pins memory: {vae_tiling: true}" in tight.note
    pinned = full.model_copy(update={"memory": MemoryPins(fp8=True)})
    roomy = _image_check(board, pinned, "80GB", "128GB", "cuda")
    assert roomy.plan.storage_dtype == "float8_e4m3fn" and roomy.plan.offload == "none"
    offload = full.model_copy(update={"memory": MemoryPins.model_validate("model-offload")})
    assert _image_check(board, offload, "80GB", "128GB", "cuda").plan.offload == "model"
