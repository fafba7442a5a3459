"""What every task shares: the cache policy, retries, and the worker's artifact store."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import TASK_SOURCE, CachePolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects

# Imported for its side effect: it registers the `minio-storage` block class, without which a
# worker's flow-run process cannot load RESULTS_BLOCK ("No block class found for slug").
import blocks.minio_storage
from reelflow.render.jobs import ImageJob, Job
from reelflow.store.artifacts import ArtifactStore, StoreError
from reelflow.store.settings import S3Settings


@dataclass
class JobInputs(CachePolicy):
    """The task's inputs, each job replaced by its spec hash: weights count by content, not
    path, so the same checkpoint at another path is Cached and an overwritten LoRA misses."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        if not inputs:
            return None
        hashed = {
            name: {type(value).__name__: value.spec_hash()} if isinstance(value, Job) else value
            for name, value in inputs.items()
        }
        return hash_objects(hashed, raise_on_failure=True)


def step_outputs(inputs: dict[str, Any]) -> list[str]:
    """The objects a step writes, as its `job` argument names them (none for a job that writes
    no object, such as the beat analysis)."""
    job = inputs.get("job")
    if isinstance(job, ImageJob):
        return job.variant_keys()
    if isinstance(job, Job):
        try:
            return [job.output_key()]
        except NotImplementedError:
            return []
    return []


def forget_result(task_ctx: TaskRunContext, key: str) -> str:
    """Drop the result record at `key` so the step runs again and commits a new one; returns the
    key the step's transaction should use.

    The record is deleted rather than dodged, so the re-run keeps its key and with it the lock
    that stops two runs from remaking the same output at once. A result storage other than the
    bucket (a local test folder) gets a fresh key instead: the step runs all the same."""
    storage = getattr(task_ctx.result_store, "result_storage", None)
    if isinstance(storage, blocks.minio_storage.MinIOStorage):
        storage.delete_path(key)
        return key
    return hash_objects([key, uuid.uuid4().hex], raise_on_failure=True)


@dataclass
class OutputsPresent(CachePolicy):
    """`policy`, trusted only while the step's outputs are in the bucket with their sidecars.

    Buckets lose objects (lifecycle rules, cleanup scripts, a restore from an older backup),
    while Prefect's result record, which only names the keys, survives: without this check the
    step would come back Cached and the object stay gone. One listing per output object (and a
    look at the record only when one is missing)."""

    policy: CachePolicy = field(default_factory=lambda: JobInputs() + TASK_SOURCE)

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        key = self.policy.compute_key(task_ctx, inputs, flow_parameters, **kwargs)
        outputs = step_outputs(inputs)
        if key is None or not outputs:
            return key
        try:
            missing = get_store().missing(outputs)
        except StoreError as err:  # the step itself reports an unreachable bucket
            get_run_logger().warning("could not check the outputs of %s: %s",
                                     task_ctx.task_run.name, err)
            return key
        if not missing or not task_ctx.result_store.exists(key):
            return key  # sound, or a first run: nothing cached to distrust
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        get_run_logger().warning("%s missing or without its lineage sidecar: running %s again",
                                 ", ".join(missing[:3]) + more, task_ctx.task_run.name)
        return forget_result(task_ctx, key)


def cache_policy() -> CachePolicy:
    """Inputs + source, not the run id: a cache entry made by one run is found by the next one,
    on any machine that shares the result storage, as long as its outputs are still in the bucket
    (`OutputsPresent`). With Redis configured (tasks/locking.py), SERIALIZABLE too: concurrent
    runs of one task input wait for each other, never both render."""
    from tasks.locking import lock_manager_from_env

    policy = OutputsPresent()
    manager = lock_manager_from_env()
    if manager is None:
        return policy
    return policy.configure(lock_manager=manager, isolation_level="SERIALIZABLE")


CACHE = cache_policy()
RETRIES = 2
RETRY_DELAY = 5
ENV_RETRY_BUDGET = "REELFLOW_STEP_RETRY_BUDGET"
RETRY_BUDGET = 1800.0
"""Seconds a step may spend on its tries in all (REELFLOW_STEP_RETRY_BUDGET overrides): no retry
starts that would begin past it, however many retries are left."""


def retry_budget() -> float:
    """The steps' overall retry budget in seconds (REELFLOW_STEP_RETRY_BUDGET, else 1800)."""
    from reelflow.errors import ConfigError

    text = os.environ.get(ENV_RETRY_BUDGET, "").strip()
    if not text:
        return RETRY_BUDGET
    try:
        budget = float(text)
    except ValueError:
        budget = 0.0
    if budget <= 0:
        raise ConfigError(f"{ENV_RETRY_BUDGET}={text!r}: expected a number of seconds above 0")
    return budget


def _next_delay(task: Any, tries: int) -> float:
    delay = task.retry_delay_seconds or 0
    if isinstance(delay, list | tuple):
        return float(delay[min(tries - 1, len(delay) - 1)]) if delay else 0.0
    return float(delay)


def retryable(task: Any, task_run: Any, state: Any) -> bool:
    """`retry_condition_fn` of every step: bad input or configuration (InputError, ConfigError)
    fails the same way on every try, so it surfaces at once instead of after the retries; and
    no retry starts past the retry budget: the step ends with one line saying how long it tried."""
    from reelflow.errors import ConfigError, InputError

    if isinstance(state.data, InputError | ConfigError):
        return False
    if task_run.start_time is None:
        return True
    tried = (datetime.now(UTC) - task_run.start_time).total_seconds()
    budget = retry_budget()
    if tried + _next_delay(task, task_run.run_count) <= budget:
        return True
    why = (state.message or type(state.data).__name__).splitlines()[0]
    get_run_logger().error("%s gave up after %d tries in %.1f s (retry budget %g s, %s): %s",
                           task_run.name, task_run.run_count, tried, budget, ENV_RETRY_BUDGET,
                           why)
    return False


def step_task(name: str, run_name: str | None = None, **options: Any) -> Callable:
    """The decorator of a production step: cached on its inputs + source, retried (except for
    input and configuration errors, see `retryable`).

    `run_name` is a template over the task's arguments (`"variants-{job.shot}"`), so the run's
    task list reads as the film's shots."""
    settings: dict[str, Any] = {
        "name": name,
        "task_run_name": run_name or name,
        "cache_policy": CACHE,
        "retries": RETRIES,
        "retry_delay_seconds": RETRY_DELAY,
        "retry_condition_fn": retryable,
    }
    return task(**(settings | options))


def cpu_slots() -> int:
    """Concurrent CPU-heavy steps (encodes, covers) in one run: REELFLOW_CPU_SLOTS, else cores."""
    return max(1, int(os.environ.get("REELFLOW_CPU_SLOTS", os.cpu_count() or 1)))


def gpu_slots() -> int:
    """Concurrent model steps in one worker process: REELFLOW_GPU_SLOTS, else one per visible
    device (CUDA_VISIBLE_DEVICES), else one. Threads of a run share the resident pipelines."""
    if os.environ.get("REELFLOW_GPU_SLOTS"):
        return max(1, int(os.environ["REELFLOW_GPU_SLOTS"]))
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return max(1, len(visible))


@lru_cache(maxsize=1)
def _gpu_semaphore() -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(gpu_slots())


@contextmanager
def gpu_slot() -> Iterator[None]:
    """Hold one of this process's model slots while a step runs a model. Across processes and
    machines, the strict global concurrency limit `gpu` does the same (flows/render_shot.py)."""
    with _gpu_semaphore():
        yield


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
