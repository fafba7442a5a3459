"""What every command group shares: exit codes, the one-line refusal, the bucket, and the click
parameter types that turn option text into values (refusing bad text as exit 2)."""

from __future__ import annotations

import sys
from typing import Any

import click

EXIT_INVALID = 2


def fail(message: str, code: int = 1) -> int:
    """Print `reelflow: MESSAGE` on stderr and return the exit code."""
    print(f"reelflow: {message}", file=sys.stderr)
    return code


def debugging(ctx: click.Context) -> bool:
    """Whether `--debug` (or REELFLOW_DEBUG=1) asked for tracebacks (`main()` decides)."""
    return bool((ctx.find_root().obj or {}).get("debug"))


def artifact_store():  # type: ignore[no-untyped-def]
    """The bucket the environment (or the local stack's file) configures."""
    from reelflow.store.artifacts import ArtifactStore
    from reelflow.store.settings import S3Settings

    return ArtifactStore(S3Settings.from_env())


class Number(click.ParamType):
    """A whole or decimal number, refused as `invalid int value: 'x'`."""

    def __init__(self, kind: type[int] | type[float]) -> None:
        self.kind = kind
        self.name = kind.__name__

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self.kind(value)
        except (TypeError, ValueError):
            self.fail(f"invalid {self.name} value: {value!r}", param, ctx)


class Port(click.ParamType):
    """A TCP port a local server may listen on (1024-65535)."""

    name = "port"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            port = int(value)
        except (TypeError, ValueError):
            self.fail(f"not a port number: {value!r}", param, ctx)
        if not 1024 <= port <= 65535:
            self.fail(f"port {port} is outside 1024-65535", param, ctx)
        return port


class BasePort(click.ParamType):
    """`N` (the first of the stack's ports: every port is N + offset) or `auto` (a free block)."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from reelflow import devstack

        try:
            return devstack.parse_base_port(str(value))
        except devstack.StackError:
            self.fail(f"expected a port number ({devstack.MIN_BASE_PORT}-"
                      f"{devstack.MAX_BASE_PORT}) or `auto`, got {value!r}", param, ctx)


class ShotValue(click.ParamType):
    """`SHOT=VALUE` (`--pick s01=2`, `--reject s02="too dark"`): a (shot, value) pair, the value
    converted by `kind`."""

    def __init__(self, kind: type[int] | type[float] | type[str] = str) -> None:
        self.kind = kind
        self.name = "shot=value"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        option = param.opts[0] if param is not None else "SHOT=VALUE"
        shot, sep, rest = str(value).partition("=")
        if not sep or not shot:
            raise click.UsageError(f"{option} '{value}': expected SHOT=VALUE", ctx)
        try:
            return shot, self.kind(rest)
        except ValueError:
            what = "a number" if self.kind is float else "a whole number"
            raise click.UsageError(f"{option} {shot}: expected {what}, got {rest!r}",
                                   ctx) from None


WHOLE = Number(int)
DECIMAL = Number(float)
PORT = Port()
BASE_PORT = BasePort()
APPROVALS = click.Choice(["manual", "auto", "quality-gate"])
