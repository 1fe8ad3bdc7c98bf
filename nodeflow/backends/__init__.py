"""Execution backends: run jobs here (``local``) or on a Ray cluster (``ray``).

:class:`Backend` is the interface (see :mod:`nodeflow.backends.base`); the sweep and
the server only talk to it. :func:`make_backend` builds one by name. Importing this
package never imports Ray: the ``ray`` module does, when a Ray backend is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .base import Backend, EventCallback, GraphLike, JobResult
from .local import LocalBackend

BACKENDS = ("local", "ray")


def make_backend(
    name: str,
    *,
    plugin_dirs: Sequence[str | Path] = (),
    address: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    **options: Any,
) -> Backend:
    """The backend called ``name`` (``local`` or ``ray``).

    ``plugin_dirs`` are the extra node-pack folders (for Ray they must exist on every
    worker machine); ``address`` and ``workers`` apply to Ray; ``threads`` pins torch's
    CPU threads (per worker on Ray). Other ``options`` go to the backend's
    constructor. Raises ``ValueError`` for an unknown name and
    :class:`~nodeflow.backends.ray.RayUnavailable` when Ray is missing or unreachable.
    """
    if name == "local":
        from ..registry import build_registry

        return LocalBackend(build_registry(list(plugin_dirs)), threads=threads, **options)
    if name == "ray":
        from .ray import RayBackend

        return RayBackend(address=address, workers=workers, plugin_dirs=list(plugin_dirs), threads=threads, **options)
    raise ValueError(f"unknown backend {name!r} (choose {' or '.join(BACKENDS)})")


__all__ = ["BACKENDS", "Backend", "EventCallback", "GraphLike", "JobResult", "LocalBackend", "make_backend"]
