"""The disk, as the server sees it: atomic writes, a full disk, and paths that must not leak.

* :func:`write_atomic` writes a whole file or nothing: a temporary file beside the
  target, renamed over it, and removed again when writing fails (a full disk must not
  leave empty ``tmp*.tmp`` files behind).
* :func:`is_disk_full` recognises a full disk however it surfaces: ``OSError`` with
  ``ENOSPC``/``EDQUOT``, or SQLite's ``SQLITE_FULL``. The API answers it with 507
  ``disk_full`` (see :mod:`nodeflow.server.replies`).
* :class:`PathScrubber` removes the server's own folders from messages that reach
  clients, so no answer reveals where the server keeps its files.
* :func:`loads` decodes JSON with the cyclic garbage collector paused.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import re
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
_SQLITE_FULL = 13

DISK_FULL_MESSAGE = ("the server's disk is full: delete runs you no longer need (DELETE /api/runs/{id} frees their"
                     " output files first) or free space on the server, then try again")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the database on it) has no room left."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
        return code == _SQLITE_FULL or "database or disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS


def write_atomic(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file in the same folder, renamed over it.

    A reader never sees half a file; when writing fails (a full disk), the temporary
    file is removed and the error propagates.
    """
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """No automatic garbage collection while the block runs (nests, and works across threads)."""
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


def loads(text: str | bytes, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """``json.loads`` with the garbage collector paused.

    Decoded JSON holds no reference cycles, so collections during decoding find nothing,
    yet a large document triggers several, each walking every live object while holding
    the GIL (a 2 MiB body of small arrays decodes about three times faster without them,
    and stalls the other threads far less).
    """
    with gc_paused():
        return json.loads(text, parse_constant=parse_constant)


def inside(folder: Path, path: Path) -> bool:
    """Whether ``path``'s real location (symlinks followed) is inside ``folder``'s."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):  # a broken or looping link
        return False


class PathScrubber:
    """Rewrites the server's folders out of text sent to clients.

    ``roots`` pairs a folder with what replaces ``FOLDER/`` (e.g. the data dir with
    ``""``, so ``/srv/data/outputs/x.png`` reads ``outputs/x.png``; a bare folder reads
    as its label without the slash, the data dir as ``DATA_DIR``). The path as given and its resolved form
    are both replaced, longest first, and only as whole path components.
    """

    def __init__(self, roots: Iterable[tuple[Path | None, str]]):
        labels: dict[str, str] = {}
        for folder, label in roots:
            if folder is not None:
                for form in (str(folder), str(Path(folder).resolve())):
                    labels.setdefault(form.rstrip(os.sep) or os.sep, label)
        self._labels = labels
        alternatives = "|".join(re.escape(f) for f in sorted(labels, key=len, reverse=True))
        self._pattern = re.compile(f"({alternatives})(?:({re.escape(os.sep)})|(?![\\w-]|\\.[\\w.-]))") if labels else None

    def __call__(self, text: str) -> str:
        """``text`` with every known folder replaced by its label."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        label = self._labels[match.group(1)]
        return label if match.group(2) else (label.rstrip("/") or "DATA_DIR")
