"""The local backend: jobs run in this process, on one executor, ``workers`` at a time.

One :class:`~nodeflow.executor.Executor` with one cache and one model store serves
every job, so models load once (and are held once, whatever the number of workers)
and shared upstream results (a prompt encoded once for sixteen seeds) come from the
cache. Each worker is a thread; the cores are split between them (each worker's torch
uses ``cores // workers`` threads, or ``threads`` when given) rather than every worker
taking all of them, which on a shared CPU only makes the threads fight.

Every worker sees the same models (one store), so there is no affinity to keep here:
:meth:`LocalBackend.worker_states` reports the store's models on each worker.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .. import threads as cpu_threads
from ..cache import Cache
from ..context import CancelToken, ModelStoreAPI
from ..executor import Executor, GraphLike
from ..files import PathResolver
from ..registry import Registry
from .base import EventCallback, JobResult, process_memory


class LocalBackend:
    """Runs jobs in this process (see the module docstring).

    ``workers``: jobs at a time (threads). ``threads``: torch CPU threads per worker
    (default: the cores this process may use divided by ``workers``); pin it when
    comparing pixels with another backend, since CPU kernels may sum in another order
    with another thread count. ``paths``: the default path resolver for jobs.
    """

    name = "local"

    def __init__(self, registry: Registry, cache: Cache | None = None, models: ModelStoreAPI | None = None, *,
                 workers: int = 1, threads: int | None = None, paths: PathResolver | None = None):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        if models is None:
            from ..models import ModelStore

            models = ModelStore()
        self.cache = cache if cache is not None else Cache()
        self.models = models
        self.executor = Executor(registry, cache=self.cache, models=self.models, paths=paths)
        self.workers = workers
        self.threads_per_worker = cpu_threads.share(workers, threads)
        self._lock = threading.Lock()
        self._local = threading.local()
        #: per worker thread: the running job's label and since when (None when idle)
        self._jobs: list[tuple[str | None, float] | None] = [None] * workers
        self._started = 0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nodeflow-local",
                                        initializer=self._start_thread)

    @property
    def capacity(self) -> int:
        """How many jobs run at once."""
        return self.workers

    def submit(
        self,
        graph: GraphLike,
        inputs: dict[str, Any],
        output_dir: Path,
        on_event: EventCallback | None = None,
        cancel: CancelToken | None = None,
        paths: PathResolver | None = None,
        *,
        label: str | None = None,
    ) -> Future[JobResult]:
        """Queue a job for the next free worker thread."""
        return self._pool.submit(self._run, graph, inputs, Path(output_dir), on_event, cancel, paths, label)

    def run(
        self,
        graph: GraphLike,
        inputs: dict[str, Any],
        output_dir: Path,
        on_event: EventCallback,
        cancel: CancelToken,
        paths: PathResolver | None = None,
        *,
        label: str | None = None,
    ) -> JobResult:
        """Run one job and wait for it."""
        return self.submit(graph, inputs, output_dir, on_event, cancel, paths, label=label).result()

    def worker_states(self) -> list[dict[str, Any]]:
        """Each worker thread: ``busy`` with its job's label, or ``idle``; the shared store's models; the process's memory."""
        from ..models.store import describe_key

        held = getattr(self.models, "held", None)  # a custom ModelStoreAPI need not list its models
        models = [describe_key(k) for k in held()] if callable(held) else []
        memory = process_memory()
        now = time.monotonic()
        with self._lock:
            jobs = list(self._jobs)
        return [{"index": i, "name": f"local:{i}", "state": "idle" if job is None else "busy",
                 "job": None if job is None else job[0], "busy_seconds": None if job is None else now - job[1],
                 "models": models, "memory": memory, "detail": None} for i, job in enumerate(jobs)]

    def _start_thread(self) -> None:
        """Pool thread initializer: take the next worker index and this worker's share of the cores."""
        with self._lock:  # the pool starts at most `workers` threads and keeps them: indexes 0..workers-1
            self._local.index, self._started = self._started, self._started + 1
        cpu_threads.apply(self.threads_per_worker)

    def _run(self, graph: GraphLike, inputs: dict[str, Any], output_dir: Path, on_event: EventCallback | None,
             cancel: CancelToken | None, paths: PathResolver | None, label: str | None = None) -> JobResult:
        index = getattr(self._local, "index", 0) % self.workers
        with self._lock:
            self._jobs[index] = (label, time.monotonic())
        try:
            result = self.executor.run(graph, inputs=inputs, output_dir=output_dir, on_event=on_event, cancel=cancel,
                                       paths=paths)
        finally:
            with self._lock:
                self._jobs[index] = None
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
        return {"type": "cpu", "name": platform.processor() or platform.machine(), "threads": self.threads_per_worker,
                "workers": self.workers, "cpus": os.cpu_count()}

    def close(self) -> None:
        """Finish the jobs in progress, drop queued ones, empty the cache."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.cache.clear()


__all__ = ["LocalBackend"]
