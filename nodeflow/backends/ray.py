"""The Ray backend: jobs run on a pool of long-lived worker actors, on one machine or many.

Needs the ``ray`` extra (``pip install 'nodeflow[ray]'``); this is the only module that
imports Ray, and only when a :class:`RayBackend` is made.

**Workers.** Each worker is a Ray actor (:class:`~nodeflow.backends._ray_worker.RayWorker`)
holding its own registry, model store and cache between jobs. On a cluster with GPUs
each actor reserves ``gpus_per_worker`` GPUs (1 by default; a fraction such as 0.5 puts
two workers with small models on one GPU) and the default is as many workers as the
GPUs hold; otherwise each reserves ``cpus_per_worker`` CPUs and sets torch to that many
threads (default: as many workers as the cluster's CPUs allow). Actors are placed with
Ray's ``SPREAD`` strategy, so the workers of a multi-machine cluster land on different
machines. A worker Ray cannot place yet (its resources are taken) stays ``starting``,
and :meth:`RayBackend.worker_states` says what it waits for; jobs wait for a worker
rather than fail.

**Dispatch.** One driver thread owns the pool: it takes the queued jobs in order and
gives each to an idle worker, preferring one that already holds the job's models
(:mod:`nodeflow.backends.affinity`: the model store's keys, which each worker reports
after every job), then one holding fewer models; it waits on the running jobs with
``ray.wait`` and resolves each job's future when it ends. The output files travel back with the result (or with their
``output`` events) and are written under the job's ``output_dir`` on this machine,
so workers need no shared file system.

**Events.** While a job runs, the driver asks its worker for the events buffered so
far (``worker.events.remote(job)``) every ``poll_interval`` seconds (0.1 s by
default), one request outstanding at a time so order is kept, and hands them to
``on_event`` on the driver thread. Progress therefore arrives during the run, in
batches at most ``poll_interval`` late; the rest comes with the result. Only jobs
that asked for events (an ``on_event``) are polled. Cancellation travels the other
way with ``worker.cancel.remote(job)`` and is noticed at the node's next check.

**Failures.** A job whose worker dies (process killed, machine lost, out of memory)
is put back at the head of the queue and given to a different worker when there is
one; after ``max_attempts`` starts it resolves as ``failed`` with the code
``worker_failed``. The dead actor is restarted by Ray (``max_restarts``) and rejoins
the pool once it answers a ping; an actor that cannot restart leaves the pool. A job
that fails on its own (a node raises, an invalid input) is never retried: it would
fail again the same way.

**Ray's addresses.** Without an ``address`` and with no Ray running in the process, a
private single-machine Ray is started bound to 127.0.0.1, without its dashboard; see
``docs/scaling.md`` for a cluster.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..context import CancelToken
from ..errors import Cancelled, ErrorInfo
from ..events import Event
from ..executor import GraphLike, RunResult
from ..files import PathResolver
from ..graph import GraphDoc
from ..net import is_loopback
from .affinity import ModelWant, affinity, wanted_models
from .base import EventCallback, JobResult

log = logging.getLogger("nodeflow.ray")

#: Ray reads this when it is imported; "0" keeps a local Ray on loopback (see :func:`loopback_only`).
_LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
#: Seconds a restarting actor may take to answer a ping before it leaves the pool.
_RECOVERY_TIMEOUT = 120.0


class RayUnavailable(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached."""


def import_ray(address: str | None = None) -> Any:
    """Import Ray, or raise :class:`RayUnavailable` saying how to install it.

    For a private Ray (no ``address``) or one on a loopback address, Ray is first told
    to stay on loopback; for a real cluster it must see this machine's own address,
    which the workers use to reach the driver.
    """
    if is_loopback_address(address):
        for key, value in _LOOPBACK_ENV.items():
            os.environ.setdefault(key, value)
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable("the Ray backend needs Ray: pip install 'nodeflow[ray]'") from exc
    return ray


