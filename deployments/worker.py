"""How a reelflow worker is started: a Prefect process worker on this checkout.

The deployments' pull step chdirs into `$REELFLOW_PROJECT_DIR`, so the worker passes it on to
every flow-run process. A GPU worker serves exactly one GPU: `CUDA_VISIBLE_DEVICES` is set per
worker, and its flow runs inherit it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from deployments.config import PROJECT_DIR


def worker_command(pool: str, *, name: str | None = None, limit: int | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool,
           "--type", "process"]
    if name:
        cmd += ["--name", name]
    if limit:
        cmd += ["--limit", str(limit)]
    return cmd


def worker_env(*, project_dir: Path | str | None = None, gpu: str | None = None,
               base: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: the checkout its runs execute in, and its GPU if any."""
    env = dict(os.environ if base is None else base)
    env["REELFLOW_PROJECT_DIR"] = str(Path(project_dir or PROJECT_DIR).resolve())
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    root = str(Path(env["REELFLOW_PROJECT_DIR"]))
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:  # flows import `flows`, `tasks`, `reelflow` from the checkout
        env["PYTHONPATH"] = os.pathsep.join([root, *paths])
    return env
