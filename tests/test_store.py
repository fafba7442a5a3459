"""ArtifactStore, keys and S3 settings against a real `weed mini` (see conftest.py)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel, SecretStr

from reelflow.store import keys
from reelflow.store.artifacts import (
    ArtifactStore,
    IntegrityError,
    Lineage,
    ObjectNotFound,
    StoreError,
)
from reelflow.store.keys import (
    CODE_VERSION,
    character_key,
    clip_key,
    cover_key,
    edit_key,
    image_key,
    manifest_key,
    sidecar_key,
    spec_hash,
    storyboard_key,
)
from reelflow.store.settings import S3Settings, SettingsError

H = "0123456789abcdef"


# -- keys -------------------------------------------------------------------------------------


def test_key_layout_matches_design() -> None:
    assert storyboard_key("winter", H) == f"projects/winter/storyboards/{H}.json"
    assert image_key("winter", "s01", H) == f"projects/winter/shots/s01/images/{H}.png"
    assert clip_key("winter", "s01", H) == f"projects/winter/shots/s01/clips/{H}.mp4"
    assert edit_key("winter", H, ext="mov") == f"projects/winter/edits/{H}.mov"
    assert cover_key("winter", H) == f"projects/winter/covers/{H}.png"
    assert image_key("winter", "s01", f"{H}-v2") == f"projects/winter/shots/s01/images/{H}-v2.png"
    rid = "0b9f4c3e-6d2a-4d8f-9a51-2f3c4d5e6f70"
    assert manifest_key("winter", rid) == f"projects/winter/runs/{rid}/manifest.json"
    assert character_key("mei", "ref_01.png") == "characters/mei/ref_01.png"


@pytest.mark.parametrize(
    ("call", "names"),
    [
        (lambda: image_key("../etc", "s01", H), "project"),
        (lambda: image_key("winter", "S01", H), "shot"),
        (lambda: image_key("winter", "s01/..", H), "shot"),
        (lambda: clip_key("winter", "s\x0001", H), "shot"),
        (lambda: image_key("winter", "s01", "not-a-hash"), "spec hash"),
        (lambda: image_key("winter", "s01", f"{H}-../x"), "spec hash"),
        (lambda: image_key("winter", "s01", f"{H}-"), "spec hash"),
        (lambda: edit_key("/abs", H), "project"),
        (lambda: character_key("mei", "../secret"), "filename"),
        (lambda: manifest_key("winter", "run/../x"), "run id"),
        (lambda: edit_key("winter", H, ext="m p4"), "extension"),
    ],
)
def test_key_builders_reject_bad_parts(call, names: str) -> None:
    with pytest.raises(ValueError, match=names):
        call()


def test_bad_part_error_is_one_clean_line() -> None:
    with pytest.raises(ValueError) as exc:
        image_key("winter", "s\n01", H)
    assert "\n" not in str(exc.value) and "shot" in str(exc.value)


def test_sidecar_key_rules() -> None:
    assert sidecar_key("a/b/c.png") == "a/b/c.json"
    assert sidecar_key("a/b/c.json") == "a/b/c.lineage.json"
    assert sidecar_key("a/noext") == "a/noext.json"
    assert sidecar_key("top.mp4") == "top.json"
    with pytest.raises(ValueError):
        sidecar_key("a/../b.png")


def test_spec_hash_is_canonical_and_versioned() -> None:
    class Spec(BaseModel):
        prompt: str
        seed: int

    a = spec_hash({"prompt": "snow", "seed": 1})
    assert a == spec_hash({"seed": 1, "prompt": "snow"})
    assert a == spec_hash(Spec(prompt="snow", seed=1))
    assert len(a) == 16 and int(a, 16) >= 0
    assert a != spec_hash({"prompt": "snow", "seed": 2})
    assert a != spec_hash({"prompt": "snow", "seed": 1}, code_version=CODE_VERSION + "x")
    expected = hashlib.sha256(
        b'{"prompt":"snow","seed":1}' + b"\n" + CODE_VERSION.encode()
    ).hexdigest()[:16]
    assert a == expected


# -- settings ---------------------------------------------------------------------------------


def _clear_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("REELFLOW_"):
            monkeypatch.delenv(name)


def test_settings_from_env_vars(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clear_env(monkeypatch)
    monkeypatch.setenv("REELFLOW_S3_ENDPOINT", "http://minio.local:9000/")
    monkeypatch.setenv("REELFLOW_S3_ACCESS_KEY", "ak")
    monkeypatch.setenv("REELFLOW_S3_SECRET_KEY", "sk-very-secret")
    monkeypatch.setenv("REELFLOW_S3_BUCKET", "films")
    monkeypatch.setenv("REELFLOW_S3_SECURE", "true")
    s = S3Settings.from_env(tmp_path)
    assert (s.endpoint, s.access_key, s.bucket, s.secure) == ("minio.local:9000", "ak", "films",
                                                              True)
    assert s.secret_key.get_secret_value() == "sk-very-secret"
    assert "sk-very-secret" not in repr(s) and "sk-very-secret" not in str(s)


def test_settings_fall_back_to_stack_file(monkeypatch: pytest.MonkeyPatch,
                                          s3_stack, s3_settings: S3Settings) -> None:
    _clear_env(monkeypatch)
    assert S3Settings.from_env(s3_stack.home) == s3_settings
    monkeypatch.setenv("REELFLOW_HOME", str(s3_stack.home))
    assert S3Settings.from_env().endpoint == s3_settings.endpoint
    mode = stat.S_IMODE(os.stat(s3_stack.stack_file).st_mode)
    assert mode == 0o600


def test_settings_errors_are_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clear_env(monkeypatch)
    with pytest.raises(SettingsError, match="no S3 configured") as exc:
        S3Settings.from_env(tmp_path)
    assert "\n" not in str(exc.value)
    monkeypatch.setenv("REELFLOW_S3_ENDPOINT", "h:1")
    monkeypatch.setenv("REELFLOW_S3_SECRET_KEY", "zzz-secret")
    with pytest.raises(SettingsError, match="REELFLOW_S3_ACCESS_KEY") as exc:
        S3Settings.from_env(tmp_path)
    assert "zzz-secret" not in str(exc.value)
    monkeypatch.setenv("REELFLOW_S3_ACCESS_KEY", "a")
    monkeypatch.setenv("REELFLOW_S3_SECURE", "maybe")
    with pytest.raises(SettingsError, match="REELFLOW_S3_SECURE"):
        S3Settings.from_env(tmp_path)


# -- round trips ------------------------------------------------------------------------------


def test_put_get_bytes_with_sidecar(store: ArtifactStore) -> None:
    key = image_key("winter", "s01", H)
    data = os.urandom(3000)
    parent = storyboard_key("winter", H)
    assert store.put_bytes(key, data, "image/png",
                           {"spec": {"seed": 7}, "spec_hash": H, "parents": [parent]}) == key
    assert store.get_bytes(key) == data
    lin = store.lineage(key)
    assert lin.kind == "image"
    assert lin.sha256 == hashlib.sha256(data).hexdigest()
    assert (lin.size, lin.content_type, lin.spec, lin.parents) == (3000, "image/png",
                                                                   {"seed": 7}, [parent])
    assert lin.spec_hash == H and lin.code_version == CODE_VERSION
    raw = json.loads(store.get_bytes(sidecar_key(key), verify=False))
    assert raw["sha256"] == lin.sha256 and raw["kind"] == "image"
    assert store.exists(key) and store.exists(sidecar_key(key))
    assert store.uri(key) == f"s3://{store.bucket}/{key}"


def test_json_round_trip_and_listing(store: ArtifactStore) -> None:
    class Manifest(BaseModel):
        run: str
        approvals: list[str]

    mkey = manifest_key("winter", "run-1")
    store.put_json(mkey, Manifest(run="run-1", approvals=["ana"]), Lineage(kind="manifest"))
    sb = storyboard_key("winter", H)
    store.put_json(sb, {"title": "Winter → Spring", "shots": [1, 2]})
    assert store.get_json(mkey, Manifest) == Manifest(run="run-1", approvals=["ana"])
    assert store.get_json(sb) == {"title": "Winter → Spring", "shots": [1, 2]}
    assert store.lineage(sb).kind == "storyboard"
    assert store.exists("projects/winter/runs/run-1/manifest.lineage.json")
    img = image_key("winter", "s01", H)
    store.put_bytes(img, b"png", "image/png")
    assert store.list("projects/winter/") == sorted([mkey, sb, img])
    assert store.list("projects/winter/shots/") == [img]
    assert store.list("projects/winter/", recursive=False) == sorted(
        ["projects/winter/runs/", "projects/winter/shots/", "projects/winter/storyboards/"]
    )
    assert store.list("projects/nothing/") == []


def test_if_absent_keeps_first_write(store: ArtifactStore) -> None:
    key = clip_key("winter", "s02", H)
    store.put_bytes(key, b"first", "video/mp4")
    store.put_bytes(key, b"second", "video/mp4", if_absent=True)
    assert store.get_bytes(key) == b"first"
    store.put_bytes(key, b"third", "video/mp4")
    assert store.get_bytes(key) == b"third"


def test_copy_move_delete(store: ArtifactStore) -> None:
    store.put_bytes("queue/in/a.txt", b"job", "text/plain")
    store.copy("queue/in/a.txt", "queue/copy/a.txt")
    store.move("queue/in/a.txt", "queue/done/a.txt")
    assert not store.exists("queue/in/a.txt") and not store.exists("queue/in/a.json")
    assert store.get_bytes("queue/done/a.txt") == b"job"
    assert store.get_bytes("queue/copy/a.txt") == b"job"
    store.delete("queue/copy/a.txt")
    assert store.list("queue/") == ["queue/done/a.txt"]
    with pytest.raises(ObjectNotFound, match="queue/copy/a.txt"):
        store.get_bytes("queue/copy/a.txt")


def test_missing_object_and_bad_keys(store: ArtifactStore) -> None:
    assert not store.exists("nope/x.png")
    with pytest.raises(ObjectNotFound):
        store.lineage("nope/x.png")
    for bad in ("/abs/x.png", "a/../b.png", "a//b.png", "a/\x07.png", ""):
        with pytest.raises(ValueError):
            store.put_bytes(bad, b"x")


# -- integrity --------------------------------------------------------------------------------


def test_tampered_object_is_detected(store: ArtifactStore, tmp_path: Path) -> None:
    key = image_key("winter", "s03", H)
    store.put_bytes(key, b"original bytes", "image/png")
    evil = b"tampered bytes"
    store.client.put_object(store.bucket, key, io.BytesIO(evil), len(evil))
    with pytest.raises(IntegrityError, match=key):
        store.get_bytes(key)
    dest = tmp_path / "out.png"
    with pytest.raises(IntegrityError, match=key):
        store.get_file(key, dest)
    assert not dest.exists() and list(tmp_path.iterdir()) == []
    assert store.get_bytes(key, verify=False) == evil


def test_object_without_sidecar_fails_verification(store: ArtifactStore) -> None:
    store.client.put_object(store.bucket, "raw/x.bin", io.BytesIO(b"x"), 1)
    with pytest.raises(IntegrityError, match="no lineage sidecar"):
        store.get_bytes("raw/x.bin")


@pytest.mark.slow
def test_large_put_file_is_multipart_and_streams_back(s3_settings: S3Settings,
                                                       tmp_path: Path) -> None:
    store = ArtifactStore(s3_settings.with_bucket("t-large"), part_size=8 * 1024 * 1024)
    src = tmp_path / "big.bin"
    sha = hashlib.sha256()
    with src.open("wb") as fh:
        for _ in range(20):
            chunk = os.urandom(1024 * 1024)
            sha.update(chunk)
            fh.write(chunk)
    key = edit_key("winter", H)
    store.put_file(key, src, "video/mp4", {"parents": [clip_key("winter", "s01", H)]})
    etag = store.client.stat_object(store.bucket, key).etag
    assert etag.endswith("-3"), etag  # 20 MiB in 8 MiB parts: a 3-part multipart upload
    lin = store.lineage(key)
    assert lin.sha256 == sha.hexdigest() and lin.size == 20 * 1024 * 1024 and lin.kind == "edit"
    out = store.get_file(key, tmp_path / "sub" / "back.mp4")
    h = hashlib.sha256()
    with out.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    assert h.hexdigest() == sha.hexdigest()


def test_presigned_get_returns_the_bytes(store: ArtifactStore) -> None:
    key = cover_key("winter", H)
    data = os.urandom(2048)
    store.put_bytes(key, data, "image/png")
    url = store.presigned_url(key, expires=timedelta(minutes=5))
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200 and r.content == data
    assert store.settings.secret_key.get_secret_value() not in url


# -- secrets ----------------------------------------------------------------------------------


def test_wrong_secret_is_rejected_without_leaking(s3_settings: S3Settings) -> None:
    wrong = "WRONG-" + s3_settings.secret_key.get_secret_value()[::-1]
    bad = ArtifactStore(s3_settings.model_copy(update={"secret_key": SecretStr(wrong)}))
    with pytest.raises(StoreError) as exc:
        bad.put_bytes("a/b.txt", b"x")
    msg = str(exc.value)
    assert exc.value.code in ("SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId"), msg
    assert wrong not in msg and s3_settings.secret_key.get_secret_value() not in msg
    assert exc.value.__cause__ is None and exc.value.__suppress_context__
    assert wrong not in repr(bad) and wrong not in repr(bad.settings)


def test_unreachable_endpoint_error_names_key_not_secret(s3_settings: S3Settings) -> None:
    from reelflow.devstack import free_ports

    (port,) = free_ports(1)
    dead = ArtifactStore(s3_settings.model_copy(update={"endpoint": f"127.0.0.1:{port}"}),
                         connect_timeout=0.5, retries=0)
    with pytest.raises(StoreError, match="x/y.png") as exc:
        dead.get_bytes("x/y.png", verify=False)
    assert s3_settings.secret_key.get_secret_value() not in str(exc.value)


def test_keys_module_exports() -> None:
    assert keys.SLUG_RE.match("shot-01") and not keys.SLUG_RE.match("-x")
