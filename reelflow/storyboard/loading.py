"""Loading a storyboard file: YAML or JSON in, a validated Storyboard out, or one line per
problem in the `file:line field.path: message` form the CLI prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reelflow.storyboard import yamlsafe
from reelflow.storyboard.files import check_references
from reelflow.storyboard.model import Storyboard
from reelflow.storyboard.problems import StoryboardError, problem_lines
from reelflow.storyboard.slugs import slugify

__all__ = [
    "StoryboardError",
    "decode_storyboard",
    "json_schema",
    "load_storyboard",
    "parse_storyboard",
    "save_storyboard",
]


def _message(error: dict[str, Any]) -> str:
    kind, ctx, msg = error["type"], error.get("ctx") or {}, error["msg"]
    if kind == "greater_than":
        return f"must be > {ctx['gt']:g}"
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']:g}"
    if kind == "less_than_equal":
        return f"must be <= {ctx['le']:g}"
    if kind in ("float_type", "int_type", "int_from_float"):
        got = error.get("input")
        shown = "true/false" if isinstance(got, bool) else type(got).__name__
        what = "an integer" if kind != "float_type" else "a number"
        return f"must be {what}, not {shown}"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required"
    if kind == "string_pattern_mismatch" and "a-z0-9" in str(ctx.get("pattern", "")):
        got = error.get("input")
        suggestion = slugify(got, fallback="") if isinstance(got, str) else ""
        if suggestion and not suggestion.startswith("-"):  # `春日短片` -> try `chun-ri-duan-pian`
            return f"must be a slug: lowercase letters, digits and dashes (try {suggestion!r})"
        return "must be a slug: lowercase letters, digits and dashes"
    return msg.removeprefix("Value error, ")


def _error_location(error: dict[str, Any]) -> tuple[Any, ...]:
    """The field path of an error; cross-reference checks carry theirs on the exception."""
    loc = tuple(error["loc"])
    cause = (error.get("ctx") or {}).get("error")
    extra = getattr(cause, "loc", None)
    return (*loc, *extra) if extra else loc


def _problems(error: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """(field path, message) of one validation error; the cross-reference check raises all of
    its problems as one error (RefErrors), listed here one by one, none merged away."""
    cause = (error.get("ctx") or {}).get("error")
    listed = getattr(cause, "problems", None)
    if listed:
        base = tuple(error["loc"])
        return [((*base, *problem.loc), str(problem)) for problem in listed]
    return [(_error_location(error), _message(error))]


def parse_storyboard(text: str, source: str = "<storyboard>") -> Storyboard:
    """Parse YAML or JSON text; raise StoryboardError with `source:line path: message` lines.

    The text is read with the bounded loader (size, alias expansion, depth, duplicate keys)."""
    try:
        data, root = yamlsafe.load(text, source)
    except yamlsafe.YamlLimitError as exc:
        raise StoryboardError([str(exc)]) from None
    if not isinstance(data, dict):
        raise StoryboardError([f"{source}:1 (root): must be a mapping of storyboard fields"])
    try:
        return Storyboard.model_validate(data)
    except ValidationError as exc:
        problems = [found for error in exc.errors() for found in _problems(error)]
        raise StoryboardError(
            problem_lines(problems, yamlsafe.line_index(root), source)
        ) from None


def decode_storyboard(data: bytes, source: str) -> str:
    """Bytes from a file or the bucket as text: size-capped, UTF-8 or one line saying where."""
    try:
        return yamlsafe.decode(data, source)
    except yamlsafe.YamlLimitError as exc:
        raise StoryboardError([str(exc)]) from None


def load_storyboard(path: str | Path, *, check_files: bool = True) -> Storyboard:
    """A storyboard file, validated, with its local file references confined to its folder (or
    REELFLOW_ALLOWED_DIRS) and present: a missing music file fails here, not minutes later."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(yamlsafe.MAX_BYTES + 1)
    except OSError as exc:
        raise StoryboardError([f"{path}: cannot read: {exc.strerror}"]) from None
    text = decode_storyboard(data, path.name)
    storyboard = parse_storyboard(text, source=path.name)
    if check_files:
        check_references(storyboard, text, path.name, base_dir=path.resolve().parent)
    return storyboard


def save_storyboard(storyboard: Storyboard, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix == ".json":
        path.write_text(storyboard.model_dump_json(indent=2), encoding="utf-8")
    else:
        path.write_text(storyboard.to_yaml(), encoding="utf-8")
    return path


def json_schema() -> dict[str, Any]:
    return Storyboard.model_json_schema()
