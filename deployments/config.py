"""The `reelflow:` section of prefect.yaml: the infrastructure the deployments rely on.

Prefect ignores unknown top-level keys in prefect.yaml, so pools, limits and notifications live
beside the deployments they serve. `{{ $VAR }}` placeholders are filled from the environment of
whoever runs `reelflow deploy` (an unset variable becomes an empty string).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

PROJECT_DIR = Path(__file__).resolve().parents[1]
PREFECT_FILE = PROJECT_DIR / "prefect.yaml"


class WorkPoolSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    type: Literal["process"] = "process"
    description: str = ""


class ConcurrencyLimitSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    limit: int = Field(ge=1)


class NotificationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook_url: str = ""
    block: str = "reelflow-gates"
    automation: str = "reelflow-gate-waiting"
    events: list[str] = Field(
        default_factory=lambda: ["prefect.flow-run.Paused", "prefect.flow-run.Suspended"]
    )


class OpsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    work_pools: list[WorkPoolSpec] = Field(default_factory=list)
    concurrency_limits: list[ConcurrencyLimitSpec] = Field(default_factory=list)
    notifications: NotificationSpec = Field(default_factory=NotificationSpec)
    crashed_after_seconds: int = Field(default=90, ge=45)
    """A flow run silent this long (workers send a heartbeat every 30 s) is marked Crashed."""


def read_prefect_file(path: Path | str = PREFECT_FILE) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def load_ops_config(path: Path | str = PREFECT_FILE) -> OpsConfig:
    """The `reelflow:` section with `{{ $VAR }}` filled from this process's environment."""
    from prefect.utilities.templating import apply_values

    section = read_prefect_file(path).get("reelflow") or {}
    return OpsConfig.model_validate(apply_values(section, dict(os.environ)))
