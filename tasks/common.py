"""What every task shares: the cache policy, retries, and the worker's artifact store."""

from __future__ import annotations

from functools import lru_cache

from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy

# Imported for its side effect: it registers the `minio-storage` block class, without which a
# worker's flow-run process cannot load RESULTS_BLOCK ("No block class found for slug").
import blocks.minio_storage  # noqa: F401
from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings


def cache_policy() -> CachePolicy:
    """Inputs + source, not the run id: a cache entry made by one run is found by the next one,
    on any machine that shares the result storage. With Redis configured (tasks/locking.py),
    SERIALIZABLE too: concurrent runs of one task input wait for each other, never both render."""
    from tasks.locking import lock_manager_from_env

    policy = INPUTS + TASK_SOURCE
    manager = lock_manager_from_env()
    if manager is None:
        return policy
    return policy.configure(lock_manager=manager, isolation_level="SERIALIZABLE")


CACHE = cache_policy()
RETRIES = 2
RETRY_DELAY = 5


@lru_cache(maxsize=1)
def get_store() -> ArtifactStore:
    """One store (one connection pool) per worker process, never passed through task inputs."""
    store = ArtifactStore(S3Settings.from_env())
    store.ensure_bucket()
    return store


# The saved MinIOStorage block that holds task results (see blocks/minio_storage.py); `reelflow
# render` and `reelflow deploy` save it from the S3 settings before the first run.
RESULTS_BLOCK = "minio-storage/reelflow-results"


def ensure_results_block(settings: S3Settings | None = None) -> str:
    """Save the results block from the S3 settings (idempotent); returns its slug."""
    from blocks.minio_storage import MinIOStorage

    block = MinIOStorage.from_settings(settings or S3Settings.from_env())
    block.to_store().ensure_bucket()
    block.save(RESULTS_BLOCK.split("/", 1)[1], overwrite=True)
    return RESULTS_BLOCK
