"""The deployments' pull step: fetch the deployed code bundle, verify it, run from it.

Runs in every flow-run process a worker starts, before the flow is imported. With a bundle
(`reelflow deploy` fills `key` and `sha256` in): download it from the bucket (S3 settings from
`REELFLOW_S3_*` or the stack file), check its sha256 against the one baked into the deployment,
unpack it once per worker under `$REELFLOW_HOME/code/{sha256}/` and make that the working
directory and the first import path, so the run executes exactly the deployed code, on a machine
with no checkout. Without one (a plain `prefect deploy`): the checkout in `$REELFLOW_PROJECT_DIR`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

PURGE = ("flows", "tasks", "blocks", "reelflow")
"""Packages the step itself may have imported from the installed copy: dropped from
sys.modules so the flow imports them from the bundle."""

logger = logging.getLogger("reelflow.pull")


class BundleError(RuntimeError):
    """The code bundle is missing, corrupt, or not the one that was deployed."""


def _run_logger() -> Any:
    """The flow run's logger, so the lines reach the run's log in the UI: pull steps run before
    the run context exists, but the worker names the run in PREFECT__FLOW_RUN_ID."""
    run_id = os.environ.get("PREFECT__FLOW_RUN_ID")
    if run_id:
        try:
            from uuid import UUID

            from prefect.logging.loggers import flow_run_logger

            return flow_run_logger(flow_run_id=UUID(run_id))
        except Exception:  # noqa: BLE001 - an odd id: the module logger still has the lines
            pass
    return logger


def _code_root() -> Path:
    home = os.environ.get("REELFLOW_HOME") or str(Path.home() / ".reelflow")
    return Path(home).expanduser().resolve() / "code"


def _safe_extract(data: bytes, dest: Path) -> None:
    """Unpack regular files and directories only, each inside `dest` (no links, no `..`)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            target = (dest / member.name).resolve()
            if not (member.isfile() or member.isdir()) or not target.is_relative_to(dest):
                raise BundleError(f"bundle member {member.name!r} is not allowed")
        tar.extractall(dest, filter="data")


def fetch_bundle(key: str = "", sha256: str = "", project_dir: str = "") -> dict[str, str]:
    """Prefect pull step; returns {"directory": where the run executes}."""
    log = _run_logger()
    if not key:
        if not project_dir:
            raise BundleError("no code bundle in this deployment and no REELFLOW_PROJECT_DIR: "
                              "deploy with `reelflow deploy`")
        os.chdir(project_dir)
        log.info("code: checkout %s", project_dir)
        return {"directory": project_dir}
    if len(sha256) != 64:
        raise BundleError(f"deployment names bundle {key!r} without a sha256")
    dest = _code_root() / sha256
    if not (dest / ".complete").exists():
        from reelflow.store.artifacts import ArtifactStore
        from reelflow.store.settings import S3Settings

        data = ArtifactStore(S3Settings.from_env()).get_bytes(key)
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise BundleError(f"code bundle {key!r} has sha256 {actual[:12]}, the deployment "
                              f"expects {sha256[:12]}: refusing to run it")
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = Path(tempfile.mkdtemp(prefix=f".{sha256[:12]}-", dir=dest.parent))
        try:
            _safe_extract(data, tmp)
            (tmp / ".complete").write_text(sha256)
            try:
                tmp.rename(dest)  # atomic: a concurrent run on this worker may have won
            except OSError:
                if not (dest / ".complete").exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("code: bundle %s (sha256 %s) verified and unpacked into %s", key,
                 sha256[:12], dest)
    else:
        log.info("code: bundle sha256 %s already unpacked in %s", sha256[:12], dest)
    os.chdir(dest)
    if str(dest) not in sys.path:
        sys.path.insert(0, str(dest))
    for name in list(sys.modules):
        if name.split(".")[0] in PURGE:
            del sys.modules[name]
    return {"directory": str(dest)}
