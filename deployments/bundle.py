"""Code to the workers: the project's code as one content-addressed bundle in the bucket.

`reelflow deploy` packs the code a run needs (the packages, prefect.yaml, the examples that
deployment parameters name) into a deterministic tar.gz, uploads it under
`code/{sha256}.tar.gz` (sha256 also in the object's metadata) and bakes key + sha256 into every
deployment's pull step (`deployments.pull.fetch_bundle`). A worker on another machine then needs
only the installed package, the Prefect API URL (+ auth string) and the S3 settings: no checkout.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

from pydantic import BaseModel

from reelflow.store.artifacts import ArtifactStore

PACKAGES = ("flows", "tasks", "blocks", "deployments", "reelflow")
FILES = ("prefect.yaml", "pyproject.toml")
EXTRA_DIRS = ("examples",)
PREFIX = "code/"
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache"}
SKIP_SUFFIXES = (".pyc", ".pyo")


class Bundle(BaseModel):
    key: str
    sha256: str
    size: int
    files: int


def bundle_key(sha256: str) -> str:
    return f"{PREFIX}{sha256}.tar.gz"


def _members(project_dir: Path) -> list[Path]:
    out: list[Path] = []
    for name in (*PACKAGES, *EXTRA_DIRS):
        root = project_dir / name
        if not root.is_dir():
            if name in PACKAGES:
                raise FileNotFoundError(f"{root}: not a reelflow checkout (no {name}/)")
            continue
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(project_dir)
            if any(part in SKIP_DIRS for part in rel.parts) or path.suffix in SKIP_SUFFIXES:
                continue
            if path.is_file() and not path.is_symlink():
                out.append(rel)
    out += [Path(f) for f in FILES if (project_dir / f).is_file()]
    return out


def build_bundle(project_dir: Path | str) -> tuple[bytes, int]:
    """A deterministic tar.gz of the project's code (same files, same bytes: same sha256)."""
    project_dir = Path(project_dir)
    members = _members(project_dir)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in members:
            data = (project_dir / rel).read_bytes()
            info = tarfile.TarInfo(rel.as_posix())
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0), len(members)


def upload_bundle(store: ArtifactStore, project_dir: Path | str) -> Bundle:
    """Build and upload (skipped when that exact bundle is already in the bucket)."""
    data, count = build_bundle(project_dir)
    digest = hashlib.sha256(data).hexdigest()
    key = bundle_key(digest)
    store.put_bytes(key, data, "application/gzip", if_absent=True)
    return Bundle(key=key, sha256=digest, size=len(data), files=count)
