"""The character library on a real S3 server (SeaweedFS via the `store` fixture)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from PIL import Image

from reelflow.script.translate import StoreCache, prompt_hash, zh_rendering
from reelflow.store.artifacts import ArtifactStore
from reelflow.storyboard import Character, LoraRef, parse_storyboard
from reelflow.storyboard.characters import (
    CharacterNotFound,
    add_character,
    get_character,
    list_characters,
    resolve_characters,
)


def png(colour: tuple[int, int, int], fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, fmt)
    return buf.getvalue()


SU7 = Character(
    name="su7",
    description="bright yellow sports car with black stripes and a rear wing",
    trigger_words=["su7ultra"],
    lora=LoraRef(name="su7-body", path="loras/su7-ultra-body.safetensors", weight=0.8,
                 role="subject"),
)


def test_add_get_list_round_trip(store: ArtifactStore, tmp_path: Path) -> None:
    side = tmp_path / "side.jpg"
    side.write_bytes(png((250, 200, 20), "JPEG"))
    record = add_character(store, SU7, {"front.png": png((255, 220, 0))})
    assert record.reference_images == ["characters/su7/front.png"]
    assert store.get_bytes("characters/su7/front.png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert store.lineage("characters/su7/front.png").content_type == "image/png"

    # adding an image later accumulates; the record is re-read from the bucket
    record = add_character(store, SU7, [side])
    assert record.reference_images == ["characters/su7/front.png", "characters/su7/side.jpg"]
    assert store.lineage("characters/su7/side.jpg").content_type == "image/jpeg"
    stored = get_character(store, "su7")
    assert stored == record
    assert stored.lora == SU7.lora and stored.trigger_words == ["su7ultra"]

    add_character(store, Character(name="mei", description="young woman in a long red coat"))
    assert [c.name for c in list_characters(store)] == ["mei", "su7"]


def test_non_images_and_reserved_names_are_rejected_before_any_write(
    store: ArtifactStore,
) -> None:
    with pytest.raises(ValueError, match="'notes.png' is not a readable image"):
        add_character(store, SU7, {"front.png": png((1, 2, 3)), "notes.png": b"hello"})
    with pytest.raises(ValueError, match="'character.png' is reserved"):
        add_character(store, SU7, {"character.png": png((1, 2, 3))})
    with pytest.raises(ValueError, match="invalid filename"):
        add_character(store, SU7, {"ok.png": png((1, 2, 3)), "../escape.png": png((1, 2, 3))})
    assert store.list("characters/") == []


def test_missing_character_is_a_clear_error(store: ArtifactStore) -> None:
    with pytest.raises(CharacterNotFound, match=r"no character 'ghost' in the library "
                                                r"\(characters/ghost/character.json\)"):
        get_character(store, "ghost")


STORYBOARD = {
    "title": "t", "project": "lib-test",
    "characters": [
        {"name": "su7", "description": "", "trigger_words": ["my-own-trigger"]},
        {"name": "mei", "description": "young woman in a long red coat"},
    ],
    "shots": [{"id": "s1", "description": "the car in snow", "duration": 2,
               "characters": ["su7", "mei"]}],
}


def test_resolve_fills_only_what_the_storyboard_left_unset(store: ArtifactStore) -> None:
    add_character(store, SU7, {"front.png": png((255, 220, 0))})
    sb = parse_storyboard(yaml.safe_dump(STORYBOARD))
    resolved = resolve_characters(sb, store)
    su7 = resolved.character("su7")
    assert su7.description == SU7.description
    assert su7.lora == SU7.lora
    assert su7.reference_images == ["characters/su7/front.png"]
    assert su7.trigger_words == ["my-own-trigger"]  # set in the storyboard: kept
    assert resolved.character("mei") == sb.character("mei")  # not in the library: as written
    assert sb.character("su7").description == ""  # input untouched


def test_resolve_fails_for_blank_characters_missing_from_the_library(
    store: ArtifactStore,
) -> None:
    sb = parse_storyboard(yaml.safe_dump(STORYBOARD))
    with pytest.raises(CharacterNotFound, match="su7 have no description"):
        resolve_characters(sb, store)


def test_translation_cache_in_the_bucket(store: ArtifactStore) -> None:
    cache = StoreCache(store)
    key = prompt_hash("a yellow car")
    assert key not in cache and len(cache) == 0
    cache[key] = "一辆黄色的车"
    assert StoreCache(store)[key] == "一辆黄色的车"  # another run, same bucket
    assert list(cache) == [key]
    assert zh_rendering("a yellow car", None, cache) == "一辆黄色的车"
    del cache[key]
    assert key not in cache
