"""Object keys in the artifact bucket, and the spec hash that makes them deterministic.

The same spec always maps to the same key, so writes are idempotent and a second run finds the
object it already made. Every path part is validated here so that no user-supplied name (a project,
a shot id, a character) can escape its prefix or smuggle in odd characters.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

CODE_VERSION = "reelflow-0.1"
"""Mixed into every spec hash: bump it when generation code changes what a spec produces."""

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
HASH_RE = re.compile(r"^[0-9a-f]{8,64}(-[a-z0-9]+)*$")
"""A hex spec hash, optionally with dash suffixes for variants (`<hash>-v0`, `<hash>-sheet`)."""
EXT_RE = re.compile(r"^[a-z0-9]{1,8}$")
FILENAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_MAX_PART = 128

SIDECAR_SUFFIX = ".json"
JSON_SIDECAR_SUFFIX = ".lineage.json"


def _describe(value: object) -> str:
    # repr() escapes control characters so the message itself stays one clean line.
    return repr(value)[:80]


def _check(what: str, value: object, pattern: re.Pattern[str], hint: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    if (
        not value
        or len(value) > _MAX_PART
        or _CONTROL_RE.search(value)
        or ".." in value
        or "/" in value
        or "\\" in value
        or not pattern.match(value)
    ):
        raise ValueError(f"invalid {what} {_describe(value)}: {hint}")
    return value


def slug(value: str, what: str = "slug") -> str:
    """Validate a path part such as a project, shot or character name."""
    return _check(what, value, SLUG_RE, "use lowercase letters, digits and dashes")


def _hash(value: str, what: str = "hash") -> str:
    return _check(what, value, HASH_RE,
                  "expected 8-64 lowercase hex characters, optionally -suffixes")


def _ext(value: str) -> str:
    return _check("extension", value.lstrip(".") if isinstance(value, str) else value, EXT_RE,
                  "expected 1-8 lowercase letters or digits")


def validate_key(key: str) -> str:
    """Check a full object key: relative, no empty/`.`/`..` segments, no control characters."""
    if not isinstance(key, str) or not key:
        raise ValueError("object key must be a non-empty string")
    if len(key) > 1024:
        raise ValueError(f"object key too long ({len(key)} > 1024): {_describe(key)}")
    if _CONTROL_RE.search(key):
        raise ValueError(f"object key contains control characters: {_describe(key)}")
    if key.startswith("/") or "\\" in key:
        raise ValueError(f"object key must be relative and use '/': {_describe(key)}")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"object key has an empty, '.' or '..' segment: {_describe(key)}")
    return key


def storyboard_key(project: str, hash: str) -> str:
    return f"projects/{slug(project, 'project')}/storyboards/{_hash(hash)}.json"


def image_key(project: str, shot: str, spec_hash: str, ext: str = "png") -> str:
    return (
        f"projects/{slug(project, 'project')}/shots/{slug(shot, 'shot')}/images/"
        f"{_hash(spec_hash, 'spec hash')}.{_ext(ext)}"
    )


def clip_key(project: str, shot: str, spec_hash: str, ext: str = "mp4") -> str:
    return (
        f"projects/{slug(project, 'project')}/shots/{slug(shot, 'shot')}/clips/"
        f"{_hash(spec_hash, 'spec hash')}.{_ext(ext)}"
    )


def speech_key(project: str, shot: str, spec_hash: str, ext: str = "wav") -> str:
    """A voice-over line of one shot, spoken in one language by one engine and voice."""
    return (
        f"projects/{slug(project, 'project')}/shots/{slug(shot, 'shot')}/speech/"
        f"{_hash(spec_hash, 'spec hash')}.{_ext(ext)}"
    )


def clip_audio_key(clip_key: str) -> str:
    """A clip's own sound (its stem, a WAV) beside the clip: `<hash>.audio.wav`, so that its
    lineage sidecar (`<hash>.audio.json`) is its own, not the clip's."""
    base, dot, _ = clip_key.rpartition(".")
    if not dot or "/clips/" not in base:
        raise ValueError(f"not a clip key: {clip_key!r}")
    return f"{base}.audio.wav"


