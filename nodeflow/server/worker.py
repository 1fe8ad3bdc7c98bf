r"""The worker: runner threads that run queued runs, as many at once as the backend has workers.

The event loop never runs a graph. It queues rows in the :class:`RunStore` and wakes
the worker. Each of its runner threads (``backend.capacity`` of them) claims the oldest
queued row, runs it on the :class:`~nodeflow.backends.Backend`, records the outcome and
goes on. Claims go one at a time, under one lock, and only while the backend has a
worker ready for one more run (``idle`` or ``busy`` in ``backend.worker_states()``;
a Ray worker still ``starting`` or ``recovering`` does not count), so the queue stays
first in, first out and a run no worker can take yet stays ``queued`` (``GET
/api/system`` says why) instead of failing. Which worker runs it is the backend's
choice (the Ray backend prefers one that holds the run's model).

Executor events are turned into websocket messages here, on the runner thread (so PNG
encoding of previews never blocks the loop), each naming its run, and handed to
``publish``, which the app makes hop to the loop with ``loop.call_soon_threadsafe``.
Each run has its own live state, message budget and cancel token, so concurrent runs
never share any of them.

A graceful stop cancels the running runs and puts them back in the queue, so stopping
the server never loses work; a user's cancel marks its run ``cancelled`` and touches
no other. A cancel, once accepted, always ends the run ``cancelled``: if the node that
was running ignores its token and the run completes anyway, the run is recorded
``cancelled`` with the outputs it made kept (a cancel arriving after the last node has
returned is refused instead). If a stop's grace runs out while nodes ignore their
tokens, the app :meth:`Worker.abandon`\ s the runs: they go back to the queue and
whatever the nodes do later is not recorded.

An outcome the store cannot write (a full disk) stays in the store's memory; the
worker writes it before claiming the next run, and claims nothing while it cannot.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..backends import Backend, JobResult
from ..context import CancelToken
from ..errors import ErrorInfo
from ..events import STATUS_OF_EVENT, Event, EventType, NodeStatus, RunStatus
from ..executor import RunResult
from ..files import PathResolver
from ..graph import parse_graph
from .schemas import (
    FINISHED,
    ErrorModel,
    RunDetail,
    WsNode,
    WsOutput,
    WsPreview,
    WsProgress,
    WsQueue,
    WsRunCancelling,
    WsRunFinished,
    WsRunStarted,
)
from .store import RunStore, count_statuses, first_sentence

log = logging.getLogger("nodeflow.server")

Publish = Callable[[dict[str, Any]], None]
_PREVIEW_MAX_SIDE = 512


def output_url(relative: str) -> str:
    """The API URL of a file under the outputs folder (``RUN_ID/name.png``)."""
    return "/api/outputs/" + "/".join(quote(part, safe="") for part in relative.split("/"))


class MessageBudget:
    """A token bucket: ``burst`` messages at once, then ``rate`` a second (thread-confined, no lock).

    Each run's node-level messages (``node_started``, ``node_cached``, ``node_finished``,
    ``progress``) draw from one: a graph of a few hundred nodes is reported node by node,
    a 50,000-node graph cannot flood the websocket clients (and the event loop that
    feeds them). ``node_failed``, ``node_cancelled`` and run-level messages are never
    dropped, and the run record always has every node's state.
    """

    def __init__(self, burst: float = 500, rate: float = 50):
        self.burst, self.rate = burst, rate
        self.tokens = burst
        self.last = time.monotonic()

    def take(self) -> bool:
        """Spend one message if the budget allows it."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class _LiveRun:
    """What only the worker knows about a run in progress."""

    id: str
    token: CancelToken = field(default_factory=CancelToken)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_preview: float = 0.0
    messages: MessageBudget = field(default_factory=MessageBudget)
    user_cancelled: bool = False
    shutdown: bool = False
    #: set once the backend returned: from then on a cancel is refused (the outcome is being recorded)
    closing: bool = False


