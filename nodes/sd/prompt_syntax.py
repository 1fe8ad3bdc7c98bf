"""Prompt syntax: weights in brackets, ``embedding:name`` and ``BREAK``, parsed into segments.

:func:`parse_prompt` turns prompt text into a flat list of :class:`Segment` values:
runs of text with one weight each, embedding references, and chunk breaks. The rules
(see ``docs/prompts.md`` for how they compare with ComfyUI and A1111):

* ``(text)`` multiplies the weight of ``text`` by 1.1, ``[text]`` by 1/1.1; groups
  nest, so ``((text))`` is 1.21.
* ``(text:1.3)`` gives ``text`` the weight 1.3, whatever the groups around it (as
  ComfyUI reads it); groups inside it multiply on top (``((a):2)``: ``a`` is 2.2).
* ``\\(``, ``\\)``, ``\\[``, ``\\]`` are the literal characters; any other backslash is
  kept as it is. A bracket without its partner is literal text too.
* ``embedding:name`` (at the start of a word) stands for the vectors of the embedding
  file ``name``, with the weight of the text around it.
* ``BREAK`` (upper case, a whole word) ends the current 75-token chunk.

Adjacent text runs of equal weight are merged, so a prompt without any of this syntax
is one segment holding the prompt exactly as written (and so tokenizes exactly as
diffusers tokenizes it). Nothing here needs torch or a tokenizer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

#: Weight factor of one pair of round brackets (and the inverse for square ones).
EMPHASIS = 1.1

_LEXER = re.compile(r"\\[()\[\]]|[()\[\]]|[^\\()\[\]]+|\\")
_EXPLICIT = re.compile(r"^(.*):\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*$", re.DOTALL)
_BREAK = re.compile(r"\s*\bBREAK\b\s*")
_EMBEDDING = re.compile(r"(?<![\w:])embedding:([^\s,()\[\]]+)")
_CLOSERS = {")": "(", "]": "["}


@dataclass(frozen=True)
class Segment:
    """A piece of a parsed prompt.

    ``kind`` is ``"text"`` (``text`` holds literal prompt text), ``"embedding"``
    (``text`` holds the embedding's name) or ``"break"`` (a ``BREAK``: start a new
    chunk). ``weight`` is the emphasis of the text or embedding (1.0: none).
    """

    text: str
    weight: float = 1.0
    kind: Literal["text", "embedding", "break"] = "text"


@dataclass
class _Group:
    """A matched bracket pair while parsing: the opener and what lies inside, in order."""

    opener: str
    children: list[str | _Group] = field(default_factory=list)


def parse_prompt(text: str) -> list[Segment]:
    """The segments of ``text``, in order (an empty list for an empty prompt)."""
    runs = _merge(_weigh(_tree(text)))
    segments: list[Segment] = []
    for run in runs:
        segments.extend(_split_run(run))
    return segments


def _tree(text: str) -> list[str | _Group]:
    """Match brackets into groups; unmatched brackets and escapes become plain text."""
    root = _Group("")
    stack = [root]
    for match in _LEXER.finditer(text):
        piece = match.group(0)
        if piece in ("(", "["):
            stack.append(_Group(piece))
        elif piece in _CLOSERS and stack[-1].opener == _CLOSERS[piece]:
            group = stack.pop()
            stack[-1].children.append(group)
        elif len(piece) == 2 and piece[0] == "\\":
            stack[-1].children.append(piece[1])
        else:
            stack[-1].children.append(piece)
    while len(stack) > 1:  # never closed: the opener was literal text after all
        group = stack.pop()
        stack[-1].children.extend([group.opener, *group.children])
    return root.children


def _explicit_weight(group: _Group) -> tuple[list[str | _Group], float | None]:
    """A round group's children without a trailing ``:number``, and that number (or None)."""
    if group.opener != "(":
        return group.children, None
    # The weight is the last ':' of the group's own text; adjacent text pieces (an escaped
    # bracket splits them) count as one.
    tail: list[str] = []
    for child in reversed(group.children):
        if not isinstance(child, str):
            break
        tail.insert(0, child)
    match = _EXPLICIT.match("".join(tail))
    if match is None:
        return group.children, None
    head = group.children[: len(group.children) - len(tail)]
    return [*head, match.group(1)] if match.group(1) else head, float(match.group(2))


def _weigh(children: list[str | _Group]) -> list[tuple[str, float]]:
    """Flatten the tree into (text, weight) runs, outer groups first (no recursion)."""
    runs: list[tuple[str, float]] = []
    stack: list[tuple[list[str | _Group], int, float]] = [(children, 0, 1.0)]
    while stack:
        items, index, weight = stack.pop()
        if index == len(items):
            continue
        stack.append((items, index + 1, weight))
        item = items[index]
        if isinstance(item, str):
            runs.append((item, weight))
            continue
        inner, explicit = _explicit_weight(item)
        if explicit is not None:
            stack.append((inner, 0, explicit))
        else:
            stack.append((inner, 0, weight * (EMPHASIS if item.opener == "(" else 1 / EMPHASIS)))
    return runs


def _merge(runs: list[tuple[str, float]]) -> list[tuple[str, float]]:
    merged: list[tuple[str, float]] = []
    for text, weight in runs:
        if not text:
            continue
        if merged and merged[-1][1] == weight:
            merged[-1] = (merged[-1][0] + text, weight)
        else:
            merged.append((text, weight))
    return merged


def _split_run(run: tuple[str, float]) -> list[Segment]:
    """One weighted run split at ``BREAK`` and ``embedding:name``."""
    text, weight = run
    out: list[Segment] = []
    for i, part in enumerate(_BREAK.split(text)):
        if i:
            out.append(Segment("", 1.0, "break"))
        position = 0
        for match in _EMBEDDING.finditer(part):
            if match.start() > position:
                out.append(Segment(part[position : match.start()], weight))
            out.append(Segment(match.group(1), weight, "embedding"))
            position = match.end()
        if position < len(part):
            out.append(Segment(part[position:], weight))
    return out


def embedding_names(text: str) -> list[str]:
    """The embedding names ``text`` refers to, in order of first use (no duplicates)."""
    return list(dict.fromkeys(s.text for s in parse_prompt(text) if s.kind == "embedding"))


__all__ = ["EMPHASIS", "Segment", "embedding_names", "parse_prompt"]
