"""Execution backends: what the worker hands a graph to.

The worker needs one object with :meth:`ExecutionBackend.run` (a narrower view of
:class:`nodeflow.backends.Backend`, so tests can inject a small fake). The local
backend is :class:`nodeflow.backends.LocalBackend`: the same
:class:`~nodeflow.executor.Executor` the CLI uses, in this process, so models and the
cache stay warm between runs. :func:`make_backend` chooses by name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..backends.local import LocalBackend
from ..executor import RunResult
from ..graph import GraphDoc
from ..node import CancelToken, Event
from ..registry import Registry
from .config import ServerConfig, ServerConfigError


@runtime_checkable
class ExecutionBackend(Protocol):
    """Runs one graph at a time for the worker. Called from the worker thread only."""

    name: str

    def run(
        self,
        graph: GraphDoc,
        inputs: dict[str, Any],
        output_dir: Path,
        on_event: Callable[[Event], None],
        cancel: CancelToken,
    ) -> RunResult:
        """Run ``graph`` and return its result; never raise for user errors (see :meth:`Executor.run`)."""
        ...

    def cache_stats(self) -> dict[str, Any]:
        """The result cache's counters."""
        ...

    def clear_cache(self) -> dict[str, Any]:
        """Empty the result cache; returns the counters afterwards."""
        ...

    def device_info(self) -> dict[str, Any]:
        """Where graphs run: ``type`` (cpu/cuda/mps), ``name`` and device memory if known."""
        ...

    def close(self) -> None:
        """Release what the backend holds (called once, when the server stops)."""
        ...


def make_backend(config: ServerConfig, registry: Registry) -> ExecutionBackend:
    """The backend named by ``config.backend``."""
    if config.backend == "local":
        return LocalBackend(registry)
    if config.backend == "ray":
        # Imported here: Ray is an optional extra and nothing else in the server needs it.
        from ..backends.ray import RayBackend, RayUnavailable

        try:
            return RayBackend(address=config.address, plugin_dirs=config.plugin_dirs)
        except RayUnavailable as exc:
            raise ServerConfigError(f"cannot use the 'ray' backend: {exc}") from None
    raise ServerConfigError(f"unknown backend {config.backend!r} (choose 'local' or 'ray')")
