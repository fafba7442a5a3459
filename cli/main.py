"""The `reelflow` command: every command group registered on one click group, and `main()`, the
one place an error becomes one line on stderr.

Heavy imports (Prefect, torch, diffusers) happen inside the commands that need them, so that
`reelflow validate` answers instantly and never touches a server.
"""

from __future__ import annotations

import os
import sys

import click

from cli import characters, lineage, operations, runs, stack, storyboard
from cli.common import EXIT_INVALID, fail
from cli.console import api_url, first_line, prefect_unreachable
from reelflow.errors import ReelflowError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, expose_value=False,
              help="show the traceback of an error (also REELFLOW_DEBUG=1); "
              "accepted anywhere on the line")
def reelflow() -> None:
    """A reproducible, resumable, reviewable production pipeline for AI short films."""


for group in (storyboard, characters, stack, runs, operations, lineage):
    group.register(reelflow)


def _usage_line(exc: click.UsageError) -> str:
    """`reelflow render: argument --approval: ... (see reelflow render --help)`."""
    where = exc.ctx.command_path if exc.ctx is not None else "reelflow"
    if isinstance(exc, click.exceptions.NoSuchCommand) and exc.ctx is not None:
        known = ", ".join(exc.ctx.command.list_commands(exc.ctx))  # type: ignore[attr-defined]
        message = f"invalid choice: {exc.command_name!r} (choose from {known})"
    elif (isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter)
          and exc.param is not None):
        name = " / ".join(exc.param.opts) if isinstance(exc.param, click.Option) \
            else exc.param.human_readable_name
        message = f"argument {name}: {exc.message}"
    else:
        message = exc.format_message()
    return f"{where}: {message.splitlines()[0]} (see {where} --help)"


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's to fix: shown as one line, not a traceback."""
    from reelflow.store.artifacts import StoreError
    from reelflow.store.settings import SettingsError

    errors: list[type[BaseException]] = [SettingsError, StoreError]
    try:
        from reelflow.imaging.models import LoraError, ModelLoadError, ModelNotFoundError

        errors += [LoraError, ModelLoadError, ModelNotFoundError]
    except ImportError:  # imaging is optional for validate/schema
        pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    """Run a command; every error is one line on stderr (`--debug` or REELFLOW_DEBUG=1 for the
    traceback): exit 2 for bad usage or input, 1 for a failure, 130 when interrupted."""
    in_process = argv is not None  # called in-process (tests): never os._exit
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("REELFLOW_DEBUG", "") not in ("", "0")
    argv = [arg for arg in argv if arg != "--debug"]
    try:
        code = reelflow.main(argv, prog_name="reelflow", standalone_mode=False,
                             obj={"debug": debug})
        return code if isinstance(code, int) else 0
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()
        return EXIT_INVALID
    except click.UsageError as exc:
        print(_usage_line(exc), file=sys.stderr)
        return EXIT_INVALID
    except click.ClickException as exc:
        return fail(exc.format_message(), exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        return fail("interrupted", 130)
    except ReelflowError as exc:
        if debug:
            raise
        problems = getattr(exc, "problems", None)  # a storyboard's: `file:line field: message`
        if not problems:
            return fail(first_line(exc), exc.exit_code)
        for problem in problems:
            print(problem, file=sys.stderr)
        return exc.exit_code
    except _expected_errors() as exc:
        if debug:
            raise
        return fail(first_line(exc))
    except Exception as exc:
        if debug:
            raise
        if not prefect_unreachable(exc):
            return fail(f"unexpected {type(exc).__name__}: {first_line(exc)} "
                        "(run with --debug for the traceback)")
        code = fail(f"the Prefect API at {api_url()} stopped answering "
                    f"({type(exc).__name__}: {first_line(exc)}) and did not come back "
                    "within the client's retries; is the server up? (`reelflow status`)")
        if in_process:
            return code
        # The real command: Prefect's exit hooks would now try, for minutes, to send queued
        # events and logs to the server that is gone. Nothing more can reach it: stop here.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
