"""No code from the bucket: a result record planted in the bucket is refused, never unpickled.

Prefect trusts the serializer a result record names (pickle by default), so before signing anyone
who could write to the results bucket ran code on every renderer that read the cache. Now the
MinIOStorage block signs what it writes and verifies what it reads; a planted record reads as
absent (the task runs again and overwrites it), and the cache still hits afterwards.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.results import ResultRecord
from prefect.states import State

from blocks.minio_storage import MinIOStorage
from reelflow.store import signing


class Planted:
    """Unpickling this creates `path`: proof that the bucket's bytes were executed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def _key(block: MinIOStorage, state: State) -> str:
    record = state.data
    assert isinstance(record, ResultRecord)
    assert record.metadata.storage_key
    return block._key(record.metadata.storage_key)


@pytest.mark.parametrize("how", ["unsigned", "other-key"])
def test_planted_record_is_refused_not_executed(
    minio_block: MinIOStorage, tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    calls: list[str] = []
    states: list[State] = []
    token = uuid.uuid4().hex
    marker = tmp_path / "pwned"

    @task(cache_policy=INPUTS + TASK_SOURCE, persist_result=True, result_storage=minio_block)
    def render(shot: str, token: str) -> dict[str, Any]:
        calls.append(shot)
        return {"key": f"projects/p/shots/{shot}/{token[:8]}.png"}

    @flow
    def produce(shot: str, token: str) -> dict[str, Any]:
        state = render(shot, token, return_state=True)
        states.append(state)
        return state.result()

    first = produce("s01", token)
    key = _key(minio_block, states[0])
    store = minio_block.to_store()
    legit = ResultRecord.deserialize(minio_block.read_path(key.removeprefix(minio_block.prefix),
                                                           _sync=True))
    legit.result = Planted(marker)
    payload = legit.serialize()
    if how == "other-key":
        payload = signing.sign(key, payload, key=b"an attacker's key")
    store.put_bytes(key, payload, "application/octet-stream", sidecar=False)

    with caplog.at_level(logging.ERROR, logger="reelflow.store"):
        second = produce("s01", token)
    assert not marker.exists(), "a planted record was unpickled"
    assert second == first
    assert calls == ["s01", "s01"], "the refused record must read as absent: the task runs again"
    assert states[1].name == "Completed"
    assert "refused (not deserialized)" in caplog.text

    third = produce("s01", token)  # the re-run overwrote the record with a signed one
    assert third == first and states[2].name == "Cached" and calls == ["s01", "s01"]
    assert not marker.exists()


def test_signature_binds_path_and_content() -> None:
    key = b"k" * 32
    stored = signing.sign("a/b", b"payload", key=key)
    assert signing.verify("a/b", stored, key=key) == b"payload"
    for path, data in (("a/c", stored), ("a/b", stored[:-1] + b"X"), ("a/b", b"payload")):
        with pytest.raises(signing.UnsignedRecord):
            signing.verify(path, data, key=key)
