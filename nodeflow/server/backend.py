"""Execution backends: what the worker hands a graph to.

The worker needs one object with :meth:`ExecutionBackend.run`; :class:`LocalBackend`
wraps the same :class:`~nodeflow.executor.Executor` the CLI uses, in this process,
so models and the cache stay warm between runs. A distributed backend (Ray) plugs in
by implementing the same protocol; :func:`make_backend` chooses by name.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..cache import Cache
from ..executor import Executor, RunResult
from ..graph import GraphDoc
from ..models import ModelStore
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


class LocalBackend:
    """Runs graphs in this process with one long-lived executor, cache and model store."""

    name = "local"

    def __init__(self, registry: Registry, cache: Cache | None = None, models: Any = None):
        self.cache = cache if cache is not None else Cache()
        self.models = models if models is not None else ModelStore()
        self.executor = Executor(registry, cache=self.cache, models=self.models)

    def run(
        self,
        graph: GraphDoc,
        inputs: dict[str, Any],
        output_dir: Path,
        on_event: Callable[[Event], None],
        cancel: CancelToken,
    ) -> RunResult:
        """Run ``graph`` with the shared executor."""
        return self.executor.run(graph, inputs=inputs, output_dir=output_dir, on_event=on_event, cancel=cancel)

    def cache_stats(self) -> dict[str, Any]:
        """The shared cache's counters."""
        return self.cache.stats()

    def clear_cache(self) -> dict[str, Any]:
        """Empty the in-memory cache (loaded models stay: the model store owns them)."""
        self.cache.clear()
        return self.cache.stats()

    def device_info(self) -> dict[str, Any]:
        """The accelerator torch sees, with its memory, else the CPU."""
        import torch

        if torch.cuda.is_available():
            index = torch.cuda.current_device()
            free, total = torch.cuda.mem_get_info(index)
            return {"type": "cuda", "name": torch.cuda.get_device_name(index), "memory_total": total, "memory_free": free}
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return {"type": "mps", "name": "Apple MPS"}
        return {"type": "cpu", "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads(), "cpus": os.cpu_count()}

    def close(self) -> None:
        """Drop cached results; the process is ending or the server is being rebuilt."""
        self.cache.clear()


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
