"""The local backend: jobs run one after another in this process, on one executor.

One :class:`~nodeflow.executor.Executor` with one cache and one model store serves
every job, so models load once and shared upstream results (a prompt encoded once
for sixteen seeds) come from the cache. Jobs run on one background thread in
submission order: a second thread would only fight the first for the cores torch
already uses, so ``capacity`` is 1. Scaling out is the Ray backend's job.
"""

from __future__ import annotations

import os
import platform
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..cache import Cache
from ..executor import Executor, RunResult
from ..node import CancelToken
from ..registry import Registry
from .base import EventCallback, GraphLike, JobResult


class LocalBackend:
    """Runs jobs in this process (see the module docstring).

    ``threads`` sets torch's CPU thread count for the process (``None`` leaves it);
    pin it when comparing pixels with another backend, since CPU kernels may sum in
    a different order with a different number of threads.
    """

    name = "local"

    def __init__(self, registry: Registry, cache: Cache | None = None, models: Any = None, *, threads: int | None = None):
        if models is None:
            from ..models import ModelStore

            models = ModelStore()
        self.cache = cache if cache is not None else Cache()
        self.models = models
        self.executor = Executor(registry, cache=self.cache, models=self.models)
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nodeflow-local")

    @property
    def capacity(self) -> int:
        """Always 1: jobs run one at a time."""
        return 1

    def submit(
        self,
        graph: GraphLike,
        inputs: dict[str, Any],
        output_dir: Path,
        on_event: EventCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Future[JobResult]:
        """Queue a job on the backend's thread."""
        return self._pool.submit(self._run, graph, inputs, Path(output_dir), on_event, cancel)

    def run(
        self,
        graph: GraphLike,
        inputs: dict[str, Any],
        output_dir: Path,
        on_event: EventCallback,
        cancel: CancelToken,
    ) -> RunResult:
        """Run one job and wait for it."""
        return self.submit(graph, inputs, output_dir, on_event, cancel).result()

    def _run(self, graph: GraphLike, inputs: dict[str, Any], output_dir: Path,
             on_event: EventCallback | None, cancel: CancelToken | None) -> JobResult:
        result = self.executor.run(graph, inputs=inputs, output_dir=output_dir, on_event=on_event, cancel=cancel)  # type: ignore[arg-type]
        return JobResult.of(result)

    def cache_stats(self) -> dict[str, Any]:
        """The cache's counters."""
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
        return {"type": "cpu", "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                "cpus": os.cpu_count()}

    def close(self) -> None:
        """Finish the job in progress, drop queued ones, empty the cache."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.cache.clear()


__all__ = ["LocalBackend"]
