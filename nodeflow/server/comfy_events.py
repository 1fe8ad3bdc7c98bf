"""ComfyUI's websocket (``/ws?clientId=``): its clients, and nodeflow's run events told its way.

:class:`ComfySockets` holds the connected clients by id (``clientId``, else a new one);
each has a bounded queue drained by its own sender, like the native hub. On connect a
client gets ``status`` with its ``sid``.

:class:`EventBridge` listens to every native websocket message (on the loop) and sends
what a ComfyUI client expects, to the client that queued the prompt (``client_id``), or
to everyone for runs queued without one (native runs included):

========================  ================================================================
native                    ComfyUI
========================  ================================================================
queue                     status ``{"status": {"exec_info": {"queue_remaining": n}}}``
run_started               execution_start ``{prompt_id, timestamp}``
node_cached               execution_cached ``{nodes, prompt_id, timestamp}`` (gathered)
node_started              executing ``{node, display_node, prompt_id}`` (once per ComfyUI node)
progress                  progress ``{value, max, prompt_id, node}``
preview                   binary: 4-byte event 1, 4-byte format 2 (PNG), then the PNG
output + node_finished    executed ``{node, display_node, output: {images}, prompt_id}``
run_succeeded             execution_success, then executing ``{node: null, prompt_id}``
run_failed                execution_error ``{prompt_id, node_id, node_type, executed,
                          exception_message, exception_type, traceback, ...}``, then
                          executing null
run_cancelled             execution_interrupted ``{prompt_id, node_id, node_type,
                          executed}``, then executing null
========================  ================================================================

Node ids are the ComfyUI prompt's: a nodeflow node made from ComfyUI node ``3``
(``3.scheduler``, ``3.noise``...) is reported as ``3`` (the run's ``meta.comfy.ids``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import WSCloseCode, WSMsgType, web

log = logging.getLogger("nodeflow.server")

#: ComfyUI's binary event types and preview formats.
PREVIEW_IMAGE = 1
PREVIEW_PNG = 2
_OUTPUT_URL = "/api/outputs/"


def prompt_id_of(run_id: str) -> str:
    """The ComfyUI prompt id a run id stands for (the same UUID, with hyphens)."""
    return str(uuid.UUID(hex=run_id))


def image_ref(relative: str, kind: str) -> dict[str, str]:
    """``{filename, subfolder, type}`` for a file under the outputs folder (``RUN_ID/name.png``)."""
    folder, _, name = relative.rpartition("/")
    return {"filename": name, "subfolder": folder, "type": "temp" if kind == "preview" else "output"}


def preview_frame(data_url: str) -> bytes | None:
    """A native preview (``data:image/png;base64,...``) as ComfyUI's binary preview message."""
    head, _, payload = data_url.partition(",")
    if not head.startswith("data:image/png;base64"):
        return None
    try:
        png = base64.b64decode(payload, validate=True)
    except ValueError:
        return None
    return struct.pack(">II", PREVIEW_IMAGE, PREVIEW_PNG) + png


class _Client:
    def __init__(self, ws: web.WebSocketResponse, queue_size: int):
        self.ws = ws
        self.queue: asyncio.Queue[str | bytes] = asyncio.Queue(queue_size)


