"""Signed result records: nothing read back from the bucket is unpickled unless we wrote it.

Prefect stores task and flow results as records whose payload is (by default) cloudpickle, and it
trusts the serializer a record names; anyone who can write to the bucket could plant a record
that runs code on every renderer that reads the cache. So the result storage block signs each
record it writes (HMAC-SHA256 over the record's path and bytes, with a key that lives only on
the machines that render, never in the bucket or in a Prefect block) and refuses a record whose
signature does not verify before Prefect ever sees its bytes. A refused record reads as absent:
the task runs again and overwrites it, and an error is logged.

The key: `REELFLOW_RESULTS_KEY` (set the same value on every worker), else a random key created
once in `$REELFLOW_HOME/results.key` (mode 0600).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from functools import lru_cache
from pathlib import Path

from reelflow.errors import ReelflowError
from reelflow.store.settings import ENV_HOME

ENV_KEY = "REELFLOW_RESULTS_KEY"
MAGIC = b"reelflow-signed-v1\n"
_MAC_HEX = 64

log = logging.getLogger("reelflow.store")


class UnsignedRecord(ReelflowError):
    """A result record without a valid signature: planted, corrupted, or signed with another key."""


def _key_file() -> Path:
    home = os.environ.get(ENV_HOME)
    return (Path(home) if home else Path.cwd() / ".reelflow") / "results.key"


@lru_cache(maxsize=4)
def _file_key(path: Path) -> bytes:
    """The key in `path`, created (0600, atomically: a reader never sees it half-written)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # fails if another process made it first: theirs wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    key = path.read_text().strip().encode()
    if not key:
        raise ReelflowError(f"{path} is empty; delete it or set {ENV_KEY}")
    return key


def signing_key() -> bytes:
    env = os.environ.get(ENV_KEY, "").strip()
    if env:
        return env.encode()
    return _file_key(_key_file().resolve())


def _mac(key: bytes, path: str, content: bytes) -> bytes:
    mac = hmac.new(key, path.encode("utf-8") + b"\0", hashlib.sha256)
    mac.update(content)
    return mac.hexdigest().encode()


def sign(path: str, content: bytes, key: bytes | None = None) -> bytes:
    """The bytes to store for `content` at `path`."""
    return MAGIC + _mac(key or signing_key(), path, content) + b"\n" + content


def verify(path: str, stored: bytes, key: bytes | None = None) -> bytes:
    """The content of a signed record; UnsignedRecord (and an error log) when it does not verify."""
    head = len(MAGIC)
    if not stored.startswith(MAGIC) or stored[head + _MAC_HEX: head + _MAC_HEX + 1] != b"\n":
        why = "is not signed"
    else:
        mac, content = stored[head: head + _MAC_HEX], stored[head + _MAC_HEX + 1:]
        if hmac.compare_digest(mac, _mac(key or signing_key(), path, content)):
            return content
        why = "has a signature that does not verify"
    message = (f"result record {path!r} {why}: refused (not deserialized); the task runs again. "
               f"If workers share results, give them the same {ENV_KEY}.")
    log.error(message)
    raise UnsignedRecord(message)
