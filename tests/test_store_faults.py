"""Store faults, against real SeaweedFS processes: a hung server is noticed in seconds with the
retries in the log, a killed one is a one-line StoreError and works again once restarted, and an
object whose sidecar never got written (a crash between the two writes) is made again."""

from __future__ import annotations

import io
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from reelflow import devstack
from reelflow.render.clips import render_clip
from reelflow.render.jobs import ClipJob
from reelflow.store.artifacts import ArtifactStore, StoreError
from reelflow.store.keys import sidecar_key
from reelflow.store.settings import S3Settings

pytestmark = pytest.mark.integration  # weed servers of its own, stopped and killed


def test_object_without_sidecar_is_made_again(store: ArtifactStore) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 36), (200, 120, 40)).save(buf, "PNG")
    still = store.put_bytes("projects/p/shots/a/images/0123456789abcdef-v0.png", buf.getvalue(),
                            "image/png")
    job = ClipJob(project="p", shot="a", duration=0.5, fps=8, width=64, height=36,
                  movement="push-in", motion_prompt="", backend="animatic", seed=1,
                  image_key=still)
    key = render_clip(store, job)
    good = store.get_bytes(key)
    # the crash: the object was (partly) rewritten, its sidecar never written
    store.client.remove_object(store.bucket, sidecar_key(key))
    store.client.put_object(store.bucket, key, io.BytesIO(good[:100]), 100)
    assert store.exists(key) and not store.complete(key)

    assert render_clip(store, job) == key
    assert store.complete(key)
    assert store.get_bytes(key) == good  # verified against the new sidecar's sha256


@pytest.fixture
def own_s3(tmp_path: Path) -> Iterator[tuple[devstack.StackConfig, int]]:
    """A weed of this test's own (it gets stopped and killed), and its pid."""
    config = devstack.StackConfig.with_free_ports(
        tmp_path / "stack", start_s3=True, start_prefect=False, timeout=60)
    try:
        devstack.up(config)
        record = devstack.read_pid(config, "s3")
        assert record is not None
        yield config, int(record["pid"])
    finally:
        devstack.down(config)


def _quick_store(config: devstack.StackConfig) -> ArtifactStore:
    settings = S3Settings.from_stack_file(config.stack_file).with_bucket("faults")
    return ArtifactStore(settings, small_timeout=1.0, connect_timeout=1.0, retries=2)


@pytest.mark.slow
def test_hung_and_killed_s3(own_s3: tuple[devstack.StackConfig, int],
                            caplog: pytest.LogCaptureFixture) -> None:
    config, pid = own_s3
    store = _quick_store(config)
    store.put_bytes("projects/p/x.json", b"{}")

    os.kill(pid, signal.SIGSTOP)  # hung: the socket accepts, nothing answers
    try:
        start = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="reelflow.store"), \
                pytest.raises(StoreError) as info:
            store.get_bytes("projects/p/x.json")
        took = time.monotonic() - start
    finally:
        os.kill(pid, signal.SIGCONT)
    assert took < 15, f"a hung S3 stalled {took:.0f} s before failing"
    assert "\n" not in str(info.value) and "projects/p/x.json" in str(info.value)
    assert "retrying" in caplog.text and "ReadTimeoutError" in caplog.text
    assert store.get_bytes("projects/p/x.json") == b"{}"  # back once it answers again

    devstack.down(config)  # killed
    start = time.monotonic()
    with pytest.raises(StoreError) as info:
        store.exists("projects/p/x.json")
    assert time.monotonic() - start < 15
    assert "secret" not in str(info.value).lower()
    deadline = time.monotonic() + 120
    while True:  # until `up` restarts at once after a crash (TIME-WAIT ports), wait for them
        try:
            devstack.up(config)
            break
        except devstack.StackError as exc:
            if "already in use" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(3)
    fresh = _quick_store(config)
    deadline = time.monotonic() + 60
    while True:  # `up` returns when the S3 port answers; the volume may load a moment later
        try:
            data = fresh.get_bytes("projects/p/x.json")
            break
        except StoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
    assert data == b"{}"  # nothing lost across the restart