class ComfySockets:
    """ComfyUI websocket clients by id; sending never awaits (see the module docstring)."""

    def __init__(self, status: Callable[[], dict[str, Any]], queue_size: int = 2000):
        self._status = status
        self._queue_size = queue_size
        self._clients: dict[str, _Client] = {}

    def send(self, message: dict[str, Any] | bytes, sid: str | None = None) -> None:
        """Queue ``message`` for client ``sid`` (None: every client); JSON messages are ``{type, data}`` dicts."""
        payload = message if isinstance(message, bytes) else json.dumps(message)
        targets = list(self._clients.items()) if sid is None else [(sid, self._clients[sid])] if sid in self._clients else []
        for client_id, client in targets:
            try:
                client.queue.put_nowait(payload)
            except asyncio.QueueFull:
                log.warning("ComfyUI websocket client fell behind; disconnecting it")
                self._clients.pop(client_id, None)
                asyncio.ensure_future(client.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow"))

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        """Upgrade, send ``status`` with the client's ``sid``, then stream until it goes."""
        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        old = self._clients.pop(sid, None)
        if old is not None:  # a client reconnecting with its id replaces its old socket
            asyncio.ensure_future(old.ws.close(code=WSCloseCode.GOING_AWAY, message=b"replaced"))
        client = _Client(ws, self._queue_size)
        self._clients[sid] = client
        client.queue.put_nowait(json.dumps({"type": "status", "data": {"status": self._status(), "sid": sid}}))
        sender = asyncio.create_task(self._send_loop(client))
        try:
            async for msg in ws:  # ComfyUI clients send nothing the server acts on
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            if self._clients.get(sid) is client:
                del self._clients[sid]
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        return ws

    async def _send_loop(self, client: _Client) -> None:
        while True:
            payload = await client.queue.get()
            try:
                if isinstance(payload, bytes):
                    await client.ws.send_bytes(payload)
                else:
                    await client.ws.send_str(payload)
            except (ConnectionError, RuntimeError):
                return

    async def close(self) -> None:
        """Close every socket (the server is stopping)."""
        for client in list(self._clients.values()):
            await client.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping")
        self._clients.clear()


@dataclass
class _Run:
    """What the bridge knows of a run in progress."""

    prompt_id: str
    client: str | None
    ids: dict[str, str]
    classes: dict[str, str]
    executing: str | None = None
    cached: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    images: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    sent: set[str] = field(default_factory=set)
    failed: dict[str, Any] | None = None

    def comfy(self, node: str | None) -> str | None:
        """The ComfyUI id of nodeflow node ``node`` (itself for a graph that did not come from ComfyUI)."""
        return None if node is None else self.ids.get(node, node)


class EventBridge:
    """Turns native websocket messages into ComfyUI's (see the module docstring)."""

    def __init__(self, sockets: ComfySockets, run_info: Callable[[str], dict[str, Any]], status: Callable[[], dict[str, Any]]):
        self.sockets = sockets
        self._run_info = run_info
        self._status = status
        self._runs: dict[str, _Run] = {}

    def __call__(self, message: dict[str, Any]) -> None:
        """Handle one native message (on the loop); never raises into the publisher."""
        try:
            self._handle(message)
        except Exception:  # a bridge bug must not break the native websocket
            log.exception("ComfyUI event bridge: cannot translate %s", message.get("type"))

    def _handle(self, message: dict[str, Any]) -> None:
        kind, run_id = message.get("type"), message.get("run")
        if kind == "queue":
            self.sockets.send({"type": "status", "data": {"status": self._status()}})
            return
        if not isinstance(run_id, str):
            return
        if kind == "run_started":
            info = self._run_info(run_id)
            started = self._runs[run_id] = _Run(info.get("prompt_id") or prompt_id_of(run_id), info.get("client_id"),
                                                info.get("ids", {}), info.get("classes", {}))
            self._send(started, "execution_start", {"timestamp": _now()})
            return
        run = self._runs.get(run_id)
        if run is not None:
            handler = _HANDLERS.get(str(kind))
            if handler is not None:
                handler(self, run, message)
            if str(kind).startswith("run_") and str(kind) not in ("run_started", "run_cancelling"):
                self._runs.pop(run_id, None)

    def _send(self, run: _Run, kind: str, data: dict[str, Any]) -> None:
        self.sockets.send({"type": kind, "data": {**data, "prompt_id": run.prompt_id}}, run.client)

    def _flush_cached(self, run: _Run) -> None:
        if run.cached:
            self._send(run, "execution_cached", {"nodes": list(dict.fromkeys(run.cached)), "timestamp": _now()})
            run.cached.clear()

    # -- per message -------------------------------------------------------------------------
    def _node_cached(self, run: _Run, message: dict[str, Any]) -> None:
        cid = run.comfy(message.get("node"))
        if cid is not None:
            run.cached.append(cid)
            run.done.append(cid)

    def _node_started(self, run: _Run, message: dict[str, Any]) -> None:
        self._flush_cached(run)
        cid = run.comfy(message.get("node"))
        if cid is not None and cid != run.executing:
            run.executing = cid
            self._send(run, "executing", {"node": cid, "display_node": cid})

    def _node_finished(self, run: _Run, message: dict[str, Any]) -> None:
        cid = run.comfy(message.get("node"))
        if cid is None:
            return
        run.done.append(cid)
        if cid in run.images and cid not in run.sent:
            run.sent.add(cid)
            self._send(run, "executed", {"node": cid, "display_node": cid, "output": {"images": run.images[cid]}})

    def _node_failed(self, run: _Run, message: dict[str, Any]) -> None:
        run.failed = {"node": message.get("node"), "error": message.get("error") or {}}

    def _progress(self, run: _Run, message: dict[str, Any]) -> None:
        self._send(run, "progress", {"value": message.get("value"), "max": message.get("max"), "node": run.comfy(message.get("node"))})

    def _preview(self, run: _Run, message: dict[str, Any]) -> None:
        frame = preview_frame(str(message.get("image") or ""))
        if frame is not None:
            self.sockets.send(frame, run.client)

    def _output(self, run: _Run, message: dict[str, Any]) -> None:
        url = message.get("url")
        cid = run.comfy(message.get("node"))
        if cid is not None and isinstance(url, str) and url.startswith(_OUTPUT_URL):
            run.images.setdefault(cid, []).append(image_ref(unquote(url[len(_OUTPUT_URL):]), str(message.get("kind"))))

    def _finished(self, run: _Run, message: dict[str, Any]) -> None:
        self._flush_cached(run)
        self._executed_from_record(run, message.get("outputs") or [])
        kind = message.get("type")
        if kind == "run_succeeded":
            self._send(run, "execution_success", {"timestamp": _now()})
        elif kind == "run_cancelled":
            self._send(run, "execution_interrupted", {**self._where(run), "timestamp": _now()})
        else:
            self._send(run, "execution_error", {**self._where(run), **_exception(run, message), "timestamp": _now()})
        self._send(run, "executing", {"node": None})

    def _executed_from_record(self, run: _Run, outputs: list[dict[str, Any]]) -> None:
        """``executed`` for output nodes served from the cache (their files are in the run's outputs, not in events)."""
        found: dict[str, list[dict[str, str]]] = {}
        for output in outputs:
            cid = run.comfy(output.get("node"))
            if cid is not None and cid not in run.sent and output.get("path"):
                found.setdefault(cid, []).append(image_ref(str(output["path"]), str(output.get("kind"))))
        for cid, images in found.items():
            run.sent.add(cid)
            self._send(run, "executed", {"node": cid, "display_node": cid, "output": {"images": images}})

    def _where(self, run: _Run) -> dict[str, Any]:
        node = run.comfy(run.failed["node"]) if run.failed else run.executing
        return {"node_id": node, "node_type": run.classes.get(node or "", None), "executed": list(dict.fromkeys(run.done))}


def _exception(run: _Run, message: dict[str, Any]) -> dict[str, Any]:
    error = (run.failed or {}).get("error") or next(iter(message.get("errors") or []), None) or {}
    return {"exception_message": str(error.get("message") or message.get("error") or "the run failed"),
            "exception_type": str(error.get("code") or "error"), "traceback": [], "current_inputs": {}, "current_outputs": {}}


def _now() -> int:
    return int(time.time() * 1000)


_HANDLERS: dict[str, Callable[[EventBridge, _Run, dict[str, Any]], None]] = {
    "node_cached": EventBridge._node_cached,
    "node_started": EventBridge._node_started,
    "node_finished": EventBridge._node_finished,
    "node_failed": EventBridge._node_failed,
    "progress": EventBridge._progress,
    "preview": EventBridge._preview,
    "output": EventBridge._output,
    "run_succeeded": EventBridge._finished,
    "run_failed": EventBridge._finished,
    "run_cancelled": EventBridge._finished,
}


__all__ = ["PREVIEW_IMAGE", "PREVIEW_PNG", "ComfySockets", "EventBridge", "image_ref", "preview_frame", "prompt_id_of"]
