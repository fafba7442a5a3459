"""Cross-process task locking: two runs of one storyboard at once never render a shot twice.

With `REELFLOW_REDIS_URL` set (`reelflow up` starts Redis and writes it into the stack file; the
CLI and workers pass it on), every cached task runs in a SERIALIZABLE Prefect transaction whose
lock lives in Redis: the second run asking for the same task inputs waits for the first's lock,
then finds its committed result and comes back Cached. Locks are leases, renewed by the holder
every LEASE_SECONDS / 3: when a worker dies mid-task its lock expires within LEASE_SECONDS, so
the shot's re-run on another worker is not blocked for good.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from prefect_redis.connection import redis_from_url
from prefect_redis.locking import RedisLockManager
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

ENV_REDIS_URL = "REELFLOW_REDIS_URL"
LEASE_SECONDS = 30.0
REDIS_RETRIES = 10
"""Tries of a lock command while Redis is away, backing off 1, 2, 4, then 8 s: about a minute,
as the Prefect client rides out its server. redis-py's own default (10 tries in about 2 s) failed
renders at every Redis restart in the soak (`bench/soak.py`): connection refused at a task's
lock or result commit, and the run ended."""

# Extend the lock's expiry only while `holder` still holds it.
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


class LeasedRedisLockManager(RedisLockManager):
    """prefect-redis's lock manager with leases instead of locks that never expire."""

    def __init__(self, *args: Any, lease_seconds: float = LEASE_SECONDS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lease_seconds = lease_seconds
        self._renewers: dict[str, threading.Event] = {}

    def _init_clients(self) -> None:
        """prefect-redis's clients, with retries that ride out a Redis restart."""
        if self.connection_url is None:
            super()._init_clients()
            return
        backoff = ExponentialBackoff(cap=8.0, base=0.5)
        self.client = redis_from_url(self.connection_url, retry=Retry(backoff, REDIS_RETRIES))
        self.async_client = redis_from_url(self.connection_url, asynchronous=True,
                                           retry=AsyncRetry(backoff, REDIS_RETRIES))

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "lease_seconds": self.lease_seconds}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._renewers = {}

    def _renew(self, key: str, holder: str) -> None:
        """Keep extending the lease from a daemon thread until released (or lost)."""
        name = self._lock_name_for_key(key)
        stop = threading.Event()
        old = self._renewers.pop(name, None)
        if old is not None:
            old.set()
        self._renewers[name] = stop
        millis = int(self.lease_seconds * 1000)

        def loop() -> None:
            while not stop.wait(self.lease_seconds / 3):
                try:
                    if not self.client.eval(_EXTEND, 1, name, holder, millis):
                        return  # released or expired: nothing left to renew
                except Exception:  # noqa: BLE001 - Redis away: the next tick tries again
                    continue

        threading.Thread(target=loop, name=f"lease-{key[:12]}", daemon=True).start()

    def _stop(self, key: str) -> None:
        stop = self._renewers.pop(self._lock_name_for_key(key), None)
        if stop is not None:
            stop.set()

    def acquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                     hold_timeout: float | None = None) -> bool:
        ok = super().acquire_lock(key, holder, acquire_timeout,
                                  hold_timeout or self.lease_seconds)
        if ok and hold_timeout is None:
            self._renew(key, holder)
        return ok

    async def aacquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                            hold_timeout: float | None = None) -> bool:
        ok = await super().aacquire_lock(key, holder, acquire_timeout,
                                         hold_timeout or self.lease_seconds)
        if ok and hold_timeout is None:
            self._renew(key, holder)
        return ok

    def release_lock(self, key: str, holder: str) -> None:
        self._stop(key)
        super().release_lock(key, holder)


def lock_manager_from_env() -> LeasedRedisLockManager | None:
    """The Redis lock manager when REELFLOW_REDIS_URL is set, else None (single process)."""
    url = os.environ.get(ENV_REDIS_URL, "").strip()
    return LeasedRedisLockManager(connection_url=url) if url else None
