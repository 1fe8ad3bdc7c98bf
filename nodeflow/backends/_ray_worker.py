"""The body of a Ray worker actor (plain Python: :mod:`nodeflow.backends.ray` wraps it with ``ray.remote``).

A worker is long-lived: it builds its own registry (built-in packs, entry points and
the plugin folders, read from *its* machine's disk), its own model store and its own
result cache, and keeps them between jobs, so a model loads once per worker and a
prompt encoded for one seed is reused for the next seed that lands on it.

Jobs write into a per-job folder under a scratch folder that lives as long as the
worker. Folders are not deleted after a job because the cache may hand a later job
a cached save node whose file is in an earlier job's folder; the scratch folder goes
when the backend closes. A worker that was killed cannot clean up: the next worker
to start on that machine deletes scratch folders whose process is gone.

Events are buffered per job and taken by the driver with :meth:`RayWorker.events`
while :meth:`RayWorker.run` is still running (the actor is threaded, so the two calls
overlap). An ``output`` event carries the file's bytes, so the driver can write the
file on its own disk before it passes the event on. Nothing in here imports Ray.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SCRATCH_PREFIX = "nodeflow-ray-"

FileBlob = tuple[str, bytes | None]
"""A file sent back to the driver: its name relative to the job folder, and its bytes (``None``: missing)."""


@dataclass
class _Job:
    """What the worker knows about the job it runs: its token, buffered events, files already sent."""

    stream: bool
    job_dir: Path
    token: Any
    events: list[Any] = field(default_factory=list)
    sent: set[str] = field(default_factory=set)


class RayWorker:
    """One worker: an executor with its own registry, cache and model store (see the module docstring)."""

    def __init__(
        self,
        index: int,
        plugin_dirs: list[str],
        device: str | None = None,
        dtype: str | None = None,
        threads: int | None = None,
        cache_budget_bytes: int | None = None,
        allow_pickle: bool = False,
        compile: str | None = None,
    ):
        # Models load from local paths only, as in the CLI: fail fast on any hub lookup.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch

        from ..cache import Cache
        from ..executor import Executor
        from ..models import ModelStore
        from ..registry import build_registry

        if threads is not None:
            torch.set_num_threads(threads)
        registry = build_registry(plugin_dirs)
        self.registry_errors = [e.message for e in registry.errors]
        self.models = ModelStore(device=device, dtype=dtype, allow_pickle=allow_pickle, compile=compile)
        self.executor = Executor(registry, Cache(cache_budget_bytes), self.models)
        _remove_orphaned_scratch()
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{os.getpid()}-"))
        self.label = f"{index}@{socket.gethostname()}:{os.getpid()}"
        self._run_lock = threading.Lock()  # one job at a time, whatever the actor's concurrency
        self._lock = threading.Lock()  # guards _jobs and _early_cancels
        self._jobs: dict[str, _Job] = {}
        self._early_cancels: set[str] = set()

    def ready(self) -> dict[str, Any]:
        """Who this worker is (also a liveness ping): ``label``, ``host``, ``pid``, ``registry_errors``, and
        what routing needs (:meth:`holdings`)."""
        return {"label": self.label, "host": socket.gethostname(), "pid": os.getpid(), "registry_errors": self.registry_errors,
                **self.holdings()}

    def holdings(self) -> dict[str, Any]:
        """``models`` (the store's keys), ``device`` and ``dtype`` (what ``auto`` means here), ``memory`` (bytes)."""
        from .base import process_memory

        return {"models": self.models.held(), "device": self.models.resolve_device(None), "dtype": self.models.dtype,
                "memory": process_memory()}

    def run(self, job_id: str, graph: Any, inputs: dict[str, Any], stream: bool, paths: Any = None) -> dict[str, Any]:
        """Run one job; returns ``result`` (a RunResult), ``files``, the ``events`` not yet taken, ``worker``, and
        the worker's :meth:`holdings` after the job.

        ``files`` maps each output path in the result that was not already sent with
        an ``output`` event to a :data:`FileBlob`. ``result.values`` keeps plain JSON
        values only (tensors and models stay on the worker).
        """
        from ..context import CancelToken

        job = _Job(stream, self.scratch / job_id, CancelToken())
        with self._lock:
            self._jobs[job_id] = job
            if job_id in self._early_cancels:  # the cancel overtook the run on another actor thread
                self._early_cancels.discard(job_id)
                job.token.cancel()
        try:
            with self._run_lock:
                result = self.executor.run(graph, inputs=inputs, output_dir=job.job_dir,
                                           on_event=lambda e: self._record(job, e), cancel=job.token, paths=paths)
            files = {o["path"]: self._blob(o["path"], job.job_dir) for o in result.outputs if o["path"] not in job.sent}
            result.values = {node: {k: v for k, v in values.items() if _is_plain(v)} for node, values in result.values.items()}
        finally:
            with self._lock:
                self._jobs.pop(job_id, None)
                tail, job.events = job.events, []
        return {"result": result, "files": files, "events": tail, "worker": self.label, **self.holdings()}

    def events(self, job_id: str) -> list[Any]:
        """Take the events buffered for ``job_id`` so far (oldest first); empty once the job is over."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return []
            taken, job.events = job.events, []
            return taken

    def cancel(self, job_id: str) -> None:
        """Cancel ``job_id`` at its next check (or as soon as it starts)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                self._early_cancels.add(job_id)
            else:
                job.token.cancel()

    def cache_stats(self) -> dict[str, Any]:
        """This worker's cache counters."""
        return self.executor.cache.stats()

    def clear_cache(self) -> dict[str, Any]:
        """Empty this worker's cache; its counters afterwards."""
        self.executor.cache.clear()
        return self.executor.cache.stats()

    def device_info(self) -> dict[str, Any]:
        """The accelerator this worker's torch sees, else its CPU."""
        import torch

        info: dict[str, Any] = {"worker": self.label}
        if torch.cuda.is_available():
            index = torch.cuda.current_device()
            free, total = torch.cuda.mem_get_info(index)
            return {**info, "type": "cuda", "name": torch.cuda.get_device_name(index), "memory_total": total, "memory_free": free}
        return {**info, "type": "cpu", "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}

    def cleanup(self) -> None:
        """Delete the scratch folder (called when the backend closes)."""
        shutil.rmtree(self.scratch, ignore_errors=True)

    # -- internals ----------------------------------------------------------------------------
    def _record(self, job: _Job, event: Any) -> None:
        if not job.stream:
            return
        if event.type == "output":
            path = str(event.data.get("path", ""))
            event = type(event)(event.type, event.node, {**event.data, "_file": self._blob(path, job.job_dir)})
            job.sent.add(path)
        with self._lock:
            job.events.append(event)

    @staticmethod
    def _blob(path: str, job_dir: Path) -> FileBlob:
        source = Path(path)
        try:
            name = source.resolve().relative_to(job_dir.resolve()).as_posix()
        except ValueError:
            name = source.name  # a cached file from an earlier job's folder, or written elsewhere
        try:
            return name, source.read_bytes()
        except OSError:
            return name, None


def _remove_orphaned_scratch() -> None:
    """Delete the scratch folders of workers on this machine that died without cleaning up (killed, crashed)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_SCRATCH_PREFIX}*-*"):
        pid = folder.name[len(_SCRATCH_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process now holds that id
    return True


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


__all__ = ["RayWorker", "FileBlob"]
