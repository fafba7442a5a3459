"""The lock manager rides out a Redis restart: a lock asked for while Redis is down is granted
once it is back (the soak, `bench/soak.py`, found renders failing at every Redis restart)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from reelflow import devstack
from tasks.locking import ENV_REDIS_URL, LeasedRedisLockManager


@pytest.mark.integration
def test_a_lock_asked_for_during_a_redis_restart_is_granted(tmp_path: Path) -> None:
    config, _ = devstack.start_on_free_ports(tmp_path / "stack", start_s3=False,
                                             start_prefect=False, start_redis=True, timeout=60)
    try:
        manager = LeasedRedisLockManager(connection_url=devstack.client_env(config.home)[
            ENV_REDIS_URL])
        assert manager.acquire_lock("before", "me")
        pid = devstack.running_pid(config, devstack.REDIS)
        assert pid is not None
        devstack.stop_pid(pid, first=signal.SIGKILL)  # a crash: connections refused
        restart = threading.Timer(3.0, lambda: devstack.up(config))
        restart.start()
        try:
            assert manager.acquire_lock("during", "me", acquire_timeout=30)
        finally:
            restart.join()
        assert manager.is_lock_holder("during", "me")
        manager.release_lock("during", "me")
    finally:
        devstack.down(config)
