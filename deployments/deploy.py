"""`reelflow deploy`: everything prefect.yaml relies on, then the deployments, idempotently.

Order matters: work pools and the strict `gpu` limit exist before a run can need them, the results
block before a deployed run persists its first task, the webhook block before the automation that
names it, the code bundle (deployments/bundle.py) in the bucket before a pull step fetches it. The
deployments themselves are applied by `prefect deploy --all` on prefect.yaml (its pull step filled
with the bundle's key and sha256), so the file stays the single source of truth. Running it twice
changes nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel, Field

from reelflow.errors import ReelflowError

DEPLOY_TIMEOUT = 600


class DeployError(ReelflowError, RuntimeError):
    """A step of `reelflow deploy` failed; the message says which and why."""


class DeployReport(BaseModel):
    api_url: str
    work_pools: dict[str, str] = Field(default_factory=dict)
    concurrency_limits: dict[str, str] = Field(default_factory=dict)
    results_block: str = ""
    bundle: str = ""
    """Key of the code bundle the deployments pull (empty: workers run their checkout)."""
    bundle_sha256: str = ""
    notifications: str = "off"
    crashed_runs: str = ""
    """The crashed-run (zombie) automation: 'created' or 'updated'."""
    deployments: dict[str, str] = Field(default_factory=dict)
    """'flow/deployment' -> id, read back from the server."""


def _prefect_deploy(prefect_file: Path, project_dir: Path) -> str:
    """`prefect deploy --all` on the file, non-interactive; returns its output."""
    env = dict(os.environ)
    env.setdefault("PREFECT_CLI_PROMPT", "false")
    cmd = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all",
           "--prefect-file", str(prefect_file)]
    done = subprocess.run(cmd, cwd=project_dir, env=env, capture_output=True, text=True,
                          timeout=DEPLOY_TIMEOUT, check=False)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise DeployError(f"prefect deploy failed (exit {done.returncode}):\n{output[-4000:]}")
    return output


def _with_bundle(prefect_file: Path, key: str, sha256: str, out_dir: Path) -> Path:
    """A copy of prefect.yaml whose `fetch_bundle` pull steps name this bundle."""
    import yaml

    from deployments.config import read_prefect_file

    data = read_prefect_file(prefect_file)
    steps = data.get("pull") or []
    found = False
    for step in steps:
        args = step.get("deployments.pull.fetch_bundle") if isinstance(step, dict) else None
        if isinstance(args, dict):
            args.update(key=key, sha256=sha256)
            found = True
    if not found:
        raise DeployError(f"{prefect_file}: no `deployments.pull.fetch_bundle` pull step to "
                          "fill with the code bundle")
    out = out_dir / prefect_file.name
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


def _deployment_names(prefect_file: Path) -> list[str]:
    from deployments.config import read_prefect_file

    data = read_prefect_file(prefect_file)
    out = []
    for item in data.get("deployments") or []:
        flow_name = item["entrypoint"].rsplit(":", 1)[1].replace("_", "-")
        out.append(f"{flow_name}/{item['name']}")
    return out


def deploy(prefect_file: Path | str | None = None, *, notify_url: str | None = None,
           apply_deployments: bool = True, bundle: bool = True) -> DeployReport:
    """Pools, limits, blocks, the gate automation, the code bundle (unless `bundle=False`:
    workers then run the checkout in their REELFLOW_PROJECT_DIR), then the deployments."""
    import tempfile

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    from deployments.automations import ensure_gate_notifications, ensure_zombie_automation
    from deployments.bundle import upload_bundle
    from deployments.config import PREFECT_FILE, load_ops_config
    from deployments.infra import ensure_concurrency_limit, ensure_work_pool
    from tasks.common import ensure_results_block, get_store

    path = Path(prefect_file or PREFECT_FILE).resolve()
    config = load_ops_config(path)
    if notify_url is not None:
        config.notifications.webhook_url = notify_url
    api_url = PREFECT_API_URL.value()
    if not api_url:
        raise DeployError("no Prefect server: run `reelflow up` or set PREFECT_API_URL")
    report = DeployReport(api_url=api_url)
    ui_url = PREFECT_UI_URL.value() or api_url.removesuffix("/api")
    with get_client(sync_client=True) as client:
        for pool in config.work_pools:
            report.work_pools[pool.name] = ensure_work_pool(client, pool)
        for limit in config.concurrency_limits:
            report.concurrency_limits[limit.name] = ensure_concurrency_limit(client, limit)
        report.results_block = ensure_results_block()
        report.notifications = ensure_gate_notifications(client, config.notifications, ui_url)
        grace = int(os.environ.get("REELFLOW_CRASHED_AFTER_SECONDS") or
                    config.crashed_after_seconds)
        report.crashed_runs = ensure_zombie_automation(client, grace)
        if apply_deployments:
            with tempfile.TemporaryDirectory(prefix="reelflow-deploy-") as tmp:
                deploy_file = path
                if bundle:
                    code = upload_bundle(get_store(), path.parent)
                    report.bundle, report.bundle_sha256 = code.key, code.sha256
                    deploy_file = _with_bundle(path, code.key, code.sha256, Path(tmp))
                _prefect_deploy(deploy_file, path.parent)
            for name in _deployment_names(path):
                report.deployments[name] = str(client.read_deployment_by_name(name).id)
    return report
