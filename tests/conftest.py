"""Shared fixtures: a real S3 server (`weed mini`) and one Prefect test server per session.

Fixtures (use by naming them in a test's arguments):

- `s3_stack`     session: StackConfig of a private `weed mini` on free ports in a tmp home
- `s3_settings`  session: S3Settings for it (random credentials, default bucket "reelflow")
- `store`        function: ArtifactStore on a fresh, empty bucket of its own
- `prefect_server` session: `prefect_test_harness()` (temp SQLite server); yields the API URL
- `film_env`     session: environment for flow runs (REELFLOW_S3_* on bucket "film", a models
                 folder, the results block saved, PREFECT_API_URL in the returned dict)
- `minio_block`  session: a saved `MinIOStorage` block (bucket "prefect-results") for
                 `result_storage=`; needs `prefect_server`

All ports are picked free (with their +10000 gRPC twins), so tests run beside a live `reelflow up`.

Every test gets one of three markers (tests/support/levels.py): `unit` (no network, no server
process: enforced, a unit test that opens a socket fails), `integration` (S3 or servers of its
own), `flows` (Prefect, and S3). A test's own marker or its module's `pytestmark` wins; else the
fixtures above decide. So `pytest -m unit` runs the fast ones alone (`make test-fast`).
"""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Before anything imports prefect: no telemetry from test servers.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# librosa's numba functions cache compiled code next to the package; several test processes
# writing that cache at once corrupted it (a segfault in beat detection). One cache per session.
os.environ.setdefault("NUMBA_CACHE_DIR", tempfile.mkdtemp(prefix="reelflow-numba-"))

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

from reelflow import devstack  # noqa: E402
from reelflow.store.artifacts import ArtifactStore  # noqa: E402
from reelflow.store.settings import S3Settings  # noqa: E402
from tests.support.levels import _unit_guard, pytest_collection_modifyitems  # noqa: E402, F401


@pytest.fixture(scope="session")
def s3_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.StackConfig]:
    """A private `weed mini` for the whole session on a free block of ports (another block if a
    neighbour takes one first); stopped (process group) at the end."""
    home = tmp_path_factory.mktemp("s3stack")
    atexit.register(devstack.down, devstack.StackConfig(home=home))  # if teardown never runs
    try:
        config, _ = devstack.start_on_free_ports(home, start_s3=True, start_prefect=False,
                                                 timeout=60)
    except devstack.StackError as err:
        devstack.down(devstack.StackConfig(home=home))
        raise RuntimeError(f"could not start weed mini for tests: {err}") from err
    try:
        yield config
    finally:
        devstack.down(config)


@pytest.fixture(scope="session")
def s3_settings(s3_stack: devstack.StackConfig) -> S3Settings:
    return S3Settings.from_stack_file(s3_stack.stack_file)


@pytest.fixture
def store(s3_settings: S3Settings) -> ArtifactStore:
    """An ArtifactStore on a new bucket, so tests never see each other's objects."""
    st = ArtifactStore(s3_settings.with_bucket(f"t-{uuid.uuid4().hex[:16]}"))
    st.ensure_bucket()
    return st


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """One temporary Prefect server for the session (startup costs ~10 s); yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


@pytest.fixture(scope="session")
def minio_block(prefect_server: str, s3_settings: S3Settings) -> Any:
    """A saved MinIOStorage block, ready for `@task(result_storage=minio_block)`."""
    from blocks.minio_storage import MinIOStorage

    block = MinIOStorage.from_settings(s3_settings.with_bucket("prefect-results"))
    block.to_store().ensure_bucket()
    block.save("test-results", overwrite=True)
    return block


@pytest.fixture(scope="session")
def film_env(
    prefect_server: str, s3_settings: S3Settings, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Environment for the flow: where S3 is, where tiny models go, the results block."""
    from tasks.common import ensure_results_block, get_store

    settings = s3_settings.with_bucket("film")
    env = {
        "REELFLOW_S3_ENDPOINT": settings.endpoint,
        "REELFLOW_S3_ACCESS_KEY": settings.access_key,
        "REELFLOW_S3_SECRET_KEY": settings.secret_key.get_secret_value(),
        "REELFLOW_S3_BUCKET": settings.bucket,
        "REELFLOW_MODELS": str(tmp_path_factory.mktemp("models")),
        "REELFLOW_POLL_INTERVAL": "1",
        "PREFECT_API_URL": prefect_server,
    }
    os.environ.update({k: v for k, v in env.items() if k != "PREFECT_API_URL"})
    get_store.cache_clear()
    ensure_results_block(settings)  # what `reelflow render` does too
    return env
