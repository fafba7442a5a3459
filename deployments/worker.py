"""How a reelflow worker is started: a Prefect process worker.

The code comes from the deployment's pull step (deployments/pull.py): the bundle `reelflow
deploy` uploaded, unpacked under the worker's `$REELFLOW_HOME/code/`; so a worker needs only the
installed package, the Prefect API URL (+ auth string) and the S3 settings. Without a bundle the
runs execute the checkout named by `$REELFLOW_PROJECT_DIR` (set here when there is one). A GPU
worker serves exactly one GPU: `CUDA_VISIBLE_DEVICES` is set per worker, and its runs inherit it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from deployments.automations import HEARTBEAT_SECONDS
from deployments.config import PROJECT_DIR
from reelflow.devstack import CLIENT_RETRY_ENV
from reelflow.store.settings import ENV_HOME, reelflow_home


def worker_command(pool: str, *, name: str | None = None, limit: int | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool,
           "--type", "process"]
    if name:
        cmd += ["--name", name]
    if limit:
        cmd += ["--limit", str(limit)]
    return cmd


def _checkout(project_dir: Path | str | None) -> Path | None:
    """The checkout runs fall back to: the one given, else this package's if it is one."""
    if project_dir is not None:
        return Path(project_dir).resolve()
    return PROJECT_DIR if (PROJECT_DIR / "prefect.yaml").is_file() else None


def worker_env(*, project_dir: Path | str | None = None, gpu: str | None = None,
               base: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: its GPU, an absolute REELFLOW_HOME (flow runs start in temporary
    directories: bundles are unpacked under it), and the fallback checkout if there is one."""
    env = dict(os.environ if base is None else base)
    home = env.get(ENV_HOME) or reelflow_home(Path.cwd() / ".reelflow")
    env[ENV_HOME] = str(Path(home).expanduser().resolve())
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    # Heartbeats let the crashed-run automation (deployments/automations.py) notice a dead worker.
    env.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_SECONDS))
    for name, value in CLIENT_RETRY_ENV.items():  # ride out a Prefect server restart
        env.setdefault(name, value)
    checkout = _checkout(project_dir)
    if checkout is not None:
        env["REELFLOW_PROJECT_DIR"] = str(checkout)
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if str(checkout) not in paths:  # fallback runs import the checkout's packages
            env["PYTHONPATH"] = os.pathsep.join([str(checkout), *paths])
    return env
