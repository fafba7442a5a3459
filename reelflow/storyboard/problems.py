"""Problems in a storyboard file, one line each in the `file:line field.path: message` form the
CLI prints: the error type and its formatting, shared by loading (schema errors) and by the file
reference checks, so both point at lines the same way."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from reelflow.errors import InputError


class StoryboardError(InputError, ValueError):
    """Every problem in a storyboard file, one line each: `file:line field.path: message`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def format_path(loc: tuple[Any, ...]) -> str:
    """A field path as the storyboard reads: `shots[2].reference.image`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(root)"


def problem_lines(
    problems: Iterable[tuple[tuple[Any, ...], str]],
    lines: dict[tuple[Any, ...], int],
    source: str,
) -> list[str]:
    """`source:line path: message` for each (field path, message); ``lines`` maps field paths to
    line numbers (`yamlsafe.line_index`). A path with no line of its own (a missing key) takes
    the line of its nearest parent that has one."""
    out = []
    for loc, message in problems:
        probe = loc
        while probe and probe not in lines:
            probe = probe[:-1]
        out.append(f"{source}:{lines.get(probe, 1)} {format_path(loc)}: {message}")
    return out