class Worker:
    """Runs queued runs on ``backend.capacity`` daemon threads (see the module docstring)."""

    def __init__(
        self,
        store: RunStore,
        backend: Backend,
        outputs_dir: Path,
        publish: Publish,
        *,
        preview_interval: float = 0.25,
        paths: PathResolver | None = None,
        scrub: Callable[[str], str] = str,
    ):
        self.store = store
        self.paths = paths
        self.scrub = scrub
        self.backend = backend
        self.outputs_dir = Path(outputs_dir).resolve()
        self.publish = publish
        self.preview_interval = preview_interval
        self._lock = threading.Lock()
        self._claim_lock = threading.Lock()  # one claim at a time: FIFO, and the capacity check holds until the claim
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._live: dict[str, _LiveRun] = {}
        self._cancel_requests: set[str] = set()
        self._abandoned = False
        self._busy = False  # ran something since the queue last drained
        # daemon: a node that ignores cancellation must not keep the process alive at exit
        self._threads = [threading.Thread(target=self._loop, name=f"nodeflow-worker-{i}", daemon=True)
                         for i in range(max(1, backend.capacity))]

    # -- control (any thread) -------------------------------------------------------
    def start(self) -> None:
        """Start the runner threads; they run whatever is queued already."""
        for thread in self._threads:
            thread.start()

    def wake(self) -> None:
        """Tell the worker a run was queued."""
        self._wake.set()

    def stop(self, timeout: float) -> bool:
        """Stop after the current runs, cancelling them so they return to the queue; False if they did not stop in time."""
        self._stop.set()
        with self._lock:
            for live in self._live.values():
                live.shutdown = True
                live.token.cancel()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def abandon(self) -> list[str]:
        """Give up on the runs in progress after a stop timed out; returns their ids.

        Nothing the worker does afterwards is recorded: the caller puts the runs back in the queue.
        """
        with self._lock:
            self._abandoned = True
            return list(self._live)

    @property
    def capacity(self) -> int:
        """How many runs may run at once (the runner threads)."""
        return len(self._threads)

    def running(self) -> list[str]:
        """The ids of the runs in progress, oldest claim first."""
        with self._lock:
            return list(self._live)

    def request_cancel(self, run_id: str) -> bool:
        """Cancel ``run_id`` if it is running or about to run; False when it is finishing or finished.

        Accepted means the run will end ``cancelled`` (see the module docstring). The
        ``run_cancelling`` message is sent here, with the lock held, so it always reaches
        the websocket before the run's ``run_cancelled`` (whose runner needs the lock first).
        """
        with self._lock:
            live = self._live.get(run_id)
            if live is not None:
                if live.closing:
                    return False
                live.user_cancelled = True
                live.token.cancel()
                self._send(WsRunCancelling(run=run_id))  # after the token is set: what follows is the last step's
                return True
            # claimed but not started yet, or queued: the worker checks this set when it starts the run
            record = self.store.get(run_id)
            if record is None or record.status in FINISHED:
                return False
            self._cancel_requests.add(run_id)
            self._send(WsRunCancelling(run=run_id))
            return True

    def live_nodes(self, run_id: str) -> dict[str, dict[str, Any]] | None:
        """A copy of the node states of ``run_id`` while it runs, else ``None``."""
        with self._lock:
            live = self._live.get(run_id)
            return None if live is None else {k: dict(v) for k, v in live.nodes.items()}

    def live_counts(self, run_id: str) -> dict[str, int] | None:
        """How many nodes of ``run_id`` are in each status while it runs, else ``None``."""
        with self._lock:
            live = self._live.get(run_id)
            return None if live is None else count_statuses(live.nodes)

    # -- the thread -------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            claimed = self._next()
            if claimed is None:
                self._idle()
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            record, live = claimed
            try:
                self._execute(record, live)
            except Exception:  # e.g. the database went away; keep the thread, the crash policy covers the row
                log.exception("worker: run %s could not be recorded", record.id)
                with self._lock:
                    self._live.pop(record.id, None)
            self._wake.set()  # a runner held back by the capacity check may claim now

    def _idle(self) -> None:
        """Nothing to claim: once no run is left in progress, hand the freed memory back to the system."""
        with self._lock:
            drained = self._busy and not self._live
            if drained:
                self._busy = False
        if drained:
            release_free_memory()

    def _next(self) -> tuple[RunDetail, _LiveRun] | None:
        """Write what a full disk kept in memory, then claim the next run if a backend worker is ready for it.

        Nothing is claimed while the disk is still full, nor while every ready worker has a run.
        """
        with self._claim_lock:
            try:
                if self._stop.is_set() or not self.store.flush() or self.in_progress() >= self.ready_workers():
                    return None
                record = self.store.claim_next()
            except Exception:
                log.exception("worker: cannot read the queue")
                self._stop.wait(1.0)
                return None
            return None if record is None else (record, self._start(record))

    def in_progress(self) -> int:
        """How many runs are claimed and not yet recorded."""
        with self._lock:
            return len(self._live)

    def ready_workers(self) -> int:
        """How many backend workers can take a run now (``idle`` or ``busy``), at most the runner threads."""
        try:
            states = self.backend.worker_states()
        except Exception:  # a backend that cannot say: trust its capacity
            log.exception("worker: the backend did not report its workers")
            return len(self._threads)
        return min(len(self._threads), sum(1 for w in states if w.get("state") in ("idle", "busy")))

    def _execute(self, record: RunDetail, live: _LiveRun) -> None:
        run_dir = self.outputs_dir / record.id
        self._publish_queue(record.id)
        self._send(WsRunStarted(run=record.id, nodes=record.node_total))
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            result = self.backend.run(parse_graph(record.graph), {}, run_dir, lambda e: self._on_event(live, e), live.token,
                                      self.paths, label=record.id)
        except Exception as exc:  # a backend bug must fail one run, not kill the worker
            log.exception("run %s: the backend raised", record.id)
            result = RunResult(RunStatus.FAILED, errors=[ErrorInfo("internal_error", f"the server failed to run the graph: {type(exc).__name__}: {exc}")])
        with self._lock:
            live.closing = True  # no cancel is accepted past this point
            abandoned = self._abandoned
        try:
            if abandoned:
                log.info("run %s ended after the server gave up waiting for it; not recorded", record.id)
            elif live.shutdown and not live.user_cancelled and result.status == RunStatus.CANCELLED:
                self.store.requeue(record.id)
                log.info("run %s interrupted by shutdown; back in the queue", record.id)
            else:
                self._record(record, result, run_dir, live.user_cancelled)
        finally:
            with self._lock:
                self._live.pop(record.id, None)
                self._cancel_requests.discard(record.id)

    def _start(self, record: RunDetail) -> _LiveRun:
        """Make ``record`` a run in progress, applying a cancel or a stop that came first."""
        live = _LiveRun(record.id)
        with self._lock:
            self._live[record.id] = live
            self._busy = True
            if record.id in self._cancel_requests:
                live.user_cancelled = True
                live.token.cancel()
            if self._stop.is_set():
                live.shutdown = True
                live.token.cancel()
        return live

    def _record(self, record: RunDetail, result: RunResult, run_dir: Path, user_cancelled: bool) -> None:
        """Write the outcome, tell the websocket, log one line."""
        status = RunStatus(result.status)
        errors = [{**e.to_dict(), "message": self.scrub(e.message)} for e in result.errors]
        if user_cancelled and status == RunStatus.SUCCEEDED:  # the node in progress ignored the cancel and the run completed
            status = RunStatus.CANCELLED
            errors = [{"code": "cancelled", "node": None, "input": None,
                       "message": "the run was cancelled while its last step was running; that step finished and its outputs are kept"}]
        outputs = [self._output_info(o, run_dir) for o in result.outputs]
        nodes = {k: {"type": r.type, "status": NodeStatus(r.status).value, "seconds": round(r.seconds, 4)} for k, r in result.nodes.items()}
        values = {node: {k: self.scrub(v) if isinstance(v, str) else v for k, v in out.items()}
                  for node, out in result.shown_values().items()}
        worker = result.worker if isinstance(result, JobResult) else None
        self.store.finish(record.id, status.value, seconds=round(result.seconds, 4), nodes=nodes, outputs=outputs, errors=errors,
                          values=values, worker=worker)
        first_error = first_sentence(errors)
        self._send(
            WsRunFinished(
                type=f"run_{status.value}",  # type: ignore[arg-type]
                run=record.id,
                seconds=round(result.seconds, 4),
                error=first_error,
                errors=[ErrorModel(**e) for e in errors],
                outputs=outputs,  # type: ignore[arg-type]
                values=values,
            )
        )
        self._publish_queue(record.id)
        what = record.workflow or "graph"
        retried = f", {result.attempts} attempts" if isinstance(result, JobResult) and result.attempts > 1 else ""
        log.info("run %s %s in %.2fs (%s, %d nodes%s%s)%s", record.id, status.value, result.seconds, what,
                 len(result.nodes), f", worker {worker}" if worker else "", retried, f": {first_error}" if first_error else "")

    def _on_progress(self, live: _LiveRun, node: str | None, data: dict[str, Any]) -> None:
        """A step inside a node: live state, and a websocket message; ``info`` carries what else it reported (a loss)."""
        value, maximum = float(data.get("value", 0)), float(data.get("max", 0))
        info = {k: v for k, v in data.items() if k not in ("value", "max") and isinstance(v, (int, float, str))}
        with self._lock:
            if node is not None:
                live.nodes.setdefault(node, {"status": NodeStatus.RUNNING.value})["progress"] = {"value": value, "max": maximum, "info": info}
        if live.messages.take():
            self._send(WsProgress(run=live.id, node=node, value=value, max=maximum, info=info))

    def _on_event(self, live: _LiveRun, event: Event) -> None:
        """Executor event -> live state + websocket message (on the worker thread)."""
        kind, node, data = event.type, event.node, event.data
        if kind in STATUS_OF_EVENT and node is not None:
            self._on_node(live, kind, node, data)
        elif kind is EventType.PROGRESS:
            self._on_progress(live, node, data)
        elif kind is EventType.PREVIEW:
            now = time.monotonic()
            if now - live.last_preview < self.preview_interval:
                return  # throttled: previews are cheap for nodes to offer, not for browsers to receive
            url = _png_data_url(data.get("image"))
            if url is not None:
                live.last_preview = now
                self._send(WsPreview(run=live.id, node=node, image=url))
        elif kind is EventType.OUTPUT:
            rel = self._relative(data.get("path", ""))
            self._send(WsOutput(run=live.id, node=node, kind=str(data.get("kind", "file")), url=output_url(rel) if rel else None))

    def _on_node(self, live: _LiveRun, kind: EventType, node: str, data: dict[str, Any]) -> None:
        with self._lock:
            state = live.nodes.setdefault(node, {})
            state.update(type=data.get("type"), status=STATUS_OF_EVENT[kind].value)
            state.pop("progress", None)
            if "seconds" in data:
                state["seconds"] = round(float(data["seconds"]), 4)
        if kind not in (EventType.NODE_FAILED, EventType.NODE_CANCELLED) and not live.messages.take():
            return  # over this run's message budget: the live state and the record still have it
        error = data.get("error")
        self._send(WsNode(type=kind.value, run=live.id, node=node, node_type=data.get("type"),  # type: ignore[arg-type]
                          seconds=data.get("seconds"), error=ErrorModel(**error) if error else None))

    # -- outputs ----------------------------------------------------------------------
    def _relative(self, path: str) -> str | None:
        """``path`` relative to the outputs folder (POSIX), or ``None`` if it lies elsewhere."""
        try:
            return Path(path).resolve().relative_to(self.outputs_dir).as_posix()
        except (ValueError, OSError):
            return None

    def _output_info(self, output: dict[str, Any], run_dir: Path) -> dict[str, Any]:
        """The stored form of one output; a file from an earlier run (a cache hit) is linked into this run's folder.

        Linking keeps every run's folder complete, so deleting an old run never breaks
        a newer run's history.
        """
        info = {k: v for k, v in output.items() if k not in ("path", "url")}
        rel = self._relative(str(output.get("path", "")))
        if rel is not None and not rel.startswith(run_dir.name + "/"):
            rel = self._adopt(self.outputs_dir / rel, run_dir)
        info.update(node=output.get("node"), kind=output.get("kind", "file"), path=rel or "", url=output_url(rel) if rel else None)
        return info

    def _adopt(self, source: Path, run_dir: Path) -> str | None:
        if not source.is_file():
            return None
        target = run_dir / source.name
        n = 1
        while target.exists():
            target = run_dir / f"{source.stem}-{n}{source.suffix}"
            n += 1
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
        return target.relative_to(self.outputs_dir).as_posix()

    # -- messages -----------------------------------------------------------------------
    def _send(self, message: Any) -> None:
        self.publish(message.model_dump(mode="json"))

    def _publish_queue(self, run_id: str | None) -> None:
        queued, running = self.store.queue_state()
        self._send(WsQueue(run=run_id, queued=queued, running=running[0] if running else None, running_ids=running))


def release_free_memory() -> None:
    """Return the C heap's free pages to the system (glibc's ``malloc_trim``; elsewhere nothing).

    After a large run, the memory its Python objects used is free but stays mapped in
    malloc's arenas (one per thread that allocated), so the server's RSS would stay at
    its peak. ctypes releases the GIL for the call.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _png_data_url(image: Any) -> str | None:
    """A PIL image as a ``data:image/png;base64,...`` URL, at most 512 px on its long side."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        return None
    if max(image.size) > _PREVIEW_MAX_SIDE:
        image = image.copy()
        image.thumbnail((_PREVIEW_MAX_SIDE, _PREVIEW_MAX_SIDE))
    if image.mode not in ("RGB", "RGBA", "L"):
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)  # speed over size: previews are transient
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
