"""Loading a storyboard file: YAML or JSON in, a validated Storyboard out, or one line per
problem in the `file:line field.path: message` form the CLI prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from reelflow.errors import InputError
from reelflow.storyboard.model import Storyboard

_FastLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

class StoryboardError(InputError, ValueError):
    """Every problem in a storyboard file, one line each: `file:line field.path: message`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _line_index(text: str) -> dict[tuple[Any, ...], int]:
    """Map every field path in a YAML/JSON document to its 1-based line number."""
    index: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        index[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value
                index[(*path, key)] = key_node.start_mark.line + 1
                walk(value_node, (*path, key))
                index[(*path, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return index


def _format_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(root)"


def _message(error: dict[str, Any]) -> str:
    kind, ctx, msg = error["type"], error.get("ctx") or {}, error["msg"]
    if kind == "greater_than":
        return f"must be > {ctx['gt']:g}"
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']:g}"
    if kind == "less_than_equal":
        return f"must be <= {ctx['le']:g}"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required"
    if kind == "string_pattern_mismatch" and "a-z0-9" in str(ctx.get("pattern", "")):
        return "must be a slug: lowercase letters, digits and dashes"
    return msg.removeprefix("Value error, ")


def parse_storyboard(text: str, source: str = "<storyboard>") -> Storyboard:
    """Parse YAML or JSON text; raise StoryboardError with `source:line path: message` lines."""
    try:
        data = yaml.load(text, Loader=_FastLoader)  # libyaml when present: 8x on long boards
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise StoryboardError([f"{source}{line} (syntax): {problem}"]) from None
    if not isinstance(data, dict):
        raise StoryboardError([f"{source}:1 (root): must be a mapping of storyboard fields"])
    try:
        return Storyboard.model_validate(data)
    except ValidationError as exc:
        lines = _line_index(text)
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            # walk up until a path with a known line (missing keys have none of their own)
            probe = loc
            while probe and probe not in lines:
                probe = probe[:-1]
            line = lines.get(probe, 1)
            problems.append(f"{source}:{line} {_format_path(loc)}: {_message(error)}")
        raise StoryboardError(problems) from None


def load_storyboard(path: str | Path) -> Storyboard:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StoryboardError([f"{path}: cannot read: {exc.strerror}"]) from None
    return parse_storyboard(text, source=path.name)


def save_storyboard(storyboard: Storyboard, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix == ".json":
        path.write_text(storyboard.model_dump_json(indent=2), encoding="utf-8")
    else:
        path.write_text(storyboard.to_yaml(), encoding="utf-8")
    return path


def json_schema() -> dict[str, Any]:
    return Storyboard.model_json_schema()
