"""Connection settings for the artifact bucket (S3 / MinIO / SeaweedFS).

Settings come from `REELFLOW_S3_*` environment variables, or, when no endpoint is set there, from
the local stack's state file (`.reelflow/stack.json`, written by `reelflow up`). The secret key is
a `SecretStr` so it never shows up in a repr, a log line or an exception message.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from reelflow.errors import ConfigError

ENV_ENDPOINT = "REELFLOW_S3_ENDPOINT"
ENV_ACCESS_KEY = "REELFLOW_S3_ACCESS_KEY"
ENV_SECRET_KEY = "REELFLOW_S3_SECRET_KEY"
ENV_BUCKET = "REELFLOW_S3_BUCKET"
ENV_SECURE = "REELFLOW_S3_SECURE"
ENV_REGION = "REELFLOW_S3_REGION"
ENV_HOME = "REELFLOW_HOME"

STACK_FILE_NAME = "stack.json"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ConfigError, RuntimeError):
    """Raised when the S3 connection cannot be configured; the message is one actionable line."""


def reelflow_home(root: Path | str | None = None) -> Path:
    """The local state directory: `root`, else `$REELFLOW_HOME`, else `./.reelflow`."""
    if root is not None:
        return Path(root)
    env = os.environ.get(ENV_HOME)
    return Path(env) if env else Path.cwd() / ".reelflow"


def stack_file(root: Path | str | None = None) -> Path:
    """Path of the stack state file written by `reelflow up`."""
    return reelflow_home(root) / STACK_FILE_NAME


def _parse_bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise SettingsError(f"{name}={value!r} is not a boolean (use true/false)")


class S3Settings(BaseModel):
    """Where artifacts live. `endpoint` is `host:port` without a scheme, as the minio SDK wants."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint: str = "127.0.0.1:8333"
    access_key: str = ""
    secret_key: SecretStr = Field(default=SecretStr(""), repr=False)
    bucket: str = "reelflow"
    secure: bool = False
    region: str = "us-east-1"

    @property
    def scheme(self) -> str:
        return "https" if self.secure else "http"

    @property
    def endpoint_url(self) -> str:
        """The endpoint as a URL (`http://127.0.0.1:8333`), for clients that want one."""
        return f"{self.scheme}://{self.endpoint}"

    def with_bucket(self, bucket: str) -> S3Settings:
        """A copy pointing at another bucket (tests use one bucket per test)."""
        return self.model_copy(update={"bucket": bucket})

    @classmethod
    def from_stack_file(cls, path: Path | str) -> S3Settings:
        """Read the `s3` section of a stack state file written by `reelflow up`."""
        path = Path(path)
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            raise SettingsError(f"stack file {path} does not exist; run `reelflow up`") from None
        except (OSError, ValueError) as err:
            raise SettingsError(
                f"stack file {path} is unreadable ({type(err).__name__})"
            ) from None
        s3 = data.get("s3") or {}
        if not s3.get("endpoint"):
            raise SettingsError(
                f"stack file {path} has no S3 endpoint; set {ENV_ENDPOINT} or run `reelflow up`"
            )
        fields = {k: s3[k] for k in cls.model_fields if k in s3}
        try:
            return cls(**fields)
        except ValidationError as err:
            # pydantic errors can echo input values: report only the field names.
            bad = ", ".join(".".join(map(str, e["loc"])) for e in err.errors())
            raise SettingsError(f"stack file {path} has invalid S3 fields: {bad}") from None

    @classmethod
    def from_env(cls, root: Path | str | None = None) -> S3Settings:
        """Settings from `REELFLOW_S3_*`, falling back to the local stack file under `root`.

        `REELFLOW_S3_BUCKET` / `_SECURE` / `_REGION` override the stack file's values too.
        """
        env = os.environ
        endpoint = env.get(ENV_ENDPOINT, "").strip()
        if endpoint:
            endpoint = endpoint.removeprefix("http://").removeprefix("https://").rstrip("/")
            access = env.get(ENV_ACCESS_KEY, "")
            secret = env.get(ENV_SECRET_KEY, "")
            missing = [n for n, v in ((ENV_ACCESS_KEY, access), (ENV_SECRET_KEY, secret)) if not v]
            if missing:
                raise SettingsError(f"{ENV_ENDPOINT} is set but {' and '.join(missing)} is not")
            base = cls(endpoint=endpoint, access_key=access, secret_key=SecretStr(secret))
        else:
            path = stack_file(root)
            if not path.exists():
                raise SettingsError(
                    f"no S3 configured: set {ENV_ENDPOINT}, {ENV_ACCESS_KEY} and {ENV_SECRET_KEY}, "
                    f"or run `reelflow up` (looked for {path})"
                )
            base = cls.from_stack_file(path)
        update: dict[str, Any] = {}
        if env.get(ENV_BUCKET):
            update["bucket"] = env[ENV_BUCKET]
        if env.get(ENV_SECURE) is not None:
            update["secure"] = _parse_bool(ENV_SECURE, env[ENV_SECURE])
        if env.get(ENV_REGION):
            update["region"] = env[ENV_REGION]
        return base.model_copy(update=update) if update else base

    def to_stack_dict(self) -> dict[str, Any]:
        """Plain dict including the secret, for the 0600 stack file only."""
        return {
            "endpoint": self.endpoint,
            "access_key": self.access_key,
            "secret_key": self.secret_key.get_secret_value(),
            "bucket": self.bucket,
            "secure": self.secure,
            "region": self.region,
        }
