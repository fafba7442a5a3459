"""The character library: recurring subjects shared across projects, kept in the bucket.

The SOP's answer to "one character, two people" is a library: a character is written down once
(description, trigger words, LoRA, reference images) and every project reuses that record instead
of re-describing it. Layout, one folder per character:

    characters/{name}/character.json    the Character model (reference_images are object keys)
    characters/{name}/{image file}      reference images, validated as images before upload

A storyboard may name a library character with an empty description; `resolve_characters` fills
it from the library, keeping whatever the storyboard did set explicitly.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from reelflow.errors import InputError
from reelflow.store.artifacts import ArtifactStore, ObjectNotFound
from reelflow.store.keys import character_key
from reelflow.storyboard import Character, Storyboard

log = logging.getLogger("reelflow.storyboard.characters")

RECORD = "character.json"
_IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


class CharacterNotFound(InputError, KeyError):
    """The library has no such character; the message names the key looked for."""

    def __str__(self) -> str:
        return str(self.args[0])


def _prefix(name: str) -> str:
    return character_key(name, RECORD).rsplit("/", 1)[0] + "/"


def _image_type(filename: str, data: bytes) -> str:
    """Content type of a reference image; ValueError if it is not a PNG/JPEG/WebP image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
            kind = image.format or ""
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"reference image {filename!r} is not a readable image: {exc}") from None
    if kind not in _IMAGE_TYPES:
        raise ValueError(f"reference image {filename!r} is {kind or 'unknown'}; "
                         f"use {', '.join(_IMAGE_TYPES)}")
    return _IMAGE_TYPES[kind]


def _files(files: Mapping[str, bytes | Path] | Sequence[Path | str]) -> list[tuple[str, bytes]]:
    if isinstance(files, Mapping):
        items = list(files.items())
    else:
        items = [(Path(p).name, Path(p)) for p in files]
    out = []
    for filename, content in items:
        data = Path(content).read_bytes() if isinstance(content, (str, Path)) else bytes(content)
        out.append((filename, data))
    return out


def add_character(
    store: ArtifactStore,
    character: Character,
    files: Mapping[str, bytes | Path] | Sequence[Path | str] = (),
) -> Character:
    """Save a character and upload its reference images; returns the stored record.

    Images already in the character's folder stay referenced, so adding images later
    accumulates; re-adding the same files is idempotent (same keys, same bytes).
    """
    planned = []
    for filename, data in _files(files):  # validate everything before writing anything
        if Path(filename).stem == Path(RECORD).stem:
            # the sidecar of `character.png` would be `character.json`: the record itself
            raise ValueError(f"reference image name {filename!r} is reserved; rename it")
        planned.append((character_key(character.name, filename), data,
                        _image_type(filename, data)))
    keys = []
    for key, data, content_type in planned:
        store.put_bytes(key, data, content_type,
                        lineage={"kind": "character", "extra": {"character": character.name}})
        keys.append(key)
    prefix = _prefix(character.name)
    existing = [k for k in store.list(prefix) if not k.endswith("/" + RECORD)]
    kept = [r for r in character.reference_images if r.startswith(prefix)]
    dropped = [r for r in character.reference_images if not r.startswith(prefix)]
    if dropped:
        log.warning("character %s: reference images %s are not in the library; pass them as "
                    "files to upload them", character.name, dropped)
    refs = sorted(set(existing) | set(kept) | set(keys))
    record = character.model_copy(update={"reference_images": refs, "version": ""}, deep=True)
    store.put_json(character_key(character.name, RECORD), record, {"kind": "character"})
    return record


def get_character(store: ArtifactStore, name: str) -> Character:
    key = character_key(name, RECORD)
    try:
        return store.get_json(key, Character)
    except ObjectNotFound:
        raise CharacterNotFound(f"no character {name!r} in the library ({key})") from None


def list_characters(store: ArtifactStore) -> list[Character]:
    """Every character in the library, sorted by name."""
    names = sorted(
        key.split("/")[1] for key in store.list("characters/") if key.endswith("/" + RECORD)
    )
    return [get_character(store, name) for name in names]


def resolve_characters(storyboard: Storyboard, store: ArtifactStore) -> Storyboard:
    """A copy of `storyboard` whose characters are completed from the library.

    A character found in the library gets every field the storyboard left unset (a blank
    description counts as unset); a blank one that is not in the library is an error, since
    nothing else could describe it.
    """
    characters = []
    missing = []
    for character in storyboard.characters:
        given = set(character.model_fields_set)
        if not character.description.strip():
            given.discard("description")
        try:
            record = get_character(store, character.name)
        except CharacterNotFound:
            if "description" not in given:
                missing.append(character.name)
            characters.append(character)
            continue
        update = {f: getattr(record, f) for f in Character.model_fields if f not in given}
        characters.append(character.model_copy(update=update, deep=True))
    if missing:
        raise CharacterNotFound(
            f"characters {', '.join(missing)} have no description and are not in the library"
        )
    return storyboard.model_copy(update={"characters": characters}, deep=True)


def character_version(store: ArtifactStore, character: Character) -> str:
    """12 hex digits naming this state of a character: its record and its reference images'
    bytes (their sha256, read from the sidecars, so no image is downloaded).

    Re-adding a reference image under the same name with new pixels changes the version, and
    with it the jobs (so the cache keys and object keys) of exactly the shots it appears in.
    """
    shas = []
    for key in character.reference_images:
        try:
            shas.append(store.lineage(key).sha256)
        except ObjectNotFound:
            raise CharacterNotFound(
                f"character {character.name!r}: reference image {key!r} is not in the bucket"
            ) from None
    record = character.model_dump(mode="json", exclude={"version"})
    blob = json.dumps({"record": record, "images": shas}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def resolve_cast(storyboard: Storyboard, store: ArtifactStore) -> tuple[Storyboard, dict[str, str]]:
    """The storyboard with its characters completed from the library and versioned, and the
    versions by name: call once, before anything renders.

    Raises `CharacterNotFound` (an `InputError`: one line, exit 2) for a character that is
    neither described in the storyboard nor in the library, or whose reference images are
    missing, so a bad name costs nothing.
    """
    resolved = resolve_characters(storyboard, store)
    versions = {c.name: character_version(store, c) for c in resolved.characters}
    characters = [c.model_copy(update={"version": versions[c.name]}) for c in resolved.characters]
    return resolved.model_copy(update={"characters": characters}), versions
