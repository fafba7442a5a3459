"""Memory pins for video models: a video model's `memory` option reaches its resident pipeline
(fp8 weights on both Wan 2.2 experts, model-offload hooks, VAE tiling) through the clip step;
fp8 and tiling change the clip's key, offloading does not and is in the sidecar; another pin
gets another resident pipeline.

A tiny Wan 2.2 A14B built from configs, a real S3 bucket (`weed mini`); nothing mocked.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from reelflow.errors import InputError
from reelflow.render import clips, weights
from reelflow.render.jobs import clip_job
from reelflow.render.profiles import get_profile
from reelflow.store.artifacts import ArtifactStore
from reelflow.storyboard import parse_storyboard

BOARD = """
title: Video memory
project: video-pins
width: 128
height: 72
fps: 8
style: {model: m}
shots:
  - id: road
    description: a mountain road at dawn
    duration: 1
"""


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from reelflow.motion.tiny_wan import build_tiny_wan22

    root = tmp_path_factory.mktemp("video-pins-models")
    build_tiny_wan22(root / "tiny-wan22")
    return root


@pytest.fixture
def env(tiny_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REELFLOW_MODELS", str(tiny_home))
    monkeypatch.setenv("REELFLOW_WEIGHT_HASHES", str(tmp_path / "weight-hashes.json"))
    monkeypatch.setattr(weights, "_memo", None)
    return tiny_home


def _job(memory: Any = None, **options: Any):
    board = parse_storyboard(BOARD)
    profile = get_profile("test-wan")
    video = {**profile.video_options, "device": "cpu", "steps": 1, **options}
    if memory is not None:
        video["memory"] = memory
    profile = profile.model_copy(update={"video_options": video})
    return clip_job(board, board.shots[0], profile, still_key="video-pins/stills/road.png")


def test_pixel_changing_pins_change_the_clip_key_offloading_does_not(env: Path) -> None:
    plain = _job()
    assert "memory" not in plain.backend_options  # nothing pinned: keys stay what they were
    assert _job("auto").spec_hash() == plain.spec_hash()
    offloaded = _job("model-offload")
    assert offloaded.backend_options["memory"] == {"offload": "model"}  # the worker is told
    assert offloaded.spec_hash() == plain.spec_hash()
    assert _job({"offload": "group"}).spec_hash() == plain.spec_hash()
    fp8, tiled = _job("fp8"), _job({"vae_tiling": True})
    assert fp8.spec_hash() != plain.spec_hash() and tiled.spec_hash() != plain.spec_hash()
    assert fp8.spec_hash() != tiled.spec_hash()
    assert _job({"fp8": True}).spec_hash() == fp8.spec_hash()  # shorthand = mapping
    assert _job({"offload": "model", "fp8": True}).spec_hash() == fp8.spec_hash()

    with pytest.raises(InputError, match=r"video options memory: 'huge' is not one of"):
        _job("huge")
    with pytest.raises(InputError, match=r"video options memory.gguf: a GGUF transformer is "
                       "pinned on the image model only"):
        _job({"gguf": "@models/x.gguf"})
    from blocks.models import VideoModel

    with pytest.raises(ValueError, match=r"models.wan-vace memory.fp8: Input should be"):
        VideoModel(backend="wan22", model="m", models={"wan-vace": {
            "model": "v", "memory": {"fp8": "maybe"}}})


def _still(store: ArtifactStore) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 32), (40, 90, 200)).save(buf, "PNG")
    store.put_bytes("video-pins/stills/road.png", buf.getvalue(), "image/png")


def test_pins_reach_the_resident_video_pipeline_and_the_sidecar(
    env: Path, store: ArtifactStore, caplog: pytest.LogCaptureFixture
) -> None:
    from reelflow.motion.diffusion import clear_pipeline_cache

    clear_pipeline_cache()
    _still(store)
    caplog.set_level(logging.INFO, logger="reelflow.gpu.memory")
    plain, pinned = _job(), _job({"offload": "model", "fp8": True, "vae_tiling": True})
    plain_key, pinned_key = clips.render_clip(store, plain), clips.render_clip(store, pinned)
    assert plain_key != pinned_key

    # the choices are on the pinned job's cached pipeline, and not on the plain one's
    pipe = clips._backend(pinned.backend, pinned.backend_options).pipe
    other = clips._backend(plain.backend, plain.backend_options).pipe
    assert pipe is not other  # another plan, another resident pipeline
    for expert in (pipe.transformer, pipe.transformer_2):  # both Wan 2.2 experts
        assert expert.blocks[0].ffn.net[0].proj.weight.dtype == torch.float8_e4m3fn
        assert hasattr(expert, "_hf_hook")  # model CPU offload
    assert pipe.vae.use_tiling
    assert other.transformer.blocks[0].ffn.net[0].proj.weight.dtype == torch.float32
    assert not hasattr(other.transformer, "_hf_hook") and not other.vae.use_tiling

    # the sidecar: the pins (offload included) and the plan; the spec: the pins as asked
    lineage = store.lineage(pinned_key)
    memory = lineage.extra["memory"]
    assert {k: memory[k] for k in ("offload", "fp8", "vae_tiling", "device")} == {
        "offload": "model", "fp8": True, "vae_tiling": True, "device": "cpu"}
    assert memory["plan"]["offload"] == "model"
    assert memory["plan"]["storage_dtype"] == "float8_e4m3fn" and memory["plan"]["vae_tiling"]
    assert lineage.spec["backend_options"]["memory"] == {
        "offload": "model", "fp8": True, "vae_tiling": True}
    assert lineage.extra["decode"]["tiled"] is True
    plain_memory = store.lineage(plain_key).extra["memory"]
    assert plain_memory["offload"] == "auto" and plain_memory["plan"]["offload"] == "none"
    # fp8 storage changes the pixels, as its place in the key says
    assert store.get_bytes(pinned_key) != store.get_bytes(plain_key)

    # offloading alone: the same key (the plain clip is found), a pipeline of its own
    offloaded = _job("model-offload")
    assert offloaded.output_key() == plain_key and store.complete(plain_key)
    again = clips._backend(offloaded.backend, offloaded.backend_options).pipe
    assert again is not other and hasattr(again.transformer, "_hf_hook")

    logged = [r.message for r in caplog.records if r.message.startswith("memory plan:")]
    assert len([m for m in logged if "model CPU offload + float8_e4m3fn storage + VAE tiling"
                in m]) == 1


def test_doctor_plans_the_video_model_with_its_pins() -> None:
    from reelflow.gpu.doctor import _clip_check

    board = parse_storyboard(BOARD)
    full = get_profile("full").model_copy(update={"video_backend": "wan22"})
    roomy = _clip_check(board, full, "80GB", "128GB", "cuda", "wan2.2-a14b").plan
    assert roomy.storage_dtype is None  # fits without: a render never chooses fp8 itself
    pinned = full.model_copy(update={"video_options": {"memory": {"fp8": True}}})
    plan = _clip_check(board, pinned, "80GB", "128GB", "cuda", "wan2.2-a14b").plan
    assert plan.storage_dtype == "float8_e4m3fn" and plan.peak_bytes < roomy.peak_bytes
    offload = full.model_copy(update={"video_options": {"memory": "model-offload"}})
    assert _clip_check(board, offload, "80GB", "128GB", "cuda", None).plan.offload == "model"