def is_loopback_address(address: str | None) -> bool:
    """Whether ``address`` (``None``, ``host:port``, ``ray://host:port``) names this machine's loopback; ``auto`` does not."""
    return is_loopback(address)


def loopback_only(ray: Any) -> bool:
    """Whether a Ray started by this process would bind to loopback only.

    Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, when it is imported; set to
    ``0`` it takes 127.0.0.1 as the node address, otherwise it resolves even an explicit
    ``127.0.0.1`` to the machine's outward address. (Reads a private Ray constant;
    an unknown Ray version counts as not loopback-only.)
    """
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    return getattr(constants, "ENABLE_RAY_CLUSTER", True) is False


def local_worker_priority() -> None:
    """Run the workers of a Ray that nodeflow starts itself at normal priority (unless the user chose otherwise).

    Ray renices its worker processes to 15 so that its own daemons stay responsive; here
    the workers are where all the work happens, and at nice 15 any other busy process on
    the machine starves them (measured: Ray tests stalled beside two busy loops while the
    workers got 4% of a core). ``RAY_worker_niceness`` is read when Ray starts its raylet.
    """
    os.environ.setdefault("RAY_worker_niceness", "0")


def init_ray(address: str | None = None, *, num_cpus: int | None = None, log_to_driver: bool = False) -> bool:
    """Connect to the Ray cluster at ``address``, or start a private loopback-only one; True if this call started Ray.

    Does nothing (and returns False) when Ray is already initialised in this process,
    so a test session or an application can own the Ray start.
    """
    ray = import_ray(address)
    if ray.is_initialized():
        return False
    common: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": log_to_driver}
    if is_loopback_address(address) and not loopback_only(ray):
        raise RayUnavailable(
            "Ray was imported before RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 was set, so Ray would listen on this"
            " machine's network address; set that variable in the environment (or start Ray yourself) and try again"
        )
    try:
        if address:
            ray.init(address=address, **common)
        else:
            local_worker_priority()
            ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", **common)
    except Exception as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise RayUnavailable(f"cannot start {where}: {type(exc).__name__}: {exc}") from exc
    return True


@dataclass
class _Job:
    """A job as the dispatcher tracks it."""

    id: str
    graph: Any
    inputs: dict[str, Any]
    output_dir: Path
    on_event: EventCallback | None
    cancel: CancelToken | None
    future: Future[JobResult]
    paths: PathResolver | None = None
    label: str | None = None
    wants: tuple[ModelWant, ...] = ()
    attempts: int = 0
    avoid: set[int] = field(default_factory=set)
    cancel_sent: bool = False
    written: dict[str, Path] = field(default_factory=dict)  # worker path -> local copy
    events_ref: Any = None
    next_poll: float = 0.0


@dataclass
class _Slot:
    """One worker actor and what it is doing: ``starting``, ``idle``, ``busy``, ``recovering`` or ``dead``."""

    index: int
    handle: Any
    state: str = "starting"
    label: str = ""
    job: _Job | None = None
    run_ref: Any = None
    ping_ref: Any = None
    recovering_since: float = 0.0
    next_ping: float = 0.0
    busy_since: float = 0.0
    error: str | None = None
    #: what the worker said after its last job (or when it came up): model store keys, ``auto`` device, store dtype
    models: list[Any] = field(default_factory=list)
    device: str | None = None
    dtype: str | None = None
    memory: dict[str, Any] = field(default_factory=dict)


