"""MinIOStorage as Prefect result storage: a second run must come back Cached from the bucket.

This is the trap DESIGN.md warns about: a block without async_dispatch'd read/write methods makes
tasks show Completed while nothing is persisted, so the cache never hits. Here the cache has to hit
across two separate flow runs, and the record has to be an object in the bucket.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.results import ResultRecord
from prefect.states import State

from blocks.minio_storage import MinIOStorage
from reelflow.store.artifacts import ArtifactStore


def _record_key(block: MinIOStorage, state: State) -> str:
    """Bucket key of the result record behind a task state."""
    record = state.data
    assert isinstance(record, ResultRecord), type(record)
    storage_key = record.metadata.storage_key
    assert storage_key
    return block._key(storage_key)


def test_second_run_is_cached_from_minio(minio_block: MinIOStorage) -> None:
    calls: list[str] = []
    states: list[State] = []
    token = uuid.uuid4().hex  # unique input: the first run cannot hit an older cache

    @task(cache_policy=INPUTS + TASK_SOURCE, persist_result=True, result_storage=minio_block)
    def render(shot: str, token: str) -> dict[str, Any]:
        calls.append(shot)
        return {"key": f"projects/p/shots/{shot}/images/{token[:16]}.png", "n": len(calls)}

    @flow
    def produce(shot: str, token: str) -> dict[str, Any]:
        state = render(shot, token, return_state=True)
        states.append(state)
        return state.result()

    first = produce("s01", token)
    second = produce("s01", token)

    assert calls == ["s01"], "the task body must run once; the second run reads the cache"
    assert first == second == {"key": f"projects/p/shots/s01/images/{token[:16]}.png", "n": 1}
    assert states[0].name == "Completed"
    assert states[1].name == "Cached"

    store: ArtifactStore = minio_block.to_store()
    key = _record_key(minio_block, states[1])
    assert key.startswith(minio_block.prefix)
    assert key == _record_key(minio_block, states[0])
    assert store.exists(key)
    assert key in store.list(minio_block.prefix)
    record = ResultRecord.deserialize(minio_block.read_path(key.removeprefix(minio_block.prefix),
                                                            _sync=True))
    assert record.result == first


def test_async_task_is_cached_from_minio(minio_block: MinIOStorage) -> None:
    """Async tasks go through aread_path / awrite_path instead of the _sync=True path."""
    calls: list[int] = []
    states: list[State] = []
    n = uuid.uuid4().int % 10**9

    @task(cache_policy=INPUTS + TASK_SOURCE, persist_result=True, result_storage=minio_block)
    async def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    @flow
    async def run(x: int) -> int:
        state = await double(x, return_state=True)
        states.append(state)
        return await state.result()

    assert asyncio.run(run(n)) == 2 * n
    assert asyncio.run(run(n)) == 2 * n
    assert calls == [n]
    assert [s.name for s in states] == ["Completed", "Cached"]
    assert minio_block.to_store().exists(_record_key(minio_block, states[1]))


def test_block_round_trip_sync_and_async(minio_block: MinIOStorage) -> None:
    key = minio_block.write_path(f"direct/{uuid.uuid4().hex}", b"payload", _sync=True)
    assert key.startswith("prefect-results/direct/")
    path = key.removeprefix("prefect-results/")
    assert minio_block.read_path(path, _sync=True) == b"payload"

    async def both() -> bytes:
        await minio_block.awrite_path(path, b"async payload")
        # Inside an event loop the dispatched sync method returns the async implementation.
        return await minio_block.read_path(path)

    assert asyncio.run(both()) == b"async payload"
    with pytest.raises(FileNotFoundError, match="missing"):
        minio_block.read_path("missing", _sync=True)
    with pytest.raises(ValueError):
        minio_block.read_path("../escape", _sync=True)


def test_saved_block_loads_without_leaking_secret(minio_block: MinIOStorage) -> None:
    from prefect.blocks.core import Block

    loaded = MinIOStorage.load("test-results")
    assert isinstance(Block.load("minio-storage/test-results"), MinIOStorage)
    assert loaded.endpoint == minio_block.endpoint and loaded.bucket == minio_block.bucket
    secret = minio_block.secret_key.get_secret_value()
    assert loaded.secret_key.get_secret_value() == secret
    assert secret not in repr(loaded) and secret not in str(loaded)
    assert loaded.to_store().bucket == "prefect-results"
