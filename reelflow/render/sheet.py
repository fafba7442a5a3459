"""The character sheet: a character's references beside the frames chosen for its shots, each
with its identity score against the references: the picture a director checks consistency with.

Chosen frames are found through the run manifests in the bucket (`chosen_images`), kept when
the image's job names the character; scores are computed now, against the current references,
so a sheet shows how today's library agrees with every render made from it.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from reelflow.store.artifacts import ArtifactStore, ObjectNotFound
from reelflow.storyboard.characters import get_character


@dataclass(frozen=True)
class SheetEntry:
    key: str
    label: str
    score: float | None  # None for the references themselves


def _image(store: ArtifactStore, key: str) -> Image.Image:
    return Image.open(io.BytesIO(store.get_bytes(key))).convert("RGB")


def _job_characters(spec: dict) -> dict[str, str]:
    """The characters named by an image's job (a variant's, or the job inside a hi-res/retouch)."""
    if "characters" in spec:
        return dict(spec["characters"])
    inner = spec.get("image")
    return dict(inner.get("characters", {})) if isinstance(inner, dict) else {}


def chosen_frames(store: ArtifactStore, name: str, limit: int = 24) -> list[tuple[str, str]]:
    """(label, image key) of the chosen images of shots the character is in, newest runs first,
    each image once."""
    manifests = [k for k in store.list("projects/") if "/runs/" in k and k.endswith(".json")]
    found: dict[str, str] = {}
    for key in reversed(sorted(manifests)):
        try:
            manifest = json.loads(store.get_bytes(key))
        except (ObjectNotFound, ValueError):
            continue
        if name not in manifest.get("characters", {}):
            continue
        for shot, image_key in manifest.get("chosen_images", {}).items():
            if image_key in found.values():
                continue
            try:
                spec = store.lineage(image_key).spec
            except ObjectNotFound:
                continue
            version = _job_characters(spec).get(name)
            if version is not None:
                found[f"{manifest['project']}/{shot} v{version[:6]}"] = image_key
            if len(found) >= limit:
                return list(found.items())
    return list(found.items())


def character_sheet(
    store: ArtifactStore, name: str, *, clip_model: str | Path | None = None, thumb: int = 192
) -> tuple[Image.Image, list[SheetEntry]]:
    """The sheet image and its entries (references first, then chosen frames with scores)."""
    from reelflow.imaging.checks import character_consistency, consistency_method, contact_sheet

    character = get_character(store, name)
    references = [_image(store, key) for key in character.reference_images]
    entries = [
        SheetEntry(key, f"ref {Path(key).name}", None) for key in character.reference_images
    ]
    images = list(references)
    method = consistency_method(clip_model)
    for label, key in chosen_frames(store, name):
        image = _image(store, key)
        score = character_consistency(image, references, clip_model) if references else None
        shown = f"{label}\n{method} {score:.2f}" if score is not None else label
        entries.append(SheetEntry(key, shown, score))
        images.append(image)
    if not images:
        raise ObjectNotFound(
            f"character {name!r} has no reference images and no rendered shots yet", key=name
        )
    sheet = contact_sheet(images, [e.label for e in entries], thumb=thumb)
    return sheet, entries