def music_key(project: str, spec_hash: str, ext: str = "wav") -> str:
    """A music bed generated from a prompt (its key: prompt, seed, model hash, length)."""
    return f"projects/{slug(project, 'project')}/music/{_hash(spec_hash, 'spec hash')}.{_ext(ext)}"


def edit_key(project: str, spec_hash: str, ext: str = "mp4") -> str:
    return f"projects/{slug(project, 'project')}/edits/{_hash(spec_hash, 'spec hash')}.{_ext(ext)}"


def part_key(project: str, spec_hash: str, ext: str = "ts") -> str:
    """One cached encode of the film (a shot's body or a transition): shared by every edit and
    version that contains it, so a changed shot re-encodes only the parts that touch it."""
    return (
        f"projects/{slug(project, 'project')}/edits/parts/"
        f"{_hash(spec_hash, 'spec hash')}.{_ext(ext)}"
    )


def analysis_key(project: str, spec_hash: str) -> str:
    """A measurement of a stored object (a clip's waste, a film part's cover scores), kept so
    that the next edit reads it instead of decoding the object again."""
    return (
        f"projects/{slug(project, 'project')}/edits/analysis/{_hash(spec_hash, 'spec hash')}.json"
    )


def cover_key(project: str, spec_hash: str, ext: str = "png") -> str:
    return (
        f"projects/{slug(project, 'project')}/covers/{_hash(spec_hash, 'spec hash')}.{_ext(ext)}"
    )


def styleboard_key(project: str, spec_hash: str, ext: str = "png") -> str:
    """A style board: one shot rendered under several candidate looks, side by side."""
    return (
        f"projects/{slug(project, 'project')}/styleboards/"
        f"{_hash(spec_hash, 'spec hash')}.{_ext(ext)}"
    )


def input_key(project: str, sha: str, ext: str) -> str:
    """Files a storyboard brings in (music, reference images), stored once by content hash."""
    return f"projects/{slug(project, 'project')}/inputs/{_hash(sha, 'sha')}.{_ext(ext)}"


def manifest_key(project: str, run_id: str) -> str:
    """Run ids are Prefect flow-run UUIDs (or any dash-separated alphanumerics)."""
    run = _check("run id", str(run_id), RUN_ID_RE, "use letters, digits and dashes")
    return f"projects/{slug(project, 'project')}/runs/{run}/manifest.json"


def character_key(name: str, filename: str) -> str:
    fname = _check("filename", filename, FILENAME_RE, "use letters, digits, '.', '_' and '-'")
    return f"characters/{slug(name, 'character')}/{fname}"


def project_prefix(project: str) -> str:
    return f"projects/{slug(project, 'project')}/"


def is_sidecar_name(key: str) -> bool:
    """True for `*.lineage.json`; plain `x.json` is a sidecar only when `x.<ext>` exists."""
    return key.endswith(JSON_SIDECAR_SUFFIX)


def sidecar_key(key: str) -> str:
    """Lineage sidecar key: `a/b.png` -> `a/b.json`, `a/b.json` -> `a/b.lineage.json`."""
    validate_key(key)
    head, _, name = key.rpartition("/")
    prefix = f"{head}/" if head else ""
    if name.endswith(".json"):
        return f"{prefix}{name[: -len('.json')]}{JSON_SIDECAR_SUFFIX}"
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    return f"{prefix}{stem}{SIDECAR_SUFFIX}"


def canonical_json(spec: Mapping[str, Any] | BaseModel) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: the byte-stable form the spec hash is taken of."""
    if isinstance(spec, BaseModel):
        data: Any = spec.model_dump(mode="json")
    elif isinstance(spec, Mapping):
        from pydantic_core import to_jsonable_python

        data = to_jsonable_python(dict(spec))
    else:
        raise TypeError(f"spec must be a mapping or a pydantic model, got {type(spec).__name__}")
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def spec_hash(spec: Mapping[str, Any] | BaseModel, code_version: str = CODE_VERSION) -> str:
    """First 16 hex chars of sha256(canonical JSON + code version)."""
    h = hashlib.sha256(canonical_json(spec).encode("utf-8"))
    h.update(b"\n")
    h.update(code_version.encode("utf-8"))
    return h.hexdigest()[:16]
