"""Confinement of the files a storyboard names (music, reference images, recorded voice-over
lines, LoRAs, model paths).

A storyboard is input from a user, an LLM or the bucket's batch queue; whatever it names is read by
the renderer and uploaded to the bucket. So a local reference must resolve (symlinks followed)
inside the storyboard's own folder or a folder listed in REELFLOW_ALLOWED_DIRS, and a storyboard
that came from the bucket may name only objects under its own project (`projects/{project}/...`,
as a key or an s3:// URI of this store's bucket), never a local file. Checked by `validate` and
before any render work starts, with the shot's line in the message.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelflow.errors import InputError
from reelflow.storyboard import yamlsafe
from reelflow.storyboard.model import Storyboard
from reelflow.storyboard.problems import StoryboardError, problem_lines

ALLOWED_DIRS_ENV = "REELFLOW_ALLOWED_DIRS"
MODELS_PREFIX = "@models/"
_PATH_SUFFIXES = (".safetensors", ".ckpt", ".bin", ".pt", ".pth", ".gguf")


@dataclass(frozen=True)
class FileRef:
    loc: tuple[Any, ...]
    value: str
    must_exist: bool  # music and reference images are read as they are; LoRAs may be swapped


def references(storyboard: Storyboard) -> list[FileRef]:
    """Every string in the storyboard that names a file the renderer would read."""
    refs: list[FileRef] = []
    if storyboard.music is not None and storyboard.music.path is not None:
        refs.append(FileRef(("music", "path"), storyboard.music.path, True))
    model = storyboard.style.model
    if _looks_like_path(model):
        refs.append(FileRef(("style", "model"), model, False))
    for i, lora in enumerate(storyboard.style.loras):
        refs.append(FileRef(("style", "loras", i, "path"), lora.path, False))
    for i, character in enumerate(storyboard.characters):
        if character.lora is not None:
            refs.append(FileRef(("characters", i, "lora", "path"), character.lora.path, False))
    for i, shot in enumerate(storyboard.shots):
        if shot.reference is not None:
            refs.append(FileRef(("shots", i, "reference", "image"), shot.reference.image, True))
        for j, lora in enumerate(shot.loras):
            refs.append(FileRef(("shots", i, "loras", j, "path"), lora.path, False))
        recording = shot.voiceover.recording if shot.voiceover is not None else None
        for language in ("zh", "en"):
            take = getattr(recording, language) if recording is not None else None
            if take:
                refs.append(FileRef(("shots", i, "voiceover", "recording", language), take, True))
        for field in ("first_frame", "last_frame"):
            frame = getattr(shot, field)
            for j, lora in enumerate(frame.loras if frame else []):
                refs.append(FileRef(("shots", i, field, "loras", j, "path"), lora.path, False))
    return refs


def _looks_like_path(value: str) -> bool:
    return (
        value.startswith(("/", "./", "../", "~", "\\"))
        or value.lower().endswith(_PATH_SUFFIXES)
        or ".." in value.split("/")
    )


def in_models_folder(value: str) -> str:
    """A bucket storyboard's LoRA/model path, as `@models/...`: relative paths name files in the
    renderer's models folder, never outside it."""
    rel = value.removeprefix(MODELS_PREFIX)
    parts = rel.replace("\\", "/").split("/")
    if not rel or rel.startswith(("/", "~")) or "://" in rel or ".." in parts or "\x00" in rel:
        raise ValueError(f"{value!r}: a storyboard from the bucket names LoRAs and models inside "
                         f"the renderer's models folder only ({MODELS_PREFIX}NAME or a relative "
                         "path)")
    return MODELS_PREFIX + rel


def allowed_roots(base_dir: Path) -> list[Path]:
    """The storyboard's folder, then every folder in REELFLOW_ALLOWED_DIRS (os.pathsep list)."""
    roots = [base_dir.resolve()]
    for entry in os.environ.get(ALLOWED_DIRS_ENV, "").split(os.pathsep):
        if entry.strip():
            roots.append(Path(entry.strip()).expanduser().resolve())
    return roots


def resolve_local(value: str, base_dir: Path, *, must_exist: bool = True) -> Path:
    """The file a local reference names, inside an allowed folder; ValueError says why not."""
    if value.startswith(MODELS_PREFIX):
        if ".." in value.split("/") or "\\" in value:
            raise ValueError(f"{value!r} leaves the models folder")
        return Path(value)  # the machine's models folder, resolved by the renderer
    if not value.strip() or "\x00" in value:
        raise ValueError("empty or invalid path")
    if value.startswith("~"):
        raise ValueError(f"{value!r}: home-relative paths are not allowed; use a path relative "
                         "to the storyboard's folder")
    if "://" in value:
        raise ValueError(f"{value!r}: a URI in a local storyboard; use a path relative to the "
                         "storyboard's folder")
    raw = Path(value)
    candidate = raw if raw.is_absolute() else base_dir / raw
    resolved = candidate.resolve()
    roots = allowed_roots(base_dir)
    if not any(resolved.is_relative_to(root) for root in roots):
        lexical = Path(os.path.normpath(candidate))
        why = ("a symlink that points outside" if any(lexical.is_relative_to(r) for r in roots)
               else "outside")
        raise ValueError(f"{value!r} is {why} the storyboard's folder {roots[0]} (add the folder "
                         f"to {ALLOWED_DIRS_ENV} to allow it)")
    if must_exist and not resolved.is_file():
        raise ValueError(f"{value!r}: no such file ({resolved})")
    return resolved


def bucket_key(value: str, project: str, bucket: str | None) -> str:
    """The key a bucket storyboard's reference names, under `projects/{project}/` only."""
    from reelflow.store.keys import project_prefix, validate_key
    from reelflow.store.uris import parse_s3_uri

    if value.startswith("s3://"):
        if bucket is None:
            raise ValueError(f"{value!r}: s3 URI without a store to read it from")
        try:
            key = parse_s3_uri(value, bucket)
        except InputError as exc:
            raise ValueError(str(exc)) from None
    else:
        key = value
    prefix = project_prefix(project)
    try:
        validate_key(key)
    except ValueError:
        key = ""
    if not key.startswith(prefix):
        raise ValueError(f"{value!r}: a storyboard from the bucket may name only objects under "
                         f"{prefix} (local files are not read)")
    return key


def check_references(
    storyboard: Storyboard,
    text: str,
    source: str,
    *,
    base_dir: Path | None,
    bucket: str | None = None,
    exists: Callable[[str], bool] | None = None,
) -> None:
    """Raise StoryboardError listing every reference that is outside, missing or not allowed.

    `base_dir` None means the storyboard came from the bucket (or inline): only project keys."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    for ref in references(storyboard):
        try:
            if base_dir is None and not ref.must_exist:  # LoRAs, models: the models folder
                in_models_folder(ref.value)
            elif base_dir is None:
                key = bucket_key(ref.value, storyboard.project, bucket)
                if ref.must_exist and exists is not None and not exists(key):
                    raise ValueError(f"{ref.value!r}: no such object in the bucket")
            else:
                resolve_local(ref.value, base_dir, must_exist=ref.must_exist)
        except ValueError as exc:
            problems.append((ref.loc, str(exc)))
    if not problems:
        return
    lines = yamlsafe.line_index(yamlsafe.compose(text, source))
    raise StoryboardError(problem_lines(problems, lines, source))
