"""The stack's ports: probes, free blocks, and the one base port that moves them all.

With a base port B the stack takes one block, so two stacks on one host only need two bases:

    B      s3          B + 10000  its gRPC twin
    B + 1  master      B + 10001
    B + 2  filer       B + 10002
    B + 3  volume      B + 10003
    B + 4  admin       B + 10004  (`-admin.ui=false` still opens both)
    B + 5  prefect
    B + 6  redis

PostgreSQL listens on a unix socket in its data directory, so it needs no port.
"""

from __future__ import annotations

import os
import random
import socket
import time
from typing import Literal

from reelflow.devstack.errors import StackError

GRPC_OFFSET = 10000
"""SeaweedFS derives gRPC ports as http port + 10000 (its worker ignores explicit admin gRPC
ports), so every chosen port must have its +10000 twin free too."""

WEED_PORTS = ("s3", "master", "filer", "volume", "admin")
"""The SeaweedFS servers `weed mini` runs, each on a port and its gRPC twin."""
PORTS = (*WEED_PORTS, "prefect", "redis")
"""Every port of the stack, in block order (the offset from the base port)."""

ENV_BASE_PORT = "REELFLOW_BASE_PORT"
"""A port number (the block starts there) or `auto` (a free block, chosen at the first `up`)."""
MIN_BASE_PORT = 1024
MAX_BASE_PORT = 65535 - GRPC_OFFSET - len(WEED_PORTS)

BasePort = int | Literal["auto"]


def ports_at(base: int) -> dict[str, int]:
    """The port of each server (`PORTS`) in the block starting at `base`."""
    return {name: base + offset for offset, name in enumerate(PORTS)}


def block_ports(base: int) -> list[int]:
    """Every port the block at `base` binds: the servers' ports and the gRPC twins."""
    return [*ports_at(base).values(), *(base + GRPC_OFFSET + i for i in range(len(WEED_PORTS)))]


def check_base_port(base: int) -> int:
    if not MIN_BASE_PORT <= base <= MAX_BASE_PORT:
        raise StackError(f"base port {base} is out of range: the stack takes {base}-"
                         f"{base + len(PORTS) - 1} and {base + GRPC_OFFSET}-"
                         f"{base + GRPC_OFFSET + len(WEED_PORTS) - 1}, so the base must be "
                         f"{MIN_BASE_PORT}-{MAX_BASE_PORT}")
    return base


def parse_base_port(value: str) -> BasePort:
    """`REELFLOW_BASE_PORT`'s value: a port number or `auto`; anything else is one clear line."""
    text = value.strip().lower()
    if text == "auto":
        return "auto"
    try:
        return check_base_port(int(text))
    except ValueError:
        raise StackError(f"{ENV_BASE_PORT}={value!r}: expected a port number "
                         f"({MIN_BASE_PORT}-{MAX_BASE_PORT}) or `auto`") from None


def env_base_port() -> BasePort | None:
    value = os.environ.get(ENV_BASE_PORT, "")
    return parse_base_port(value) if value.strip() else None


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on `port` now.

    Binds with SO_REUSEADDR like the servers do, so a port whose last connections linger in
    TIME-WAIT after a crash counts as free (restart at once), while a listener still blocks it.
    """
    if not 0 < port < 65536:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _rng() -> random.Random:
    # Seeded per process and instant: processes started together pick different ports.
    return random.Random(os.getpid() ^ time.time_ns())


def free_ports(n: int, host: str = "127.0.0.1", lo: int = 12000, hi: int = 22000) -> list[int]:
    """`n` distinct ports p in [lo, hi) with p and p + GRPC_OFFSET both free right now."""
    rng = _rng()
    chosen: list[int] = []
    taken: set[int] = set()
    for _ in range(5000):
        p = rng.randrange(lo, hi)
        if p in taken or p + GRPC_OFFSET in taken:
            continue
        if port_is_free(p, host) and port_is_free(p + GRPC_OFFSET, host):
            chosen.append(p)
            taken.update({p, p + GRPC_OFFSET})
            if len(chosen) == n:
                return chosen
    raise StackError(f"could not find {n} free port pairs in [{lo}, {hi})")


def free_base_port(host: str = "127.0.0.1", lo: int = 12000, hi: int = 22000) -> int:
    """A base port in [lo, hi) whose whole block (`block_ports`) is free right now.

    The range keeps the block and its twins below Linux's ephemeral ports (32768 and up), which
    clients' outgoing connections take.
    """
    rng = _rng()
    for _ in range(2000):
        base = rng.randrange(lo, hi)
        if all(port_is_free(p, host) for p in block_ports(base)):
            return base
    raise StackError(f"could not find a free block of stack ports in [{lo}, {hi})")
