"""The backend interface: where a graph run happens, one job or many at once.

A backend takes jobs (a graph, its graph inputs, an output folder) and returns
:class:`JobResult` values, which are :class:`~nodeflow.executor.RunResult` values plus
which worker ran the job and how many attempts it took. Two ways in:

* :meth:`Backend.submit` queues a job and returns a :class:`concurrent.futures.Future`;
  the sweep submits every job and collects them as they finish;
* :meth:`Backend.run` runs one job and blocks; this is what the server's worker calls,
  so every backend here is also a server backend.

Whatever the backend, when a job's future resolves its files are on *this* machine,
under the ``output_dir`` given, and ``result.outputs`` holds their local paths. A
remote backend copies them back; callers never see a worker's file system.

A job that fails because of the graph (invalid input, a node raising) resolves with
``status == "failed"`` and structured errors; the future never raises for it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..context import CancelToken
from ..events import Event
from ..executor import GraphLike, RunResult
from ..files import PathResolver

EventCallback = Callable[[Event], None]


@dataclass
class JobResult(RunResult):
    """A :class:`RunResult` plus where it ran.

    ``worker`` names the worker (``local``, or ``<index>@<host>:<pid>`` on Ray) that
    ran the last attempt; ``attempts`` counts the starts, retries after a worker
    failure included.
    """

    worker: str = "local"
    attempts: int = 1

    @classmethod
    def of(cls, result: RunResult, *, worker: str = "local", attempts: int = 1) -> JobResult:
        """Wrap a plain :class:`RunResult` (fields are shared, not copied)."""
        return cls(**{f.name: getattr(result, f.name) for f in fields(RunResult)}, worker=worker, attempts=attempts)

    def to_dict(self) -> dict[str, Any]:
        """:meth:`RunResult.to_dict` plus ``worker`` and ``attempts``."""
        return {**super().to_dict(), "worker": self.worker, "attempts": self.attempts}


def process_memory() -> dict[str, int | None]:
    """This process's memory in bytes: ``rss`` (resident, ``None`` where the platform will not say) and, once
    torch has used CUDA, ``cuda_allocated``/``cuda_reserved`` on its current device."""
    info: dict[str, int | None] = {"rss": None}
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            info["rss"] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    torch = sys.modules.get("torch")  # never import torch only to say it holds nothing
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        info["cuda_allocated"] = int(torch.cuda.memory_allocated())
        info["cuda_reserved"] = int(torch.cuda.memory_reserved())
    return info


@runtime_checkable
class Backend(Protocol):
    """Runs jobs; see the module docstring. Thread-safe: any thread may submit."""

    name: str

    @property
    def capacity(self) -> int:
        """How many jobs run at the same time (the sweep keeps this many in flight, the server runs this many runs)."""
        ...

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
        """Queue one job. ``on_event`` receives its events while it runs (from a backend thread).

        ``paths`` resolves the file names in the graph (the server's is confined to its folders);
        ``label`` names the job in :meth:`worker_states` while it runs (the server passes the run id).
        """
        ...

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
    ) -> RunResult:
        """Run one job and wait for it (what each of the server's runner threads calls)."""
        ...

    def worker_states(self) -> list[dict[str, Any]]:
        """Each worker as of now, without waiting on any of them.

        Keys: ``index``; ``name``; ``state`` (``idle`` and ``busy`` take jobs; ``starting``,
        ``recovering`` and ``dead`` do not); ``job`` (the running job's label, else ``None``);
        ``busy_seconds``; ``models`` (the models it holds, as ``{name, dtype, device}``);
        ``memory`` (bytes, as of its last job, see :func:`process_memory`); ``detail``
        (why it is not taking jobs, else ``None``).
        """
        ...

    def cache_stats(self) -> dict[str, Any]:
        """Result-cache counters (summed over workers on a cluster)."""
        ...

    def clear_cache(self) -> dict[str, Any]:
        """Empty the result caches; the counters afterwards."""
        ...

    def device_info(self) -> dict[str, Any]:
        """Where jobs run: ``type`` (cpu/cuda/mps/ray) and details."""
        ...

    def close(self) -> None:
        """Stop taking jobs and release workers; futures not finished yet are cancelled."""
        ...


__all__ = ["Backend", "EventCallback", "GraphLike", "JobResult", "process_memory"]
