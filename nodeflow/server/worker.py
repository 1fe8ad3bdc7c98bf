"""The worker: one background thread that runs queued runs in order.

The event loop never runs a graph. It queues rows in the :class:`RunStore` and wakes
the worker; the worker claims the oldest queued row, runs it on the
:class:`ExecutionBackend`, records the outcome and goes on. Executor events are
turned into websocket messages here, on the worker thread (so PNG encoding of
previews never blocks the loop), and handed to ``publish``, which the app makes hop
to the loop with ``loop.call_soon_threadsafe``.

A graceful stop cancels the running run and puts it back in the queue, so stopping
the server never loses work; a user's cancel marks it ``cancelled``.
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

from ..backends import Backend
from ..context import CancelToken
from ..errors import ErrorInfo
from ..events import STATUS_OF_EVENT, Event, EventType, NodeStatus, RunStatus
from ..executor import RunResult
from ..files import PathResolver
from ..graph import parse_graph
from .schemas import ErrorModel, WsNode, WsOutput, WsPreview, WsProgress, WsQueue, WsRunFinished, WsRunStarted
from .store import RunRecord, RunStore

log = logging.getLogger("nodeflow.server")

Publish = Callable[[dict[str, Any]], None]
_PREVIEW_MAX_SIDE = 512


def output_url(relative: str) -> str:
    """The API URL of a file under the outputs folder (``RUN_ID/name.png``)."""
    return "/api/outputs/" + "/".join(quote(part, safe="") for part in relative.split("/"))


@dataclass
class _LiveRun:
    """What only the worker knows about the run in progress."""

    id: str
    token: CancelToken = field(default_factory=CancelToken)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_preview: float = 0.0
    user_cancelled: bool = False
    shutdown: bool = False


class Worker:
    """Runs queued runs one at a time on a daemon thread (see the module docstring)."""

    def __init__(
        self,
        store: RunStore,
        backend: Backend,
        outputs_dir: Path,
        publish: Publish,
        *,
        preview_interval: float = 0.25,
        paths: PathResolver | None = None,
    ):
        self.store = store
        self.backend = backend
        self.outputs_dir = Path(outputs_dir).resolve()
        self.publish = publish
        self.preview_interval = preview_interval
        self.paths = paths
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._current: _LiveRun | None = None
        self._cancel_requests: set[str] = set()
        # daemon: a node that ignores cancellation must not keep the process alive at exit
        self._thread = threading.Thread(target=self._loop, name="nodeflow-worker", daemon=True)

    # -- control (any thread) -------------------------------------------------------
    def start(self) -> None:
        """Start the thread; it runs whatever is queued already."""
        self._thread.start()

    def wake(self) -> None:
        """Tell the worker a run was queued."""
        self._wake.set()

    def stop(self, timeout: float) -> bool:
        """Stop after the current run, cancelling it so it returns to the queue; False if it did not stop in time."""
        self._stop.set()
        with self._lock:
            if self._current is not None:
                self._current.shutdown = True
                self._current.token.cancel()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def request_cancel(self, run_id: str) -> None:
        """Cancel ``run_id`` if it is running or about to run (it was claimed but not yet started)."""
        with self._lock:
            if self._current is not None and self._current.id == run_id:
                self._current.user_cancelled = True
                self._current.token.cancel()
            else:
                self._cancel_requests.add(run_id)

    def live_nodes(self, run_id: str) -> dict[str, dict[str, Any]] | None:
        """A copy of the node states of ``run_id`` while it runs, else ``None``."""
        with self._lock:
            if self._current is None or self._current.id != run_id:
                return None
            return {k: dict(v) for k, v in self._current.nodes.items()}

    # -- the thread -------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                record = self.store.claim_next()
            except Exception:
                log.exception("worker: cannot read the queue")
                record = None
                time.sleep(1.0)
            if record is None:
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            try:
                self._execute(record)
            except Exception:  # e.g. the database went away; keep the thread, the crash policy covers the row
                log.exception("worker: run %s could not be recorded", record.id)
                with self._lock:
                    self._current = None

    def _execute(self, record: RunRecord) -> None:
        run_dir = self.outputs_dir / record.id
        live = _LiveRun(record.id)
        with self._lock:
            self._current = live
            if record.id in self._cancel_requests:
                self._cancel_requests.discard(record.id)
                live.user_cancelled = True
                live.token.cancel()
            if self._stop.is_set():
                live.shutdown = True
                live.token.cancel()
        self._publish_queue(record.id)
        self._send(WsRunStarted(run=record.id, nodes=len(record.graph.get("nodes", {}))))
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            result = self.backend.run(parse_graph(record.graph), {}, run_dir, lambda e: self._on_event(live, e), live.token,
                                      self.paths)
        except Exception as exc:  # a backend bug must fail one run, not kill the worker
            log.exception("run %s: the backend raised", record.id)
            result = RunResult(RunStatus.FAILED, errors=[ErrorInfo("internal_error", f"the server failed to run the graph: {type(exc).__name__}: {exc}")])
        with self._lock:
            self._current = None
        if live.shutdown and not live.user_cancelled and result.status == RunStatus.CANCELLED:
            self.store.requeue(record.id)
            log.info("run %s interrupted by shutdown; back in the queue", record.id)
            return
        outputs = [self._output_info(o, run_dir) for o in result.outputs]
        errors = [e.to_dict() for e in result.errors]
        nodes = {k: {"type": r.type, "status": r.status.value, "seconds": round(r.seconds, 4)} for k, r in result.nodes.items()}
        self.store.finish(record.id, result.status.value, seconds=round(result.seconds, 4), nodes=nodes, outputs=outputs, errors=errors)
        first_error = str(result.errors[0]) if result.errors else None
        self._send(
            WsRunFinished(
                type=f"run_{result.status.value}",  # type: ignore[arg-type]
                run=record.id,
                seconds=round(result.seconds, 4),
                error=first_error,
                errors=[ErrorModel(**e) for e in errors],
                outputs=outputs,  # type: ignore[arg-type]
            )
        )
        self._publish_queue(record.id)
        what = record.workflow or "graph"
        log.info("run %s %s in %.2fs (%s, %d nodes)%s", record.id, result.status, result.seconds, what,
                 len(result.nodes), f": {first_error}" if first_error else "")

    def _on_event(self, live: _LiveRun, event: Event) -> None:
        """Executor event -> live state + websocket message (on the worker thread)."""
        kind, node, data = event.type, event.node, event.data
        status = STATUS_OF_EVENT.get(kind)
        if status is not None and node is not None:
            with self._lock:
                state = live.nodes.setdefault(node, {})
                state.update(type=data.get("type"), status=status.value)
                state.pop("progress", None)
                if "seconds" in data:
                    state["seconds"] = round(float(data["seconds"]), 4)
            error = data.get("error")
            self._send(WsNode(type=kind.value, run=live.id, node=node, node_type=data.get("type"),  # type: ignore[arg-type]
                              seconds=data.get("seconds"), error=ErrorModel(**error) if error else None))
        elif kind is EventType.PROGRESS:
            value, maximum = float(data.get("value", 0)), float(data.get("max", 0))
            with self._lock:
                if node is not None:
                    live.nodes.setdefault(node, {"status": NodeStatus.RUNNING.value})["progress"] = {"value": value, "max": maximum}
            self._send(WsProgress(run=live.id, node=node, value=value, max=maximum))
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
        self._send(WsQueue(run=run_id, queued=queued, running=running))


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
