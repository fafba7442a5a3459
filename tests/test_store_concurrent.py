"""The sidecar is written alongside its object, never after it: a reader who sees the object gets
its lineage, and a failed sidecar write leaves no object behind."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from reelflow.store.artifacts import ArtifactStore, Lineage, StoreError


def test_reader_who_sees_the_object_gets_its_lineage(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = store._write_sidecar
    object_seen = threading.Event()

    def late_sidecar(key: str, lin: Lineage) -> None:  # the sidecar lands after the object
        assert object_seen.wait(10), "the reader never saw the object"
        slow(key, lin)

    monkeypatch.setattr(store, "_write_sidecar", late_sidecar)
    key = "projects/p/shots/a/images/0123456789abcdef.png"
    seen: list[str] = []

    def reader() -> None:
        while not store.exists(key):
            time.sleep(0.01)
        object_seen.set()  # the object is there, its sidecar not yet
        seen.append(store.lineage(key).kind)
        seen.append(store.get_bytes(key).decode())

    thread = threading.Thread(target=reader)
    thread.start()
    store.put_bytes(key, b"pixels", "image/png", {"kind": "image"})
    thread.join(10)
    assert seen == ["image", "pixels"]


def test_failed_sidecar_write_leaves_no_object(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def broken(key: str, lin: Lineage) -> None:
        raise StoreError("S3 put sidecar failed: SlowDown", key=key)

    monkeypatch.setattr(store, "_write_sidecar", broken)
    key = "projects/p/shots/a/clips/0123456789abcdef.mp4"
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"x" * 1000)
    with pytest.raises(StoreError, match="SlowDown"):
        store.put_file(key, path, "video/mp4")
    with pytest.raises(StoreError):
        store.put_bytes(key.replace(".mp4", ".png"), b"y", "image/png")
    assert store.list("projects/p/") == []


def test_put_file_reads_back_in_one_request(store: ArtifactStore, tmp_path: Path) -> None:
    """The sha256 rides on the object: get_file needs no sidecar request (a missing sidecar
    then only matters to a reader who asks for the lineage)."""
    key = "projects/p/edits/0123456789abcdef.mp4"
    path = tmp_path / "film.mp4"
    path.write_bytes(b"film" * 1000)
    store.put_file(key, path, "video/mp4", {"kind": "edit"})
    calls: list[str] = []

    def counting(client: object) -> None:  # the small client (sidecars) and the download one
        original = client.get_object  # type: ignore[attr-defined]

        def counted(bucket: str, name: str, *a: object, **k: object) -> object:
            calls.append(name)
            return original(bucket, name, *a, **k)

        client.get_object = counted  # type: ignore[attr-defined]

    counting(store.client)
    counting(store.download_client())
    assert store.get_file(key, tmp_path / "back.mp4").read_bytes() == path.read_bytes()
    assert calls == [key]
    assert store.lineage(key).sha256
