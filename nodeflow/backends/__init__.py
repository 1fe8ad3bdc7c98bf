"""Execution backends: run jobs here (``local``) or on a Ray cluster (``ray``).

:class:`Backend` is the interface (see :mod:`nodeflow.backends.base`); the sweep and
the server only talk to it. :func:`make_backend` builds one by name. Importing this
package never imports Ray: the ``ray`` module does, when a Ray backend is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..executor import GraphLike
from ..registry import Registry
from .base import Backend, EventCallback, JobResult
from .local import LocalBackend

BACKENDS = ("local", "ray")


def make_backend(
    name: str,
    *,
    registry: Registry | None = None,
    plugin_dirs: Sequence[str | Path] = (),
    address: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    models: Any = None,
    **options: Any,
) -> Backend:
    """The backend called ``name`` (``local`` or ``ray``).

    ``registry`` (local; built from ``plugin_dirs`` when not given) and ``plugin_dirs``
    (for Ray they must exist on every worker machine); ``address`` applies to Ray;
    ``workers`` is how many jobs run at once; ``threads`` pins torch's CPU threads per
    worker; ``models`` is the local model store (Ray workers build their own from
    ``device``/``dtype``/``allow_pickle``/``compile`` options). Other ``options`` go to the backend's
    constructor. Raises ``ValueError`` for an unknown name and
    :class:`~nodeflow.backends.ray.RayUnavailable` when Ray is missing or unreachable.
    """
    if name == "local":
        if registry is None:
            from ..registry import build_registry

            registry = build_registry(list(plugin_dirs))
        return LocalBackend(registry, models=models, workers=workers or 1, threads=threads, **options)
    if name == "ray":
        from .ray import RayBackend

        if models is not None:
            options = {"device": models.device, "dtype": models.dtype, "allow_pickle": models.allow_pickle,
                       "compile": models.compile, **options}
        return RayBackend(address=address, workers=workers, plugin_dirs=list(plugin_dirs), threads=threads, **options)
    raise ValueError(f"unknown backend {name!r} (choose {' or '.join(BACKENDS)})")


__all__ = ["BACKENDS", "Backend", "EventCallback", "GraphLike", "JobResult", "LocalBackend", "make_backend"]
