"""Prefect on the command line: a failed task or flow prints its one-line reason rather than
Prefect's traceback, a Prefect server that went away is recognised (and said in one line), and
the event dumps Prefect logs while the server is away stay off the console."""

from __future__ import annotations

import copy
import logging
import os
from typing import Any

import click

from cli.common import debugging
from reelflow.errors import ReelflowError


class PrefectCommand(click.Command):
    """A command that starts or reads flow runs. Before its body runs (and so before Prefect's
    first import reads its settings) it points Prefect at the local stack and quiets the console;
    with `--debug` the console is left as Prefect made it."""

    def invoke(self, ctx: click.Context) -> Any:
        if not debugging(ctx):
            from cli.stack import use_local_stack

            use_local_stack()
            quiet_console_tracebacks()
        return super().invoke(ctx)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def _unreachable_errors() -> tuple[type[BaseException], ...]:
    import httpx

    return (httpx.TransportError,)


def prefect_unreachable(exc: BaseException) -> bool:
    """A network error of a request to the Prefect API (not, say, the LLM's): what is left once
    Prefect's client has retried (devstack.CLIENT_RETRY_ENV)."""
    import httpx

    if not isinstance(exc, httpx.TransportError):
        return False
    try:
        url = exc.request.url
    except RuntimeError:  # no request attached
        return False
    api = httpx.URL(api_url()) if api_url().startswith("http") else None
    return api is not None and (url.host, url.port) == (api.host, api.port)


def api_url() -> str:
    """The Prefect API this process talks to, for messages."""
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        try:
            from prefect.settings import PREFECT_API_URL

            url = PREFECT_API_URL.value()
        except Exception:  # noqa: BLE001 - only for the message
            url = None
    return url or "(no PREFECT_API_URL)"


class _QuietKnownErrors:
    """Wraps a console handler's `format`: a ReelflowError logged with its traceback (Prefect
    logs every failed task and flow that way) prints as its one-line message on the console.
    The record itself is untouched, so the run's log in Prefect keeps the full traceback."""

    def __init__(self, format_record):  # type: ignore[no-untyped-def]
        self.format_record = format_record

    def __call__(self, record: logging.LogRecord) -> str:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (ReelflowError, *_unreachable_errors())):
            record = copy.copy(record)
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return self.format_record(record)


def _not_an_event_dump(record: logging.LogRecord) -> bool:
    """While the server is away, Prefect logs each event it could not send as an ERROR holding
    the whole event (kilobytes); its `Unable to connect to ...` warning already says it."""
    return not (record.msg == "Service %r failed to process item %r"
                and record.args and record.args[0] == "EventsWorker")


def quiet_console_tracebacks() -> None:
    """Install _QuietKnownErrors on the console handlers Prefect set up (idempotent); keep event
    dumps off the console, and Prefect's API log handler from printing its own failures
    ("--- Error logging to API ---": the CLI's last line says the server is gone)."""
    import prefect.main  # noqa: F401  (configures Prefect's logging, as any flow import does)

    logging.raiseExceptions = False

    loggers = [logging.getLogger()] + [
        logger for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if (isinstance(handler, logging.StreamHandler)
                    and not isinstance(handler, logging.FileHandler)
                    and not isinstance(handler.format, _QuietKnownErrors)):
                handler.format = _QuietKnownErrors(handler.format)  # type: ignore[method-assign]
                handler.addFilter(_not_an_event_dump)
