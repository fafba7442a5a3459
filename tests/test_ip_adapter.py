"""IP-Adapter feature lock on the tiny SD model: tiny weights built from configs, saved as files,
loaded through the same loader a real checkpoint uses (folder or single file)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reelflow.imaging.generate import ImageSpec, generate_variants
from reelflow.imaging.ip_adapter import IPAdapterSpec, build_tiny_ip_adapter, locate
from reelflow.imaging.models import ModelNotFoundError, ModelSource
from reelflow.render import images, models
from reelflow.render.jobs import image_job, lora_names
from reelflow.render.profiles import get_profile
from reelflow.store.artifacts import ArtifactStore
from reelflow.storyboard import Character, LoraRef, parse_storyboard
from reelflow.storyboard.characters import add_character, resolve_cast

pytestmark = pytest.mark.slow

BOARD = """
title: 特征锁定
project: lock
characters:
  - name: su7
    ip_adapter_scale: 1.0
shots:
  - {id: snow, description: the car on a snowy road, duration: 1, characters: [su7]}
"""


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(str(tmp_path_factory.getbasetemp())) / "ip-models"


@pytest.fixture
def tiny(models_root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv("REELFLOW_MODELS", str(models_root))
    built = models.prepare_demo_models(["su7-body"])
    sd = Path(built["tiny-sd"])
    return {"sd": sd, "ip": build_tiny_ip_adapter(sd, models_root / "tiny-ip-adapter")}


def _pixels(store: ArtifactStore, key: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(store.get_bytes(key))).convert("RGB"), np.int16)


def test_locate_folder_and_single_file_and_missing_encoder(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    root, _, weight, encoder = locate(tiny["ip"])
    assert (root, weight, encoder) == (str(tiny["ip"]), "ip-adapter.safetensors", "image_encoder")
    assert locate(tiny["ip"] / "ip-adapter.safetensors")[2] == "ip-adapter.safetensors"
    lone = tmp_path / "ip.safetensors"
    lone.write_bytes((tiny["ip"] / "ip-adapter.safetensors").read_bytes())
    with pytest.raises(ModelNotFoundError, match="no image encoder"):
        locate(lone)
    with pytest.raises(ModelNotFoundError, match="IP-Adapter not found"):
        locate(tmp_path / "nothing")


def test_ip_adapter_changes_the_image_and_unloads_cleanly(tiny: dict[str, Path]) -> None:
    spec = ImageSpec(prompt="a car", seed=11, width=64, height=40, steps=2,
                     model=ModelSource(family="sd15", source=str(tiny["sd"])))  # fmt: skip
    reference = Image.new("RGB", (64, 64), (250, 210, 0))
    plain = np.asarray(generate_variants(spec, 1)[0][1], np.int16)
    for source in (tiny["ip"], tiny["ip"] / "ip-adapter.safetensors"):  # folder, single file
        locked = spec.model_copy(update={"ip_adapter": IPAdapterSpec(path=str(source), scale=1)})
        image = np.asarray(
            generate_variants(locked, 1, ip_adapter_image=reference)[0][1], np.int16
        )
        assert np.abs(image - plain).mean() > 2.0
    # unloaded after use: the plain image is exactly what it was
    assert np.array_equal(np.asarray(generate_variants(spec, 1)[0][1], np.int16), plain)
    with pytest.raises(ValueError, match="needs an image"):
        generate_variants(locked, 1)


def test_character_reference_locks_its_shot_through_the_job(
    tiny: dict[str, Path], store: ArtifactStore
) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (48, 48), (250, 210, 0)).save(buf, "PNG")
    add_character(
        store,
        Character(name="su7", description="yellow sports car", trigger_words=["su7ultra"],
                  lora=LoraRef(name="su7-body", path="l.safetensors", role="subject")),
        {"front.png": buf.getvalue()},
    )  # fmt: skip
    board, versions = resolve_cast(parse_storyboard(BOARD), store)
    assert board.character("su7").ip_adapter_scale == 1.0  # the storyboard's own scale
    profile = get_profile("test")
    assert lora_names(board) == ["su7-body"]
    plain = image_job(board, board.shots[0], profile)
    assert plain.ip_adapter is None
    locked = image_job(board, board.shots[0], profile.model_copy(update={"ip_adapter": "tiny"}))
    assert locked.ip_adapter is not None
    assert locked.ip_adapter.image == "characters/su7/front.png"
    assert locked.ip_adapter.path == "@models/tiny-ip-adapter" and locked.ip_adapter.scale == 1.0
    assert locked.spec_hash() != plain.spec_hash()

    plain_keys = images.render_variants(store, plain)
    locked_keys = images.render_variants(store, locked)
    for plain_key, locked_key in zip(plain_keys, locked_keys, strict=True):
        assert np.abs(_pixels(store, plain_key) - _pixels(store, locked_key)).mean() > 2.0
        lineage = store.lineage(locked_key)
        assert lineage.extra["ip_adapter"]["image"] == "characters/su7/front.png"
        assert lineage.spec["ip_adapter"]["scale"] == 1.0
        assert "characters/su7/front.png" in lineage.parents
        assert lineage.spec["characters"] == versions
        assert [lora["name"] for lora in lineage.spec["loras"]] == ["su7-body"]  # combined
        assert "ip_adapter" not in store.lineage(plain_key).extra


def test_sdxl_takes_the_same_loader(models_root: Path) -> None:
    from reelflow.imaging.tiny import build_tiny_sd

    sd = build_tiny_sd(models_root / "tiny-sdxl", family="sdxl")
    ip = build_tiny_ip_adapter(sd, models_root / "tiny-ip-adapter-xl")
    spec = ImageSpec(prompt="a car", seed=3, width=64, height=64, steps=2,
                     model=ModelSource(family="sdxl", source=str(sd)))  # fmt: skip
    plain = np.asarray(generate_variants(spec, 1)[0][1], np.int16)
    locked = spec.model_copy(update={"ip_adapter": IPAdapterSpec(path=str(ip), scale=1.0)})
    red = Image.new("RGB", (64, 64), (200, 10, 10))
    image = np.asarray(generate_variants(locked, 1, ip_adapter_image=red)[0][1], np.int16)
    assert np.abs(image - plain).mean() > 2.0
    assert np.array_equal(np.asarray(generate_variants(spec, 1)[0][1], np.int16), plain)
