"""ComfyUI's prompt syntax: ``(word:1.2)`` weights, ``\\(`` escapes and ``embedding:name`` words.

ComfyUI reads parentheses as emphasis: ``(word)`` multiplies the weight by 1.1,
``(word:1.3)`` sets it, nesting multiplies, and ``\\(`` / ``\\)`` are literal brackets.
:func:`weighted_segments` splits a prompt that way; a prompt whose weights are all 1.0 is
plain text (:func:`plain_text`) and encodes as diffusers does. ``embedding:name`` (a
whole word, trailing commas not part of the name) names a textual-inversion file in the
embedding folders (:func:`embedding_words`).
"""

from __future__ import annotations

import re

_OPEN, _CLOSE = "\x00\x02", "\x00\x01"  # escaped brackets while parsing, as ComfyUI does
_EMBEDDING = re.compile(r"(?<!\S)embedding:(\S+)")


class PromptSyntaxError(ValueError):
    """Unbalanced parentheses: the message says where."""


def weighted_segments(text: str) -> list[tuple[str, float]]:
    """``text`` as (segment, weight) pieces with ComfyUI's emphasis rules; escapes undone in the pieces."""
    escaped = text.replace("\\(", _OPEN).replace("\\)", _CLOSE)
    return [(_unescape(piece), weight) for piece, weight in _parse(escaped, 1.0) if piece]


def plain_text(text: str) -> str:
    """``text`` without emphasis syntax; raises :class:`PromptSyntaxError` if any piece's weight is not 1.0."""
    pieces = weighted_segments(text)
    weighted = [(piece, weight) for piece, weight in pieces if weight != 1.0]
    if weighted:
        piece, weight = weighted[0]
        raise PromptSyntaxError(f"prompt weights are not supported yet ('{piece.strip()}' has weight {weight:g});"
                                " write \\( and \\) for literal brackets")
    return "".join(piece for piece, _ in pieces)


def embedding_words(text: str) -> list[tuple[str, str]]:
    """Each ``embedding:name`` word in ``text`` as (the word without trailing commas, the name), in order, once each."""
    found: dict[str, str] = {}
    for match in _EMBEDDING.finditer(text):
        name = match.group(1).rstrip(",")
        if name:
            found.setdefault(f"embedding:{name}", name)
    return list(found.items())


def _parse(text: str, weight: float) -> list[tuple[str, float]]:
    pieces: list[tuple[str, float]] = []
    plain = ""
    i = 0
    while i < len(text):
        char = text[i]
        if char == ")":
            raise PromptSyntaxError(f"unbalanced ')' in the prompt near {_unescape(text[max(0, i - 20):i + 1])!r}")
        if char != "(":
            plain += char
            i += 1
            continue
        end = _closing(text, i)
        if plain:
            pieces.append((plain, weight))
            plain = ""
        inner, inner_weight = _emphasis(text[i + 1:end], weight)
        pieces.extend(_parse(inner, inner_weight))
        i = end + 1
    if plain:
        pieces.append((plain, weight))
    return pieces


def _closing(text: str, start: int) -> int:
    depth = 0
    for j in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[j], 0)
        if depth == 0:
            return j
    raise PromptSyntaxError(f"unbalanced '(' in the prompt near {_unescape(text[start:start + 20])!r}")


def _emphasis(inner: str, weight: float) -> tuple[str, float]:
    """ComfyUI's rule: ``(x)`` is x at 1.1 times; ``(x:w)`` is x at weight w."""
    colon = inner.rfind(":")
    if colon > 0:
        try:
            return inner[:colon], float(inner[colon + 1:])
        except ValueError:
            pass
    return inner, weight * 1.1


def _unescape(text: str) -> str:
    return text.replace(_OPEN, "(").replace(_CLOSE, ")")


__all__ = ["PromptSyntaxError", "embedding_words", "plain_text", "weighted_segments"]
