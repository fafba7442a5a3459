"""Integrity at the speed of the transfer: the sha256 is taken beside the bytes as they travel,
never as a second pass, and a whole-object PUT is signed with the sha256 the store computed,
so minio does not hash the body again."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from reelflow.store.artifacts import ArtifactStore, IntegrityError, StoreError, _Hasher


def test_hasher_thread_matches_hashlib() -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    with _Hasher(depth=2) as hasher:
        for i in range(0, len(data), 100_000):
            hasher.update(data[i : i + 100_000])
        digest = hasher.hexdigest()
    assert digest == hashlib.sha256(data).hexdigest()
    assert hasher.size == len(data)


def test_a_put_hashes_its_bytes_once(store: ArtifactStore,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The sha256 the store puts on an object is also the payload hash the request is signed
    with: minio does not hash the megabyte a second time (servers that check signed payloads,
    MinIO and AWS, then refuse bytes that do not match it)."""
    import minio.api

    hashed: list[int] = []
    real = minio.api.sha256_hash

    def counting(data: str | bytes | None) -> str:
        hashed.append(len(data or b""))
        return real(data)

    monkeypatch.setattr(minio.api, "sha256_hash", counting)
    key = "projects/p/shots/a/images/0123456789abcdef.png"
    data = os.urandom(1024 * 1024)
    store.put_bytes(key, data, "image/png")
    assert hashed and max(hashed) < 64 * 1024, hashed  # the sidecar only, never the image
    assert store.get_bytes(key) == data
    assert store.lineage(key).sha256 == hashlib.sha256(data).hexdigest()


def test_reads_of_every_size_verify_as_they_stream(store: ArtifactStore, tmp_path: Path) -> None:
    for size in (0, 1, 256 * 1024, 1024 * 1024 + 3):
        key = f"projects/p/shots/a/images/{size:016x}.png"
        data = os.urandom(size)
        store.put_bytes(key, data, "image/png")
        assert store.get_bytes(key) == data
        assert store.get_file(key, tmp_path / "x.png").read_bytes() == data
        assert store.digest(key) == (hashlib.sha256(data).hexdigest(), size)
    # damaged bytes under the old sidecar and metadata: both read paths refuse them
    key = f"projects/p/shots/a/images/{1024 * 1024 + 3:016x}.png"
    bad = os.urandom(1024 * 1024 + 3)
    store.put_bytes(key, bad, "image/png", sidecar=False)  # object only, sidecar kept
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        store.get_bytes(key)
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        store.get_file(key, tmp_path / "y.png")
    assert not (tmp_path / "y.png").exists()


def test_multipart_file_changed_while_uploading_is_refused(
    store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above the part size the bytes sent are hashed again beside the upload: a file rewritten
    between the first hash and the upload leaves no object behind."""
    small = ArtifactStore(store.settings, part_size=5 * 1024 * 1024)
    path = tmp_path / "clip.mp4"
    path.write_bytes(os.urandom(11 * 1024 * 1024))
    key = "projects/p/shots/a/clips/0123456789abcdef.mp4"
    real_make = small._make_lineage

    def rewrite_after_hashing(*args, **kwargs):  # type: ignore[no-untyped-def]
        lin = real_make(*args, **kwargs)
        path.write_bytes(os.urandom(11 * 1024 * 1024))
        return lin

    monkeypatch.setattr(small, "_make_lineage", rewrite_after_hashing)
    with pytest.raises(StoreError, match="changed while uploading"):
        small.put_file(key, path, "video/mp4")
    assert small.list("projects/p/shots/a/clips/") == []


def test_a_file_read_is_one_request(store: ArtifactStore, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`get_file` and `digest` size nothing with a stat first: one GET each, hashed as the
    bytes land (an object written by `put_file` carries its sha256 too)."""
    from minio import Minio

    data = os.urandom(3 * 1024 * 1024 + 5)
    src = tmp_path / "clip.mp4"
    src.write_bytes(data)
    key = "projects/p/shots/a/clips/00000000000000aa.mp4"
    store.put_file(key, src, "video/mp4")
    requests: list[str] = []
    real = Minio._url_open

    def counting(self, method, region, bucket_name=None, object_name=None,  # type: ignore[no-untyped-def]
                 *args, **kwargs):
        requests.append(f"{method} {object_name}")
        return real(self, method, region, bucket_name, object_name, *args, **kwargs)

    monkeypatch.setattr(Minio, "_url_open", counting)
    assert store.get_file(key, tmp_path / "back.mp4").read_bytes() == data
    assert store.digest(key) == (hashlib.sha256(data).hexdigest(), len(data))
    assert requests == [f"GET {key}", f"GET {key}"], requests
