"""CPU threads: a policy that holds up when other processes share the cores.

torch's OpenMP threads spin while they wait for work. On idle cores that saves a few
microseconds per operator; on cores that other processes also use, spinning threads
steal the time the working thread needs and a small model runs several times slower
(measured: ``bench/cpu_contention.py``, figures in docs/benchmarks.md). So nodeflow
does two things, both overridable:

* before torch is imported, ``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` (waiting
  threads sleep) unless the user set it;
* the thread count defaults to the cores this process may use, divided among the
  workers that share them (a 2-worker sweep on 4 cores gives each worker 2 threads),
  or exactly ``--threads N``.
"""

from __future__ import annotations

import os
import sys

#: The OpenMP wait policy nodeflow uses unless ``OMP_WAIT_POLICY`` is already set.
DEFAULT_WAIT_POLICY = "PASSIVE"


def prepare_process() -> None:
    """Set the OpenMP wait policy for this process; effective only before torch is imported."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", DEFAULT_WAIT_POLICY)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def share(workers: int = 1, threads: int | None = None) -> int:
    """Threads for each of ``workers`` workers: ``threads`` when given, else the cores split evenly (at least 1)."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        return threads
    return max(1, available_cores() // max(1, workers))


def apply(threads: int) -> None:
    """Use ``threads`` intra-op threads in torch (for the calling thread and those it starts)."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


__all__ = ["DEFAULT_WAIT_POLICY", "apply", "available_cores", "prepare_process", "share"]
