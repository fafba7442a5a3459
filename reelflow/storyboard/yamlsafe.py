"""A bounded YAML/JSON reader for untrusted storyboards.

A storyboard comes from a user, an LLM or the bucket's batch queue, so reading it must cost little
whatever it holds: the text is capped in size, the node graph is measured *before* anything is
built from it (a 1 KB alias bomb expands to billions of nodes; we count each distinct node once and
refuse the document when its expanded size or depth passes a limit), duplicate keys are refused
instead of "last one wins", and the line index never walks an aliased node twice.
"""

from __future__ import annotations

from typing import Any

import yaml

from reelflow.errors import InputError

MAX_BYTES = 1 << 20
"""1 MiB: a 500-shot storyboard is ~150 KB."""
MAX_NODES = 200_000
"""Nodes after alias expansion (what the loaded data would hold)."""
MAX_DEPTH = 64

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 8x on long boards


class YamlLimitError(InputError):
    """The document is too big, too deep, not UTF-8 or has duplicate keys: `source:line ...`."""


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """SafeLoader that refuses duplicate keys (merge keys `<<` may still override)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if isinstance(key_node, yaml.ScalarNode):
                key = key_node.value
                if key in seen:
                    raise _Duplicate(key, key_node.start_mark.line + 1, seen[key])
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


class _Duplicate(Exception):
    def __init__(self, key: str, line: int, first: int) -> None:
        self.key, self.line, self.first = key, line, first


def decode(data: bytes, source: str) -> str:
    """UTF-8 text of a storyboard file, or one line saying where it is not."""
    if len(data) > MAX_BYTES:
        raise YamlLimitError(
            f"{source}: file too large ({len(data)} bytes; the limit is {MAX_BYTES} bytes)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise YamlLimitError(
            f"{source}:{line} (encoding): not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); save the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


def _measure(root: yaml.Node, source: str) -> None:
    """Expanded node count and depth, each distinct node visited once (aliases are shared)."""
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    active: set[int] = set()

    def visit(node: yaml.Node) -> tuple[int, int]:
        key = id(node)
        if key in sizes:
            return sizes[key], depths[key]
        if key in active:
            raise YamlLimitError(
                f"{source}:{node.start_mark.line + 1} (syntax): recursive alias is not allowed"
            )
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                children += [k, v]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        active.add(key)
        size, depth = 1, 0
        for child in children:
            child_size, child_depth = visit(child)
            size += child_size
            depth = max(depth, child_depth)
            if size > MAX_NODES:
                break
        active.discard(key)
        depth += 1
        sizes[key], depths[key] = size, depth
        if size > MAX_NODES:
            raise YamlLimitError(
                f"{source}:{node.start_mark.line + 1} (syntax): document expands to more than "
                f"{MAX_NODES} nodes (aliases count each time they are used); the limit is "
                f"{MAX_NODES}"
            )
        if depth > MAX_DEPTH:
            raise YamlLimitError(
                f"{source}:{node.start_mark.line + 1} (syntax): nested deeper than {MAX_DEPTH} "
                f"levels; the limit is {MAX_DEPTH}"
            )
        return size, depth

    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, MAX_DEPTH * 4 + 200))
    try:
        visit(root)
    except RecursionError:
        raise YamlLimitError(
            f"{source}: (syntax): nested deeper than {MAX_DEPTH} levels; the limit is {MAX_DEPTH}"
        ) from None
    finally:
        sys.setrecursionlimit(limit)


def compose(text: str, source: str) -> yaml.Node | None:
    """The node graph, measured against the limits; YAML syntax errors as one line."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise YamlLimitError(f"{source}: file too large (the limit is {MAX_BYTES} bytes)")
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise _syntax(exc, source) from None
    except RecursionError:
        raise YamlLimitError(
            f"{source}: (syntax): nested deeper than {MAX_DEPTH} levels; the limit is {MAX_DEPTH}"
        ) from None
    finally:
        loader.dispose()
    if root is not None:
        _measure(root, source)
    return root


def load(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """(data, node graph): the data built from a graph that passed the limits."""
    root = compose(text, source)
    if root is None:
        return None, None
    loader = _Loader("")
    try:
        return loader.construct_document(root), root
    except _Duplicate as dup:
        raise YamlLimitError(
            f"{source}:{dup.line} {dup.key}: duplicate key (first at line {dup.first})"
        ) from None
    except yaml.YAMLError as exc:
        raise _syntax(exc, source) from None
    finally:
        loader.dispose()


def _syntax(exc: yaml.YAMLError, source: str) -> YamlLimitError:
    mark = getattr(exc, "problem_mark", None)
    line = f":{mark.line + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return YamlLimitError(f"{source}{line} (syntax): {problem}")


def line_index(root: yaml.Node | None) -> dict[tuple[Any, ...], int]:
    """Every field path to its 1-based line; an aliased node is walked once, at its anchor."""
    index: dict[tuple[Any, ...], int] = {}
    seen: set[int] = set()

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        index.setdefault(path, node.start_mark.line + 1)
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value
                walk(value_node, (*path, key))
                index[(*path, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return index
