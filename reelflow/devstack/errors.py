"""The stack's errors: one line for the user, and the port race the free-port choice retries."""

from __future__ import annotations

from reelflow.errors import StageError


class StackError(StageError, RuntimeError):
    """The stack could not be started or checked; the message says what to look at."""


class PortsTaken(StackError):
    """A port of the stack is held by another process (or was taken between our check and the
    server's bind): with a free-port choice, `up` picks another block and tries again."""
