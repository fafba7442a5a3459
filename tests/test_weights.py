"""Weights identified by content: keys follow the bytes of models and LoRAs, not their paths.

Real tiny diffusers models on disk, a real S3 bucket (`weed mini`), the same core steps the flow's
tasks call; nothing mocked.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from reelflow.errors import ConfigError
from reelflow.render import images, models, weights
from reelflow.render.jobs import clip_job, frame_job, image_job
from reelflow.render.profiles import get_profile
from reelflow.store.artifacts import ArtifactStore
from reelflow.storyboard import parse_storyboard

BOARD = """
title: 权重 Weights
project: weights
style: {model: m}
shots:
  - id: inked
    description: a harbour at dawn
    duration: 1
    loras: [{name: ink, path: ink.safetensors, weight: 0.8}]
  - id: snowy
    description: a mountain road
    duration: 1
    loras: [{name: snow, path: snow.safetensors, weight: 0.7}]
  - id: plain
    description: a city street in rain
    duration: 1
"""


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny models in a models folder of this module's own (built once, ~5 s)."""
    root = tmp_path_factory.mktemp("weights-models")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REELFLOW_MODELS", str(root))
        models.prepare_demo_models(["ink", "snow"])
    return root


@pytest.fixture
def env(tiny_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REELFLOW_MODELS", str(tiny_home))
    monkeypatch.setenv("REELFLOW_WEIGHT_HASHES", str(tmp_path / "weight-hashes.json"))
    monkeypatch.setattr(weights, "_memo", None)
    return tiny_home


def _jobs(profile_name: str = "test", **changes: object) -> dict:
    board = parse_storyboard(BOARD)
    profile = get_profile(profile_name).model_copy(update={"variants": 1, **changes})
    return {shot.id: image_job(board, shot, profile) for shot in board.shots}


def test_folder_hash_is_stable_and_path_free(env: Path, tmp_path: Path) -> None:
    first = weights.content_hash(str(env / "tiny-sd"))
    copy = shutil.copytree(env / "tiny-sd", tmp_path / "elsewhere" / "sd")
    assert weights.content_hash(str(copy)) == first
    memo = weights.cache_file().read_text()
    assert str((env / "tiny-sd" / "model_index.json").resolve()) in memo  # remembered
    (copy / "scheduler" / "scheduler_config.json").write_text("{}")
    assert weights.content_hash(str(copy)) != first  # a config file is part of the identity
    with pytest.raises(ConfigError, match="weights not found: nowhere/model"):
        weights.content_hash("nowhere/model")


def test_cached_hub_id_hashes_its_snapshot(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--reelflow--tiny-sd"
    shutil.copytree(env / "tiny-sd", repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert weights.content_hash("reelflow/tiny-sd") == weights.content_hash(str(env / "tiny-sd"))
    assert weights.try_content_hash("reelflow/not-cached") is None


def test_jobs_carry_hashes_and_keys_leave_paths_out(env: Path) -> None:
    board = parse_storyboard(BOARD)
    profile = get_profile("test").model_copy(update={"video_model": "tiny-ltx"})
    job = image_job(board, board.shots[0], profile)
    assert job.model.sha256 == weights.content_hash(str(env / "tiny-sd"))
    assert job.loras[0].sha256 == weights.content_hash(str(env / "loras" / "ink.safetensors"))
    moved = job.model_copy(
        update={"model": job.model.model_copy(update={"source": "/somewhere/else"})}
    )
    assert moved.spec_hash() == job.spec_hash()
    reweighted = job.model_copy(
        update={"loras": [job.loras[0].model_copy(update={"weight": 0.5})]}
    )
    assert reweighted.spec_hash() != job.spec_hash()
    ref = parse_storyboard(
        BOARD.replace(
            "  - id: plain\n", "  - id: plain\n    first_frame: {shot: inked, restyle: ink}\n"
        )
    )
    shot = ref.shot("plain")
    clip_key = "projects/weights/shots/inked/clips/0123456789abcdef.mp4"
    frame = frame_job(ref, shot, shot.first_frame, profile, clip_key)
    assert frame.controlnet_sha256 == weights.content_hash(str(env / "tiny-controlnet"))
    clip = clip_job(ref, shot, profile)  # tiny-ltx not built here: keyed by path, as before
    assert clip.model_sha256 is None


def test_overwritten_lora_rerenders_exactly_its_shots(
    env: Path, store: ArtifactStore, tmp_path: Path
) -> None:
    from reelflow.imaging.tiny import build_tiny_lora

    old_jobs = _jobs()
    before = {shot: images.render_variants(store, job) for shot, job in old_jobs.items()}
    count = len(store.list("projects/"))
    lora = env / "loras" / "ink.safetensors"
    saved = lora.read_bytes()
    try:
        retrained = build_tiny_lora(env / "tiny-sd", tmp_path / "retrained.safetensors", seed=42)
        lora.write_bytes(retrained.read_bytes())  # saved over the same file, same size
        jobs = _jobs()
        stale = {s for s, job in jobs.items() if job.spec_hash() != old_jobs[s].spec_hash()}
        assert set(stale) == {"inked"}
        after = {shot: images.render_variants(store, job) for shot, job in jobs.items()}
        assert after["snowy"] == before["snowy"] and after["plain"] == before["plain"]
        assert after["inked"] != before["inked"]
        assert len(store.list("projects/")) == count + 1  # one new variant, nothing else
        old, new = store.get_bytes(before["inked"][0]), store.get_bytes(after["inked"][0])
        assert old != new  # the worker reloaded the LoRA, not its cached adapter
        lineage = store.lineage(after["inked"][0])
        used = {w["name"]: w["sha256"] for w in lineage.extra["weights"]}
        assert used["ink"] == weights.content_hash(str(lora))
        assert lineage.extra["environment"]["diffusers"]
        # A job keyed with the old file is refused rather than stored under the old key.
        old_job = old_jobs["inked"].model_copy(update={"variants": 2})
        with pytest.raises(ConfigError, match=r"lora ink: sha256 \w+ here"):
            images.render_variants(store, old_job)
    finally:
        lora.write_bytes(saved)


def test_copied_model_folder_reuses_every_object(
    env: Path, store: ArtifactStore, tmp_path: Path
) -> None:
    from reelflow.imaging.pipelines import get_pipeline_cache

    before = {shot: images.render_variants(store, job) for shot, job in _jobs().items()}
    copy = shutil.copytree(env / "tiny-sd", tmp_path / "copied-sd")
    loads = get_pipeline_cache().loads
    jobs = _jobs(image_model=str(copy))
    assert all(job.model.source == str(copy) for job in jobs.values())
    after = {shot: images.render_variants(store, job) for shot, job in jobs.items()}
    assert after == before
    assert get_pipeline_cache().loads == loads  # nothing rendered: the copy was never loaded


def test_task_cache_key_follows_content_not_path(env: Path, tmp_path: Path) -> None:
    from tasks.common import JobInputs

    job = _jobs()["plain"]
    copy = shutil.copytree(env / "tiny-sd", tmp_path / "sd-copy")
    moved = _jobs(image_model=str(copy))["plain"]
    policy = JobInputs()
    assert moved.model.source != job.model.source
    key = policy.compute_key(None, {"job": job}, {})  # type: ignore[arg-type]
    assert policy.compute_key(None, {"job": moved}, {}) == key  # type: ignore[arg-type]
    other = job.model_copy(update={"seed": job.seed + 1})
    assert policy.compute_key(None, {"job": other}, {}) != key  # type: ignore[arg-type]


@pytest.mark.slow
def test_task_states_follow_weight_content(
    env: Path,
    store: ArtifactStore,
    minio_block,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The flow's own task: a copied model folder is Cached everywhere; an overwritten LoRA
    re-runs exactly the shot that uses it."""
    from prefect import flow

    from reelflow.imaging.tiny import build_tiny_lora
    from tasks.common import get_store
    from tasks.images import render_variants

    settings = store.settings
    monkeypatch.setenv("REELFLOW_S3_ENDPOINT", settings.endpoint)
    monkeypatch.setenv("REELFLOW_S3_ACCESS_KEY", settings.access_key)
    monkeypatch.setenv("REELFLOW_S3_SECRET_KEY", settings.secret_key.get_secret_value())
    monkeypatch.setenv("REELFLOW_S3_BUCKET", settings.bucket)
    get_store.cache_clear()
    step = render_variants.with_options(result_storage=minio_block, persist_result=True)

    @flow
    def shots(jobs: dict) -> dict[str, str]:
        return {shot: step(job, return_state=True).name for shot, job in jobs.items()}

    lora = env / "loras" / "ink.safetensors"
    saved = lora.read_bytes()
    try:
        seed = random.randrange(10**6, 10**9)  # the first run cannot hit an older cache entry

        def jobs(**changes: object) -> dict:
            return {s: j.model_copy(update={"seed": seed}) for s, j in _jobs(**changes).items()}

        assert shots(jobs()) == {"inked": "Completed", "snowy": "Completed", "plain": "Completed"}
        copy = shutil.copytree(env / "tiny-sd", tmp_path / "moved-sd")
        assert shots(jobs(image_model=str(copy))) == {
            "inked": "Cached", "snowy": "Cached", "plain": "Cached"
        }
        retrained = build_tiny_lora(env / "tiny-sd", tmp_path / "retrained.safetensors", seed=77)
        lora.write_bytes(retrained.read_bytes())
        assert shots(jobs()) == {"inked": "Completed", "snowy": "Cached", "plain": "Cached"}
    finally:
        lora.write_bytes(saved)
        get_store.cache_clear()


def test_resident_pipeline_reloads_a_model_changed_on_disk(env: Path, tmp_path: Path) -> None:
    import os

    from reelflow.imaging.models import ModelSource
    from reelflow.imaging.pipelines import PipelineCache

    folder = shutil.copytree(env / "tiny-sd", tmp_path / "retrained-sd")
    source = ModelSource(source=str(folder), device="cpu")
    cache = PipelineCache()
    first = cache.text2image(source)
    assert cache.text2image(source) is first and cache.loads == 1
    weights_file = next((folder / "unet").glob("*.safetensors"))
    weights_file.write_bytes(weights_file.read_bytes())  # "retrained" in place
    os.utime(weights_file, ns=(1, 1))
    assert cache.text2image(source) is not first and cache.loads == 2
    assert len(cache._bases) == 1  # the stale pipeline was dropped, not kept beside it


def test_ip_adapter_is_keyed_by_content(env: Path, tmp_path: Path) -> None:
    """The IP-Adapter a shot is locked with is a weight like the others: its hash is in the
    job, the key leaves its path out, and other weights under the same path change the key."""
    from reelflow.render.jobs import IPAdapterChoice, identify_weights

    adapter = tmp_path / "ip-adapter"
    adapter.mkdir()
    (adapter / "ip_adapter.safetensors").write_bytes(b"weights v1")
    board = parse_storyboard(BOARD)
    job = image_job(board, board.shots[0], get_profile("test"))
    choice = IPAdapterChoice(path=str(adapter), scale=0.6, image="projects/x/ref.png",
                             character="ink")
    locked = identify_weights(job.model_copy(update={"ip_adapter": choice}))
    assert locked.ip_adapter and locked.ip_adapter.sha256 == weights.content_hash(str(adapter))
    assert any(w["role"] == "ip-adapter" for w in weights.used_weights(locked))
    elsewhere = tmp_path / "moved"
    shutil.copytree(adapter, elsewhere)
    moved = identify_weights(
        job.model_copy(update={"ip_adapter": choice.model_copy(update={"path": str(elsewhere)})})
    )
    assert moved.spec_hash() == locked.spec_hash()
    retrained = tmp_path / "retrained"
    shutil.copytree(adapter, retrained)
    (retrained / "ip_adapter.safetensors").write_bytes(b"weights v2")
    changed = identify_weights(
        job.model_copy(update={"ip_adapter": choice.model_copy(update={"path": str(retrained)})})
    )
    assert changed.spec_hash() != locked.spec_hash()


def test_auto_device_is_recorded_as_the_device_it_picks() -> None:
    """One film's objects name one device: "auto" is never written as such, also in a process
    that has not imported torch yet (a previz panel, the first object of a run)."""
    import subprocess
    import sys

    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    code = ("import sys; from reelflow.render import weights; "
            "assert 'torch' not in sys.modules; print(weights.environment('auto')['device'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip() == expected
    assert weights.environment("cpu", "float32")["device"] == "cpu"
