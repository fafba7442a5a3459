"""One base class for every error reelflow raises on purpose.

The CLI catches `ReelflowError` once and prints its message as one line (exit 2 for bad input,
1 for a failure), so a user never reads a traceback for a problem we could explain. Anything
else that escapes is a bug, and keeps its traceback (`--debug` shows it).
"""

from __future__ import annotations


class ReelflowError(Exception):
    """A failure reelflow can explain in one line; `exit_code` is what the CLI exits with."""

    exit_code = 1


class InputError(ReelflowError):
    """The user's input is wrong (a storyboard, a brief, an option, an answer): nothing ran."""

    exit_code = 2


class ConfigError(ReelflowError):
    """A setting, block, model or file the run needs is missing or unusable."""

    exit_code = 2


class StageError(ReelflowError):
    """A production step failed (ffmpeg, a model, the bucket) after the run started."""


class StoryboardSentBack(ReelflowError):
    """A reviewer sent the storyboard back at its gate: the run stops with the notes."""

    exit_code = 1

    def __init__(self, project: str, notes: str) -> None:
        self.project = project
        self.notes = notes
        super().__init__(
            f"storyboard {project} sent back for revision: {notes!r} (edit the storyboard, or "
            "configure an LLM endpoint to revise it, and run again)"
        )