class RayBackend:
    """Runs jobs on Ray worker actors (see the module docstring).

    ``address``: a cluster to join (``host:port`` of its head, or ``auto``);
    ``None`` starts a private local Ray (with ``num_cpus``) unless Ray is already
    initialised in the process. ``workers``: how many actors (default: the cluster's
    GPUs divided by ``gpus_per_worker``, else its CPUs divided by ``cpus_per_worker``).
    ``gpus_per_worker`` (GPU clusters only): 1, a whole number, or a fraction below 1 for
    workers sharing a GPU. ``plugin_dirs`` must
    exist on every worker machine. ``threads``: torch CPU threads per worker (default
    ``cpus_per_worker``). ``max_attempts``: starts per job when workers die.
    """

    name = "ray"

    def __init__(
        self,
        *,
        address: str | None = None,
        workers: int | None = None,
        plugin_dirs: Sequence[str | Path] = (),
        device: str | None = None,
        dtype: str | None = None,
        cpus_per_worker: float = 1,
        gpus_per_worker: float = 1,
        threads: int | None = None,
        cache_budget_bytes: int | None = None,
        allow_pickle: bool = False,
        compile: str | None = None,
        max_attempts: int = 2,
        max_restarts: int = 3,
        poll_interval: float = 0.1,
        num_cpus: int | None = None,
        log_to_driver: bool = False,
    ):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not (0 < gpus_per_worker <= 1 or float(gpus_per_worker).is_integer()):
            raise ValueError(f"gpus_per_worker must be a fraction up to 1 or a whole number, not {gpus_per_worker}")
        self._ray = import_ray(address)
        self._owns_ray = init_ray(address, num_cpus=num_cpus, log_to_driver=log_to_driver)
        from ._ray_worker import RayWorker

        options, count, threads = self._sizing(workers, cpus_per_worker, gpus_per_worker, threads)
        actor_class = self._ray.remote(RayWorker).options(
            **options,
            max_restarts=max_restarts,
            max_task_retries=0,  # retries are ours: to another worker, and counted per job
            max_concurrency=4,  # run + events + cancel + stats overlap; RayWorker runs one job at a time
            scheduling_strategy="SPREAD",
        )
        # Workers start in Ray's session folder, not ours: send absolute paths (the same on every machine).
        folders = [str(Path(p).expanduser().resolve()) for p in plugin_dirs]
        self.max_attempts = max_attempts
        self.poll_interval = poll_interval
        self._slots = [
            _Slot(i, actor_class.remote(i, folders, device, dtype, threads, cache_budget_bytes, allow_pickle, compile))
            for i in range(count)
        ]
        for slot in self._slots:
            slot.ping_ref = slot.handle.ready.remote()
            slot.recovering_since = time.monotonic()
        self._inbox: queue.Queue[_Job | None] = queue.Queue()
        self._queue: collections.deque[_Job] = collections.deque()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="nodeflow-ray-dispatch", daemon=True)
        self._thread.start()

    def _sizing(self, workers: int | None, cpus_per_worker: float, gpus_per_worker: float,
                threads: int | None) -> tuple[dict[str, Any], int, int | None]:
        """Each actor's Ray resources, how many actors, and their torch threads, from the cluster's resources."""
        resources = self._ray.cluster_resources()
        gpus = float(resources.get("GPU", 0))
        options: dict[str, Any] = {"num_cpus": cpus_per_worker}
        if gpus > 0:
            options["num_gpus"] = gpus_per_worker
            fits = int(gpus / gpus_per_worker + 1e-9)  # 1 GPU / 0.5 is 2 workers, whatever the float rounding
        else:
            fits = int(resources.get("CPU", 0) // cpus_per_worker)
        count = workers if workers is not None else max(1, fits)
        if count < 1:
            raise ValueError("workers must be at least 1")
        if threads is None and gpus <= 0:
            threads = max(1, int(cpus_per_worker))
        self._per_worker = {"gpus": options.get("num_gpus", 0), "cpus": cpus_per_worker, "threads": threads}
        if count > fits:
            log.warning("the cluster has room for %d worker(s) of this size; the other %d wait until resources free up",
                        fits, count - fits)
        return options, count, threads

    # -- the public surface ---------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        """How many workers are in the pool (dead ones excluded)."""
        return sum(1 for s in self._slots if s.state != "dead") or 1

    @property
    def actors(self) -> list[Any]:
        """The worker actor handles, by worker index (tests kill them; dead ones included)."""
        return [s.handle for s in self._slots]

    def worker_states(self) -> list[dict[str, Any]]:
        """Each worker as of now (see :meth:`nodeflow.backends.base.Backend.worker_states`); asks no worker anything.

        ``state`` is ``starting`` (Ray has not started it yet), ``idle``, ``busy``,
        ``recovering`` (restarting after it died) or ``dead``; ``name`` is
        ``INDEX@HOST:PID`` once it is up; ``models`` and ``memory`` are as of its last job.
        """
        from ..models.store import describe_key

        now = time.monotonic()
        free = self._free_resources() if any(s.state == "starting" for s in self._slots) else {}
        states = []
        for slot in self._slots:
            job = slot.job
            states.append({"index": slot.index, "name": slot.label or str(slot.index), "state": slot.state,
                           "job": job.label if job is not None else None,
                           "busy_seconds": now - slot.busy_since if slot.state == "busy" else None,
                           "models": [describe_key(k) for k in slot.models], "memory": dict(slot.memory),
                           "detail": self._detail(slot, free)})
        return states

    def _detail(self, slot: _Slot, free: dict[str, float]) -> str | None:
        """Why ``slot`` takes no jobs now, in a sentence (``None`` when it does)."""
        if slot.state == "starting":
            needs = ", ".join(f"{k} {v:g}" for k, v in (("GPU", self._per_worker["gpus"]), ("CPU", self._per_worker["cpus"])) if v)
            room = ", ".join(f"{k} {free.get(k, 0):g}" for k in ("GPU", "CPU")) if free else "unknown"
            return f"waiting for Ray to start it: it needs {needs}; free in the cluster now: {room}"
        if slot.state == "recovering":
            return "restarting after its process died; its job went to another worker"
        if slot.state == "dead":
            return f"gone: {slot.error or 'unknown'}"
        return None

    def _free_resources(self) -> dict[str, float]:
        try:
            return {k: float(v) for k, v in self._ray.available_resources().items() if k in ("CPU", "GPU")}
        except Exception:  # a status answer must not fail because the cluster is slow to say
            return {}

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
        """Queue a job for the next idle worker, one holding its models if one is idle.

        ``paths`` must name folders that exist on the workers' machines; ``label`` names the
        job in :meth:`worker_states`.
        """
        if self._closed:
            raise RuntimeError("the Ray backend is closed")
        wants = wanted_models(graph, inputs, paths)  # here, on the caller's thread: it reads the model files' stamps
        if isinstance(graph, GraphDoc):
            graph = graph.model_dump(mode="json")  # plain data travels to any worker version
        future: Future[JobResult] = Future()
        self._inbox.put(_Job(uuid.uuid4().hex, graph, dict(inputs), Path(output_dir), on_event, cancel, future, paths,
                             label, wants))
        return future

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
        """Run one job on a worker and wait for it (events arrive while it runs)."""
        return self.submit(graph, inputs, output_dir, on_event, cancel, paths, label=label).result()

    def cache_stats(self) -> dict[str, Any]:
        """The workers' cache counters summed, and each worker's under ``workers``."""
        per_worker = self._ask_all("cache_stats")
        total: dict[str, Any] = {}
        for stats in per_worker:
            for key, value in stats.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    total[key] = total.get(key, 0) + value
        return {**total, "workers": per_worker}

    def clear_cache(self) -> dict[str, Any]:
        """Empty every worker's cache; the summed counters afterwards."""
        self._ask_all("clear_cache")
        return self.cache_stats()

    def device_info(self) -> dict[str, Any]:
        """The cluster's resources and each live worker's device."""
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        return {
            "type": "ray",
            "name": f"Ray cluster: {len(nodes)} node(s), {self.capacity} worker(s)",
            "resources": {k: v for k, v in self._ray.cluster_resources().items() if k in ("CPU", "GPU", "memory")},
            "per_worker": self._per_worker,
            "workers": self._ask_all("device_info"),
        }

    def close(self) -> None:
        """Stop dispatching, cancel unfinished futures, delete worker scratch folders, kill the actors.

        Ray itself is shut down only if this backend started it.
        """
        if self._closed:
            return
        self._closed = True
        self._inbox.put(None)
        self._thread.join(timeout=10)
        live = [s for s in self._slots if s.state in ("idle", "busy")]  # others may never answer
        try:
            self._ray.get([s.handle.cleanup.remote() for s in live], timeout=10)
        except Exception:
            log.warning("some Ray workers did not delete their scratch folders")
        for slot in self._slots:
            try:
                self._ray.kill(slot.handle, no_restart=True)
            except Exception:
                pass
        if self._owns_ray:
            self._ray.shutdown()

    # -- the dispatcher thread ------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            busy = bool(self._queue) or any(s.state in ("busy", "starting", "recovering") for s in self._slots)
            try:
                item = self._inbox.get(timeout=0 if busy else 0.5)
                if item is None:
                    break
                self._queue.append(item)
                continue  # take everything submitted before dispatching
            except queue.Empty:
                pass
            try:
                self._step()
            except Exception:  # the dispatcher must outlive any one bad job or callback
                log.exception("Ray dispatcher")
                time.sleep(self.poll_interval)
        while not self._inbox.empty():  # submitted while closing
            late = self._inbox.get_nowait()
            if late is not None:
                self._queue.append(late)
        for job in self._queue:
            job.future.cancel()
        for slot in self._slots:
            if slot.job is not None:
                slot.job.future.cancel()

    def _step(self) -> None:
        """One turn of the dispatcher: ping, assign, wait for one answer, then poll events and pass cancels."""
        self._ping_waiting()
        self._drop_cancelled_queued()
        self._assign()
        watched = self._watched()
        if not watched:
            if self._queue and all(s.state == "dead" for s in self._slots):
                self._fail_queued_no_workers()
            elif self._queue:
                time.sleep(self.poll_interval)  # workers are between pings: nothing to wait on yet
            return
        ready, _ = self._ray.wait(list(watched), num_returns=1, timeout=self.poll_interval)
        for ref in ready:
            kind, slot = watched[ref]
            {"ping": self._on_ping, "run": self._on_run, "events": self._on_events}[kind](slot, ref)
        self._poll_busy()

    def _ping_waiting(self) -> None:
        """Ask starting and recovering workers whether they are up (one ping outstanding each)."""
        now = time.monotonic()
        for slot in self._slots:
            if slot.state in ("starting", "recovering") and slot.ping_ref is None and now >= slot.next_ping:
                slot.ping_ref = slot.handle.ready.remote()

    def _watched(self) -> dict[Any, tuple[str, _Slot]]:
        """Every outstanding Ray reference, with what it answers and for which worker."""
        watched: dict[Any, tuple[str, _Slot]] = {}
        for slot in self._slots:
            if slot.ping_ref is not None:
                watched[slot.ping_ref] = ("ping", slot)
            if slot.run_ref is not None:
                watched[slot.run_ref] = ("run", slot)
            if slot.job is not None and slot.job.events_ref is not None:
                watched[slot.job.events_ref] = ("events", slot)
        return watched

    def _poll_busy(self) -> None:
        """Ask busy workers for their buffered events when due, and forward cancels once."""
        now = time.monotonic()
        for slot in self._slots:
            job = slot.job
            if job is None or slot.state != "busy":
                continue
            if job.on_event is not None and job.events_ref is None and now >= job.next_poll:
                job.events_ref = slot.handle.events.remote(job.id)
            if job.cancel is not None and job.cancel.cancelled and not job.cancel_sent:
                slot.handle.cancel.remote(job.id)
                job.cancel_sent = True

    def _assign(self) -> None:
        """Give queued jobs, oldest first, to idle workers (see :meth:`_pick`)."""
        for job in list(self._queue):
            slot = self._pick(job)
            if slot is None:
                continue
            self._queue.remove(job)
            job.attempts += 1
            job.written = {}
            job.next_poll = time.monotonic() + self.poll_interval
            slot.state, slot.job, slot.busy_since = "busy", job, time.monotonic()
            slot.run_ref = slot.handle.run.remote(job.id, job.graph, job.inputs, job.on_event is not None, job.paths)

    def _pick(self, job: _Job) -> _Slot | None:
        """The idle worker for ``job``: one it has not failed on (unless it failed on every live one), holding
        most of its models, then holding fewest models (to keep the others' for their jobs), then the first."""
        idle = [s for s in self._slots if s.state == "idle"]
        live = {s.index for s in self._slots if s.state != "dead"}
        allowed = [s for s in idle if s.index not in job.avoid or live <= job.avoid]
        if not allowed:
            return None
        return max(allowed, key=lambda s: (affinity(job.wants, s.models, s.device, s.dtype), -len(s.models), -s.index))

    def _drop_cancelled_queued(self) -> None:
        for job in [j for j in self._queue if j.future.cancelled() or (j.cancel is not None and j.cancel.cancelled)]:
            self._queue.remove(job)
            self._resolve(job, RunResult("cancelled", errors=Cancelled().errors), worker="")

    def _on_ping(self, slot: _Slot, ref: Any) -> None:
        slot.ping_ref = None
        try:
            info = self._ray.get(ref)
        except self._ray.exceptions.ActorDiedError as exc:
            slot.state, slot.error = "dead", _short(exc)
            log.warning("Ray worker %d is gone: %s", slot.index, slot.error)
            return
        except self._ray.exceptions.RayError as exc:
            if time.monotonic() - slot.recovering_since > _RECOVERY_TIMEOUT:
                slot.state, slot.error = "dead", _short(exc)
                return
            slot.next_ping = time.monotonic() + 0.5  # still restarting: ask again shortly
            return
        slot.state, slot.label = "idle", info["label"]
        self._note_holdings(slot, info)
        for message in info.get("registry_errors", []):
            log.warning("Ray worker %s: %s", slot.label, message)

    def _on_events(self, slot: _Slot, ref: Any) -> None:
        job = slot.job
        assert job is not None
        job.events_ref = None
        job.next_poll = time.monotonic() + self.poll_interval
        try:
            events = self._ray.get(ref)
        except self._ray.exceptions.RayError:
            return  # the worker died; the run's own reference reports it
        self._deliver(job, events)

    def _on_run(self, slot: _Slot, ref: Any) -> None:
        job = slot.job
        assert job is not None
        slot.run_ref = None
        try:
            payload = self._ray.get(ref)
        except self._ray.exceptions.RayTaskError as exc:
            # Our worker code raised (not the graph: the executor turns those into results). Not retried.
            self._finish_slot(slot)
            self._resolve(job, RunResult("failed", errors=[ErrorInfo("internal_error", f"the Ray worker failed: {_short(exc)}")]),
                          worker=slot.label)
            return
        except self._ray.exceptions.RayError as exc:
            self._worker_died(slot, job, exc)
            return
        if job.events_ref is not None:  # keep order: events taken before the run ended come first
            try:
                self._deliver(job, self._ray.get(job.events_ref))
            except self._ray.exceptions.RayError:
                pass
            job.events_ref = None
        self._finish_slot(slot)
        self._note_holdings(slot, payload)
        self._deliver(job, payload["events"])
        result: RunResult = payload["result"]
        for remote, (name, data) in payload["files"].items():
            if data is not None:
                job.written[remote] = self._write(job, name, data)
        outputs = []
        for output in result.outputs:
            local = job.written.get(output["path"])
            if local is None:
                result.errors.append(ErrorInfo("output_missing", f"the worker could not send back {output['path']}", output.get("node")))
                continue
            outputs.append({**output, "path": str(local)})
        result.outputs = outputs
        self._resolve(job, result, worker=payload["worker"])

    def _worker_died(self, slot: _Slot, job: _Job, exc: Exception) -> None:
        log.warning("Ray worker %s died running a job (attempt %d): %s", slot.label or slot.index, job.attempts, _short(exc))
        job.events_ref = None
        job.avoid.add(slot.index)
        slot.job, slot.state, slot.models = None, "recovering", []
        slot.recovering_since = time.monotonic()
        slot.ping_ref = slot.handle.ready.remote()
        if job.attempts >= self.max_attempts:
            message = f"the worker running this job died {job.attempts} time(s); last: {_short(exc)}"
            self._resolve(job, RunResult("failed", errors=[ErrorInfo("worker_failed", message)]), worker=slot.label)
        else:
            self._queue.appendleft(job)

    def _finish_slot(self, slot: _Slot) -> None:
        slot.job, slot.state = None, "idle"

    @staticmethod
    def _note_holdings(slot: _Slot, info: dict[str, Any]) -> None:
        """Keep what a worker said it holds (its model keys, what ``auto`` means there, its memory)."""
        slot.models = list(info.get("models", []))
        slot.device, slot.dtype = info.get("device"), info.get("dtype")
        slot.memory = dict(info.get("memory") or {})

    def _fail_queued_no_workers(self) -> None:
        reasons = "; ".join(sorted({s.error for s in self._slots if s.error})) or "unknown"
        while self._queue:
            job = self._queue.popleft()
            self._resolve(job, RunResult("failed", errors=[ErrorInfo("worker_failed", f"no Ray worker is alive ({reasons})")]),
                          worker="")

    def _resolve(self, job: _Job, result: RunResult, *, worker: str) -> None:
        if not job.future.done():
            job.future.set_result(JobResult.of(result, worker=worker, attempts=job.attempts))

    def _deliver(self, job: _Job, events: list[Event]) -> None:
        """Write the files that ``output`` events carry, then pass the events to ``on_event`` with local paths."""
        for event in events:
            if event.type == "output":
                blob = event.data.pop("_file", None)
                remote = str(event.data.get("path", ""))
                if blob is not None and blob[1] is not None:
                    job.written[remote] = self._write(job, blob[0], blob[1])
                if remote in job.written:
                    event.data["path"] = str(job.written[remote])
            if job.on_event is not None:
                try:
                    job.on_event(event)
                except Exception:
                    log.exception("on_event callback failed")

    @staticmethod
    def _write(job: _Job, name: str, data: bytes) -> Path:
        """Write ``data`` as ``name`` under the job's folder; an identical file is reused, a different one renamed."""
        parts = [p for p in PurePosixPath(name).parts if p not in ("", ".", "..", "/")]
        target = job.output_dir.joinpath(*parts) if parts else job.output_dir / "output"
        target.parent.mkdir(parents=True, exist_ok=True)
        stem, suffix, n = target.stem, target.suffix, 1
        while target.exists():
            if target.read_bytes() == data:
                return target
            target = target.with_name(f"{stem}-{n}{suffix}")
            n += 1
        target.write_bytes(data)
        return target

    def _ask_all(self, method: str) -> list[dict[str, Any]]:
        live = [s for s in self._slots if s.state in ("idle", "busy")]
        refs = [getattr(s.handle, method).remote() for s in live]
        answers = []
        for slot, ref in zip(live, refs, strict=True):
            try:
                answers.append(self._ray.get(ref, timeout=30))
            except Exception as exc:
                answers.append({"worker": slot.label, "error": _short(exc)})
        return answers


def _short(exc: BaseException) -> str:
    """One line of an exception (Ray's messages run to many lines)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


__all__ = ["RayBackend", "RayUnavailable", "import_ray", "init_ray", "is_loopback_address", "local_worker_priority", "loopback_only"]
