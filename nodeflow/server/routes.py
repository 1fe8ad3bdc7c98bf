"""The HTTP API: one table of routes, and the handlers it names.

:data:`ROUTES` is the single source for both the aiohttp router and the OpenAPI
document (:mod:`nodeflow.server.openapi`): each entry names its handler, its body
and its responses by model, so a route cannot exist undocumented.

The event loop only moves bytes. Decoding, parsing, validating, reading and writing
the store, and serialising answers run in threads: work whose size the client
chooses (bodies, graphs, pages of history) on the server's two ``heavy`` threads,
quick reads on asyncio's default pool, so a large request never delays a small one.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from .. import __version__
from ..errors import GraphInvalid
from ..events import RunStatus
from ..graph import apply_inputs
from ..validate import validate
from .bodies import decode_json, parse_graph_within, read_body
from .palette import type_colour
from .replies import ApiError, reply
from .schemas import (
    CacheStats,
    Catalogue,
    ErrorModel,
    NodeState,
    QueueState,
    RunCreated,
    RunDetail,
    RunList,
    RunRef,
    RunRequest,
    SystemInfo,
    UploadInfo,
    UploadList,
    WorkerInfo,
    WorkflowList,
    WorkflowSaved,
    WsRunFinished,
    client_catalogue,
)
from .security import resolve_inside

if TYPE_CHECKING:
    from .app import Server

log = logging.getLogger("nodeflow.server")

_RUN_ID_RE = re.compile(r"[0-9a-f]{32}")
T = TypeVar("T")
_VERSIONED = ("torch", "diffusers", "transformers", "aiohttp", "pydantic", "safetensors", "pillow")


@dataclass(frozen=True)
class Query:
    """A documented query parameter."""

    name: str
    type: str
    description: str
    default: Any = None


@dataclass(frozen=True)
class Route:
    """One endpoint: method, aiohttp path pattern, handler name, and what it takes and answers.

    ``body`` and response values are a pydantic model, or one of the strings
    ``"graph"`` (a graph document), ``"multipart"`` (an uploaded file), ``"file"``,
    ``"html"``, ``"websocket"``; ``None`` means no body.
    """

    method: str
    path: str
    handler: str
    summary: str
    tag: str
    body: type[BaseModel] | str | None = None
    responses: dict[int, type[BaseModel] | str | None] = field(default_factory=dict)
    query: tuple[Query, ...] = ()


_PAGE = (
    Query("limit", "integer", "page size, 1-200", 50),
    Query("offset", "integer", "runs to skip from the newest", 0),
    Query("status", "string", "only runs with this status"),
)

ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/openapi.json", "openapi", "This document", "meta", responses={200: "openapi"}),
    Route("GET", "/api/nodes", "nodes", "Node schemas and the type compatibility table", "nodes", responses={200: Catalogue}),
    Route("GET", "/api/workflows", "workflows_list", "List saved and built-in workflows", "workflows", responses={200: WorkflowList}),
    Route("GET", "/api/workflows/{name}", "workflow_get", "Read a workflow's graph document", "workflows",
          responses={200: "graph", 400: None, 404: None}),
    Route("PUT", "/api/workflows/{name}", "workflow_put", "Save a user workflow (a graph document)", "workflows", body="graph",
          responses={200: WorkflowSaved, 201: WorkflowSaved, 400: None, 403: None, 408: None, 413: None, 415: None, 507: None}),
    Route("DELETE", "/api/workflows/{name}", "workflow_delete", "Delete a user workflow", "workflows",
          responses={204: None, 400: None, 403: None, 404: None}),
    Route("POST", "/api/runs", "runs_create", "Queue a run of a graph or a saved workflow", "runs", body=RunRequest,
          responses={202: RunCreated, 400: None, 408: None, 413: None, 415: None, 507: None}),
    Route("GET", "/api/runs", "runs_list", "History and queue, newest first, paged", "runs", responses={200: RunList, 400: None}, query=_PAGE),
    Route("GET", "/api/runs/{id}", "run_get", "One run: status, nodes, outputs, errors", "runs", responses={200: RunDetail, 404: None}),
    Route("POST", "/api/runs/{id}/cancel", "run_cancel",
          "Cancel a run: a queued one at once (200), a running one at its next check (202)", "runs",
          responses={200: RunRef, 202: RunRef, 404: None, 409: None}),
    Route("DELETE", "/api/runs/{id}", "run_delete", "Delete a finished or queued run and its output files", "runs",
          responses={200: RunRef, 404: None, 409: None, 507: None}),
    Route("GET", "/api/outputs/{path:.+}", "output_get", "An output file (RUN_ID/NAME); accepts ?token=", "files",
          responses={200: "file", 400: None, 404: None}),
    Route("GET", "/api/uploads", "uploads_list", "Uploaded images, newest first", "files", responses={200: UploadList}),
    Route("POST", "/api/uploads", "uploads_create", "Upload an image for image-loading nodes (multipart/form-data)", "files",
          body="multipart", responses={201: UploadInfo, 400: None, 408: None, 413: None, 415: None, 507: None}),
    Route("GET", "/api/uploads/{name}", "upload_get", "An uploaded image; accepts ?token=", "files",
          responses={200: "file", 400: None, 404: None}),
    Route("GET", "/api/system", "system", "Versions, device, memory, queue length, cache statistics", "system", responses={200: SystemInfo}),
    Route("POST", "/api/cache/clear", "cache_clear", "Empty the result cache (loaded models stay)", "system", responses={200: CacheStats}),
    Route("GET", "/api/ws", "websocket", "Websocket of run events (JSON messages); accepts ?token=", "events",
          responses={101: "websocket"}),
    Route("GET", "/", "index", "The editor", "editor", responses={200: "html"}),
    Route("GET", "/{path:.+}", "static", "The editor's static files", "editor", responses={200: "file", 404: None}),
)


class Api:
    """The handlers, bound to one composed :class:`~nodeflow.server.app.Server`."""

    def __init__(self, server: Server):
        self.server = server
        self.config = server.config
        self._device: dict[str, Any] | None = None
        self._versions: dict[str, str | None] | None = None
        self._openapi: dict[str, Any] | None = None

    def add_routes(self, app: web.Application) -> None:
        """Register every entry of :data:`ROUTES` (``GET`` also answers ``HEAD``)."""
        for route in ROUTES:
            handler = getattr(self, route.handler)
            if route.method == "GET":
                app.router.add_get(route.path, handler, allow_head=route.handler != "websocket")
            else:
                app.router.add_route(route.method, route.path, handler)

    # -- off the loop ---------------------------------------------------------------------
    async def heavy(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the server's heavy threads (work whose size the client chooses)."""
        return await asyncio.get_running_loop().run_in_executor(self.server.heavy, partial(fn, *args))

    async def answer(self, build: Callable[[], BaseModel], status: int = 200) -> web.Response:
        """Build a response model and serialise it on a heavy thread."""
        body = await self.heavy(lambda: build().model_dump_json().encode())
        return web.Response(body=body, status=status, content_type="application/json")

    async def json_body(self, request: web.Request) -> Any:
        """The request's JSON body within the documented limits (see :mod:`nodeflow.server.bodies`).

        415 unless it is declared ``application/json`` (HTML forms cannot do that cross-site).
        """
        if request.content_type != "application/json":
            raise ApiError(415, "unsupported_media_type", "send JSON with Content-Type: application/json")
        raw = await read_body(request, self.config.max_json_bytes, self.config.body_timeout)
        return await self.heavy(decode_json, raw, self.config.max_json_depth)

    # -- meta & nodes -----------------------------------------------------------------
    async def openapi(self, request: web.Request) -> web.Response:
        """The OpenAPI document of this API."""
        if self._openapi is None:
            from .comfy_api import COMFY_ROUTES  # lazy: they import this module's Route
            from .model_routes import MODEL_ROUTES
            from .openapi import build_openapi

            self._openapi = build_openapi((*MODEL_ROUTES, *ROUTES, *COMFY_ROUTES))
        return web.json_response(self._openapi)

    async def nodes(self, request: web.Request) -> web.Response:
        """What the editor builds its palette, connection rules and run vocabulary from."""

        def catalogue() -> Any:
            data = self.server.registry.catalogue()
            for name, info in data["types"]["types"].items():
                info["color"] = type_colour(name)
            return client_catalogue(data)

        return await self.answer(catalogue)

    # -- workflows --------------------------------------------------------------------
    async def workflows_list(self, request: web.Request) -> web.Response:
        """Every workflow, user ones first."""
        return await self.answer(lambda: WorkflowList(workflows=self.server.workflows.list()))

    async def workflow_get(self, request: web.Request) -> web.Response:
        """The graph document, as saved (so GET then PUT round-trips)."""
        name = request.match_info["name"]
        return await self.answer(lambda: self.server.workflows.get(name)[0])

    async def workflow_put(self, request: web.Request) -> web.Response:
        """Save; the answer lists validation problems, but an incomplete graph may still be saved."""
        body = await self.json_body(request)
        name = request.match_info["name"]
        saved, created = await self.heavy(self._save_workflow, name, body)
        return reply(saved, 201 if created else 200)

    def _save_workflow(self, name: str, body: Any) -> tuple[WorkflowSaved, bool]:
        doc = parse_graph_within(body, self.config.max_graph_nodes)
        info, created = self.server.workflows.save(name, doc)
        problems = validate(doc, self.server.registry, self.server.paths, self.server.budget)
        return WorkflowSaved(**info.model_dump(), problems=[ErrorModel(**e.to_dict()) for e in problems]), created

    async def workflow_delete(self, request: web.Request) -> web.Response:
        """Delete a user workflow."""
        await asyncio.to_thread(self.server.workflows.delete, request.match_info["name"])
        return web.Response(status=204)

    # -- runs ---------------------------------------------------------------------------
    async def runs_create(self, request: web.Request) -> web.Response:
        """Validate (with inputs applied) and queue; 400 lists every problem at once."""
        body = await self.json_body(request)
        created = await self.heavy(self._queue_run, body)
        self.server.worker.wake()
        self.server.publish(self.server.queue_message(created.id))
        return reply(created, 202)

    def _queue_run(self, body: Any) -> RunCreated:
        """Parse, apply inputs, validate and store a run request (on a heavy thread)."""
        try:
            run = RunRequest.model_validate(body)
        except ValidationError as exc:
            raise ApiError(400, "bad_request", _pydantic_sentence(exc)) from None
        if run.workflow is not None:
            try:
                doc, _ = self.server.workflows.get(run.workflow)
            except ApiError as exc:
                raise ApiError(400 if exc.status == 404 else exc.status, exc.code, exc.message, exc.errors) from None
        else:
            doc = parse_graph_within(run.graph, self.config.max_graph_nodes)
        try:
            doc = apply_inputs(doc, run.inputs)
        except GraphInvalid as exc:
            raise ApiError(400, "invalid_graph", "the graph inputs do not match the graph", exc.errors) from None
        errors = validate(doc, self.server.registry, self.server.paths, self.server.budget)
        if errors:
            raise ApiError(400, "invalid_graph", f"the graph is invalid ({len(errors)} problem(s))", errors)
        name = doc.meta.get("name")
        return self.server.store.add(doc.model_dump_json(), workflow=run.workflow, inputs=run.inputs,
                                     node_total=len(doc.nodes), name=name if isinstance(name, str) and name else None)

    async def runs_list(self, request: web.Request) -> web.Response:
        """A page of runs, newest first: node counts, not node maps."""
        limit = _int_query(request, "limit", 50, 1, 200)
        offset = _int_query(request, "offset", 0, 0, sys.maxsize)
        status = request.query.get("status") or None
        if status is not None and status not in {s.value for s in RunStatus}:
            raise ApiError(400, "bad_request", f"unknown status {status!r}")

        def page() -> RunList:
            runs, total = self.server.store.history(limit=limit, offset=offset, status=status)
            for run in runs:
                if run.status == RunStatus.RUNNING:
                    run.node_counts = self.server.worker.live_counts(run.id) or run.node_counts
            return RunList(runs=runs, total=total, limit=limit, offset=offset)

        return await self.answer(page)

    async def run_get(self, request: web.Request) -> web.Response:
        """One run, with live node states while it runs."""
        run_id = request.match_info["id"]
        return await self.answer(lambda: self._detail(run_id))

    def _detail(self, run_id: str) -> RunDetail:
        record = self._record(run_id)
        if record.status == RunStatus.RUNNING:
            live = self.server.worker.live_nodes(run_id) or {}
            record.nodes = {k: NodeState(**v) for k, v in live.items()}
            record.node_counts = self.server.worker.live_counts(run_id) or {}
        return record

    async def run_cancel(self, request: web.Request) -> web.Response:
        """Cancel now if queued, else ask the running graph to stop at its next check.

        A 202 is a promise: the run will end ``cancelled`` (see :mod:`nodeflow.server.worker`).
        """
        run_id = request.match_info["id"]
        record = await asyncio.to_thread(self._record, run_id)
        if record.status == RunStatus.QUEUED and await asyncio.to_thread(self.server.store.cancel_queued, run_id):
            message = WsRunFinished(type="run_cancelled", run=run_id, error="the run was cancelled before it started")
            self.server.publish(message.model_dump(mode="json"))
            self.server.publish(self.server.queue_message(run_id))
            return reply(RunRef(id=run_id, status=RunStatus.CANCELLED))
        if await asyncio.to_thread(self.server.worker.request_cancel, run_id):  # it sends run_cancelling
            record = await asyncio.to_thread(self._record, run_id)
            status = RunStatus.RUNNING if RunStatus(record.status).final else record.status
            return reply(RunRef(id=run_id, status=status), 202)
        record = await asyncio.to_thread(self._record, run_id)
        if record.status == RunStatus.RUNNING:
            raise ApiError(409, "already_finished", "the run is finishing: its last node has returned")
        raise ApiError(409, "already_finished", f"the run already {record.status}")

    async def run_delete(self, request: web.Request) -> web.Response:
        """Forget a run and delete its output folder; a running run must be cancelled first.

        The row goes first (kept in memory if the disk is full), then the files, which
        frees their space: on a full disk, this is how a client makes room.
        """
        run_id = request.match_info["id"]
        record = await asyncio.to_thread(self._record, run_id)
        if not await asyncio.to_thread(self.server.store.delete, run_id):
            raise ApiError(409, "run_running", "the run is running; cancel it first")
        folder = self.config.outputs_dir / run_id  # the id matched _RUN_ID_RE: a plain name
        await asyncio.to_thread(shutil.rmtree, folder, True)
        self.server.worker.wake()  # room was made: a kept outcome may be writable now
        if record.status == RunStatus.QUEUED:
            self.server.publish(self.server.queue_message(run_id))
        return reply(RunRef(id=run_id, status="deleted"))

    def _record(self, run_id: str) -> RunDetail:
        record = self.server.store.get(run_id) if _RUN_ID_RE.fullmatch(run_id) else None
        if record is None:
            raise ApiError(404, "unknown_run", f"no run with id '{run_id}'")
        return record

    # -- files --------------------------------------------------------------------------
    async def output_get(self, request: web.Request) -> web.FileResponse:
        """A file under the outputs folder, never outside it."""
        path = await asyncio.to_thread(resolve_inside, self.config.outputs_dir, request.match_info["path"])
        return web.FileResponse(path)

    async def uploads_list(self, request: web.Request) -> web.Response:
        """Uploaded images, newest first."""
        return reply(UploadList(uploads=await asyncio.to_thread(self.server.uploads.list)))

    async def uploads_create(self, request: web.Request) -> web.Response:
        """Store an uploaded image after checking it."""
        return reply(await self.server.uploads.receive(request), 201)

    async def upload_get(self, request: web.Request) -> web.FileResponse:
        """An uploaded image, never a file outside the uploads folder."""
        path = await asyncio.to_thread(resolve_inside, self.config.inputs_dir, request.match_info["name"])
        return web.FileResponse(path)

    # -- system -------------------------------------------------------------------------
    async def system(self, request: web.Request) -> web.Response:
        """A status snapshot: versions and device probed once, the queue from memory, the cache off the loop."""
        backend = self.server.backend
        if self._device is None:
            self._device = await asyncio.to_thread(backend.device_info)
        if self._versions is None:  # reading package metadata scans site-packages: once, off the loop
            self._versions = await asyncio.to_thread(
                lambda: {"nodeflow": __version__, "python": sys.version.split()[0], **{n: _version(n) for n in _VERSIONED}})
        queued, running = self.server.store.queue_state()
        workers = await asyncio.to_thread(self._workers)
        info = SystemInfo(
            versions=self._versions,
            backend=backend.name,
            device=self._device,
            memory=_memory(),
            queue=QueueState(queued=queued, running=running[0] if running else None, running_ids=running,
                             capacity=self.server.worker.capacity, waiting=_waiting(queued, workers)),
            workers=workers,
            cache=await asyncio.to_thread(backend.cache_stats),
            nodes=len(self.server.registry),
            plugin_errors=len(self.server.registry.errors),
        )
        return reply(info)

    def _workers(self) -> list[WorkerInfo]:
        """The backend's workers as the API shows them (the job label the worker passes is the run id)."""
        try:
            return [WorkerInfo(index=w["index"], name=str(w.get("name", w["index"])), state=w["state"], run=w.get("job"),
                               busy_seconds=w.get("busy_seconds"), models=w.get("models", []), memory=w.get("memory", {}),
                               detail=w.get("detail")) for w in self.server.backend.worker_states()]
        except Exception:  # a status answer must not fail because a backend cannot say (or says something odd)
            log.exception("the backend did not report its workers")
            return []

    async def cache_clear(self, request: web.Request) -> web.Response:
        """Empty the result cache."""
        return reply(CacheStats(cache=await asyncio.to_thread(self.server.backend.clear_cache)))

    # -- events & editor ----------------------------------------------------------------
    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        """Run events for every run, as JSON messages (see ``docs/server.md``)."""
        return await self.server.hub.serve(request)

    async def index(self, request: web.Request) -> web.StreamResponse:
        """The editor's ``index.html``, or a short note when the editor is not installed."""
        web_dir = self.config.web_dir
        if web_dir is not None and (web_dir / "index.html").is_file():
            return web.FileResponse(resolve_inside(web_dir, "index.html"))
        return web.Response(
            text="<!doctype html><title>nodeflow</title><p>The editor is not installed. "
                 "The API is described at <a href='/api/openapi.json'>/api/openapi.json</a>.</p>",
            content_type="text/html",
        )

    async def static(self, request: web.Request) -> web.FileResponse:
        """A file of the editor (``web/``); unknown ``/api`` paths are 404 here too."""
        path = request.match_info["path"]
        web_dir = self.config.web_dir
        if path == "api" or path.startswith("api/") or web_dir is None:
            raise ApiError(404, "not_found", "no such endpoint")
        return web.FileResponse(resolve_inside(web_dir, path))


def _waiting(queued: int, workers: list[WorkerInfo]) -> str | None:
    """Why queued runs do not start: no worker can take a run (``None`` while some can)."""
    if not queued or not workers or any(w.state in ("idle", "busy") for w in workers):
        return None
    details = "; ".join(dict.fromkeys(f"{w.state}: {w.detail}" if w.detail else w.state for w in workers))
    return f"no worker can take a run yet ({details}); queued runs wait"


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"'{name}' must be an integer") from None
    if not low <= value <= high:
        raise ApiError(400, "bad_request", f"'{name}' must be between {low} and {high}")
    return value


def _pydantic_sentence(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where + ': ' if where else ''}{first['msg']}"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _memory() -> dict[str, int | None]:
    """Physical and available RAM in bytes (``None`` where the platform will not say)."""
    import os

    def pages(name: str) -> int | None:
        try:
            return os.sysconf(name) * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None

    return {"ram_total": pages("SC_PHYS_PAGES"), "ram_available": pages("SC_AVPHYS_PAGES")}
