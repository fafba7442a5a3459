"""Where a storyboard comes from: a file, an `s3://bucket/key` in the store, or inline text.

The source decides what the storyboard may name: a file's storyboard reads files inside its own
folder; one from the bucket (or inline, as the batch queue passes it) reads only objects under its
project. Everything is checked here, before any render work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from reelflow.store.uris import is_s3_uri, parse_s3_uri
from reelflow.storyboard.files import check_references
from reelflow.storyboard.loading import decode_storyboard, load_storyboard, parse_storyboard
from reelflow.storyboard.model import Storyboard
from reelflow.storyboard.problems import StoryboardError

if TYPE_CHECKING:
    from reelflow.store.artifacts import ArtifactStore


def is_inline(source: str) -> bool:
    return "\n" in source or source.lstrip().startswith("{")


def check_project_boundary(board: Storyboard, stored_under: str | None, source: str) -> None:
    """Projects are boundaries (a studio shares one bucket among clients): a storyboard filed
    under a project (`projects/{p}/...`, or the batch queue's `incoming/{p}/`) renders only into
    project p, and so reads only p's inputs and the shared library. One naming another project
    is refused before any run exists."""
    if stored_under is not None and stored_under != board.project:
        raise StoryboardError([
            f"{source} project: {board.project!r}, but the storyboard is filed under project "
            f"{stored_under!r}; a storyboard renders only into the project it is filed under "
            f"(file it under {board.project}/ or set project: {stored_under})"
        ])


def project_of_key(key: str) -> str | None:
    """The project a bucket key lies in (`projects/{p}/...`), if any."""
    parts = key.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "projects" else None


def read_storyboard(
    source: str, store: ArtifactStore | None = None, *, name: str = "<inline>"
) -> tuple[Storyboard, Path | None]:
    """(storyboard, folder its local files live in; None when it may name only bucket keys)."""
    if is_s3_uri(source):
        if store is None:
            raise ValueError("reading an s3:// storyboard needs a store")
        key = parse_s3_uri(source, store.bucket, what="storyboard")
        text = decode_storyboard(store.get_bytes(key), source)
        board = parse_storyboard(text, source=source)
        check_project_boundary(board, project_of_key(key), source)
        check_references(board, text, source, base_dir=None, bucket=store.bucket,
                         exists=store.exists)
        return board, None
    if is_inline(source):
        board = parse_storyboard(source, source=name)
        check_references(board, source, name, base_dir=None,
                         bucket=store.bucket if store else None,
                         exists=store.exists if store else None)
        return board, None
    path = Path(source)
    return load_storyboard(path), path.resolve().parent
