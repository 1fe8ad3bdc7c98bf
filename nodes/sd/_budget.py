"""The SD nodes' answers to the run budget (:mod:`nodeflow.budget`): the sizes they make, from literals."""

from __future__ import annotations

from typing import Any

from nodeflow.budget import BudgetCheck, Pixels

from ._files import _file_size


def literal(width: Any, height: Any, batch: Any = 1, fields: tuple[str, ...] = ("width", "height", "batch")) -> Pixels | None:
    """The size typed into ``width``/``height``/``batch`` (``None`` when one is linked or 0)."""
    if not all(isinstance(v, int) and v > 0 for v in (width, height, batch)):
        return None
    return Pixels(width, height, batch, fields)


def resized(check: BudgetCheck, source: str, scale_by: Any, width: Any, height: Any) -> Pixels | None:
    """A resize node's output: the typed size when given (the batch of ``source``), else ``source`` times ``scale_by``."""
    incoming = check.pixels(source)
    batch = incoming.batch if incoming is not None else 1
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return Pixels(width, height, batch, ("width", "height"))
    if incoming is None or not isinstance(scale_by, (int, float)):
        return None
    return incoming.scaled(float(scale_by), ("scale_by",))


def kept_sides(check: BudgetCheck, source: str, width: Any, height: Any) -> Pixels | None:
    """Resize Image's output: each typed side, 0 keeping ``source``'s (unknown if that is needed and not known)."""
    incoming = check.pixels(source)
    w = width if isinstance(width, int) and width > 0 else incoming.width if incoming else None
    h = height if isinstance(height, int) and height > 0 else incoming.height if incoming else None
    if w is None or h is None or (incoming is not None and (w, h) == (incoming.width, incoming.height)):
        return None  # unknown, or unchanged: the size stays the one its maker made
    return Pixels(w, h, incoming.batch if incoming else 1, ("width", "height"))


def picture(check: BudgetCheck, path: Any) -> Pixels | None:
    """A picture file's size, from its header (not its pixels)."""
    if not isinstance(path, str) or not path or check.paths is None:
        return None
    size = _file_size(check.paths, path)
    return None if size is None else Pixels(size[0], size[1], 1, ("path",))


def joined(check: BudgetCheck, first: str, second: str) -> Pixels | None:
    """Two batches in one: the larger picture, both batches."""
    a, b = check.pixels(first), check.pixels(second)
    if a is None or b is None:
        return a or b
    return Pixels(max(a.width, b.width), max(a.height, b.height), a.batch + b.batch, (first, second))
