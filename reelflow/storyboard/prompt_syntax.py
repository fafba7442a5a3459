"""Prompt weights in the A1111 syntax that creators coming from A1111 and ComfyUI write.

`(word:1.3)` sets a part's weight, `(word)` is 1.1, `[word]` is 1/1.1, nesting multiplies, and
`\\(` writes a literal parenthesis. Text only: counting tokens and showing a prompt use the plain
text; `reelflow/imaging/long_prompts.py` hands the weights to the text encoder.
"""

from __future__ import annotations

import re

from pydantic import BaseModel

#: A1111's factor for `(text)` and, inverted, for `[text]`
PAREN_WEIGHT = 1.1
_OPENER = {")": "(", "]": "["}
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*$")
#: a `+` or `-` that ends a word is compel's weight syntax (`car--`); a space keeps it text
_COMPEL_SUFFIX = re.compile(r"(?<=\w)([+-]+)(?=\s|,|$)")


class Fragment(BaseModel):
    text: str
    weight: float = 1.0


def parse_weighted(prompt: str) -> list[Fragment]:
    """Split a prompt in A1111 syntax into text fragments with their weights.

    A stray closing bracket is text and an unclosed group adds no weight: a prompt is prose, and
    is never refused for its punctuation.
    """
    fragments: list[Fragment] = []
    stack: list[tuple[str, int]] = []  # open bracket, index in `fragments` where its text starts
    text = ""

    def flush() -> None:
        nonlocal text
        if text:
            weight = 1.0
            for bracket, _ in stack:
                weight *= PAREN_WEIGHT if bracket == "(" else 1 / PAREN_WEIGHT
            fragments.append(Fragment(text=text, weight=weight))
            text = ""

    i = 0
    while i < len(prompt):
        ch = prompt[i]
        if ch == "\\" and i + 1 < len(prompt) and prompt[i + 1] in "()[]\\":
            text += prompt[i + 1]
            i += 2
            continue
        if ch in "([":
            flush()
            stack.append((ch, len(fragments)))
        elif ch in _OPENER and stack and stack[-1][0] == _OPENER[ch]:
            explicit = None
            if ch == ")" and ":" in text:
                head, _, tail = text.rpartition(":")
                match = _NUMBER.match(tail)
                if match:
                    text, explicit = head, float(match.group(1))
            flush()
            _, start = stack.pop()
            if explicit is not None:  # `(a (b):1.5)`: the explicit weight replaces the 1.1
                for fragment in fragments[start:]:
                    fragment.weight *= explicit / PAREN_WEIGHT
        else:
            text += ch
        i += 1
    # Unclosed brackets: their text keeps weight 1 (A1111 applies the weight only when closed).
    stack.clear()
    flush()
    merged: list[Fragment] = []
    for fragment in fragments:
        if merged and abs(merged[-1].weight - fragment.weight) < 1e-9:
            merged[-1].text += fragment.text
        else:
            merged.append(fragment)
    for fragment in merged:
        fragment.weight = round(fragment.weight, 4)
    return merged


def plain_text(prompt: str) -> str:
    """The prompt without weight syntax: what a tokenizer counts and what a reader sees."""
    return "".join(fragment.text for fragment in parse_weighted(prompt))


def is_weighted(prompt: str) -> bool:
    return any(fragment.weight != 1.0 for fragment in parse_weighted(prompt))


def to_compel(prompt: str) -> str:
    """The same prompt in compel's syntax: `(text)1.3`, literal parentheses escaped."""

    def escaped(text: str) -> str:
        text = text.replace("(", "\\(").replace(")", "\\)")
        return _COMPEL_SUFFIX.sub(r" \1", text)

    out = []
    for fragment in parse_weighted(prompt):
        if fragment.weight == 1.0:
            out.append(escaped(fragment.text))
        else:
            body = escaped(fragment.text.strip())
            if body:
                out.append(f"({body}){fragment.weight:g} ")
    return "".join(out).strip()


