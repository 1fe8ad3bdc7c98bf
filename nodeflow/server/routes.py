"""The HTTP API: one table of routes, and the handlers it names.

:data:`ROUTES` is the single source for both the aiohttp router and the OpenAPI
document (:mod:`nodeflow.server.openapi`): each entry names its handler, its body
and its responses by model, so a route cannot exist undocumented.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from .. import __version__
from ..errors import ErrorInfo, GraphInvalid
from ..events import RunStatus
from ..graph import GraphDoc, apply_inputs, parse_graph
from ..validate import validate
from .palette import type_colour
from .replies import ApiError, reply, reply_json
from .schemas import (
    CacheStats,
    Catalogue,
    ErrorModel,
    NodeState,
    OutputInfo,
    QueueState,
    RunCreated,
    RunDetail,
    RunList,
    RunRef,
    RunRequest,
    RunSummary,
    SystemInfo,
    UploadInfo,
    UploadList,
    WorkflowList,
    WorkflowSaved,
    WsRunCancelling,
    WsRunFinished,
    client_catalogue,
)
from .security import resolve_inside
from .store import RunRecord

if TYPE_CHECKING:
    from .app import Server

_RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")
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
          responses={200: WorkflowSaved, 201: WorkflowSaved, 400: None, 403: None}),
    Route("DELETE", "/api/workflows/{name}", "workflow_delete", "Delete a user workflow", "workflows",
          responses={204: None, 400: None, 403: None, 404: None}),
    Route("POST", "/api/runs", "runs_create", "Queue a run of a graph or a saved workflow", "runs", body=RunRequest,
          responses={202: RunCreated, 400: None, 415: None}),
    Route("GET", "/api/runs", "runs_list", "History and queue, newest first, paged", "runs", responses={200: RunList, 400: None}, query=_PAGE),
    Route("GET", "/api/runs/{id}", "run_get", "One run: status, nodes, outputs, errors", "runs", responses={200: RunDetail, 404: None}),
    Route("POST", "/api/runs/{id}/cancel", "run_cancel",
          "Cancel a run: a queued one at once (200), a running one at its next check (202)", "runs",
          responses={200: RunRef, 202: RunRef, 404: None, 409: None}),
    Route("DELETE", "/api/runs/{id}", "run_delete", "Delete a finished or queued run and its output files", "runs",
          responses={200: RunRef, 404: None, 409: None}),
    Route("GET", "/api/outputs/{path:.+}", "output_get", "An output file (RUN_ID/NAME); accepts ?token=", "files",
          responses={200: "file", 400: None, 404: None}),
    Route("GET", "/api/uploads", "uploads_list", "Uploaded images, newest first", "files", responses={200: UploadList}),
    Route("POST", "/api/uploads", "uploads_create", "Upload an image for image-loading nodes (multipart/form-data)", "files",
          body="multipart", responses={201: UploadInfo, 400: None, 413: None, 415: None}),
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
        self._device: dict[str, Any] | None = None
        self._openapi: dict[str, Any] | None = None

    def add_routes(self, app: web.Application) -> None:
        """Register every entry of :data:`ROUTES` (``GET`` also answers ``HEAD``)."""
        for route in ROUTES:
            app.router.add_route(route.method, route.path, getattr(self, route.handler))

    # -- meta & nodes -----------------------------------------------------------------
    async def openapi(self, request: web.Request) -> web.Response:
        """The OpenAPI document of this API."""
        if self._openapi is None:
            from .comfy_api import COMFY_ROUTES  # lazy: they import this module's Route
            from .model_routes import MODEL_ROUTES
            from .openapi import build_openapi

            self._openapi = build_openapi((*MODEL_ROUTES, *ROUTES, *COMFY_ROUTES))
        return reply_json(self._openapi)

    async def nodes(self, request: web.Request) -> web.Response:
        """What the editor builds its palette, connection rules and vocabulary from."""
        catalogue = self.server.registry.catalogue()
        for name, info in catalogue["types"]["types"].items():
            info["color"] = type_colour(name)
        return reply(client_catalogue(catalogue))

    # -- workflows --------------------------------------------------------------------
    async def workflows_list(self, request: web.Request) -> web.Response:
        """Every workflow, user ones first."""
        return reply(WorkflowList(workflows=self.server.workflows.list()))

    async def workflow_get(self, request: web.Request) -> web.Response:
        """The graph document, as saved (so GET then PUT round-trips)."""
        doc, _ = self.server.workflows.get(request.match_info["name"])
        return reply_json(doc.model_dump(mode="json"))

    async def workflow_put(self, request: web.Request) -> web.Response:
        """Save; the answer lists validation problems, but an incomplete graph may still be saved."""
        body = await _json_body(request)
        doc, info, created = self.server.workflows.save(request.match_info["name"], body)
        problems = await asyncio.to_thread(validate, doc, self.server.registry, self.server.paths)
        saved = WorkflowSaved(**info.model_dump(), problems=[ErrorModel(**e.to_dict()) for e in problems])
        return reply(saved, 201 if created else 200)

    async def workflow_delete(self, request: web.Request) -> web.Response:
        """Delete a user workflow."""
        self.server.workflows.delete(request.match_info["name"])
        return web.Response(status=204)

    # -- runs ---------------------------------------------------------------------------
    async def runs_create(self, request: web.Request) -> web.Response:
        """Validate (with inputs applied) and queue; 400 lists every problem at once."""
        try:
            run = RunRequest.model_validate(await _json_body(request))
        except ValidationError as exc:
            raise ApiError(400, "bad_request", _pydantic_sentence(exc)) from None
        if run.workflow is not None:
            try:
                doc, _ = self.server.workflows.get(run.workflow)
            except ApiError as exc:
                raise ApiError(400 if exc.status == 404 else exc.status, exc.code, exc.message, exc.errors) from None
        else:
            doc = _parse(run.graph)
        try:
            doc = apply_inputs(doc, run.inputs)
        except GraphInvalid as exc:
            raise ApiError(400, "invalid_graph", "the graph inputs do not match the graph", exc.errors) from None
        # off the loop: a 10,000-node graph takes a moment to check, and the loop must stay responsive
        errors = await asyncio.to_thread(validate, doc, self.server.registry, self.server.paths)
        if errors:
            raise ApiError(400, "invalid_graph", f"the graph is invalid ({len(errors)} problem(s))", errors)
        record = self.server.store.add(doc.model_dump(mode="json"), workflow=run.workflow, inputs=run.inputs)
        self.server.worker.wake()
        self.server.publish(self.server.queue_message(record.id))
        return reply(RunCreated(id=record.id, status=RunStatus.QUEUED, position=self.server.store.position(record)), 202)

    async def runs_list(self, request: web.Request) -> web.Response:
        """A page of runs, newest first."""
        limit = _int_query(request, "limit", 50, 1, 200)
        offset = _int_query(request, "offset", 0, 0, sys.maxsize)
        status = request.query.get("status") or None
        if status is not None and status not in {s.value for s in RunStatus}:
            raise ApiError(400, "bad_request", f"unknown status {status!r}")
        records, total = self.server.store.history(limit=limit, offset=offset, status=status)
        runs = [RunSummary(**self._run_fields(r)) for r in records]
        return reply(RunList(runs=runs, total=total, limit=limit, offset=offset))

    async def run_get(self, request: web.Request) -> web.Response:
        """One run, with live node states while it runs."""
        record = self._record(request)
        return reply(RunDetail(**self._run_fields(record), graph=record.graph))

    async def run_cancel(self, request: web.Request) -> web.Response:
        """Cancel now if queued, else ask the running graph to stop at its next check."""
        record = self._record(request)
        if record.status == RunStatus.QUEUED and self.server.store.cancel_queued(record.id):
            message = WsRunFinished(type="run_cancelled", run=record.id, error="the run was cancelled before it started")
            self.server.publish(message.model_dump(mode="json"))
            self.server.publish(self.server.queue_message(record.id))
            return reply(RunRef(id=record.id, status=RunStatus.CANCELLED))
        record = self._record(request)  # it may have started meanwhile
        if not RunStatus(record.status).final:
            self.server.worker.request_cancel(record.id)
            # after the token is set: whatever progress follows this message is the last step's
            self.server.publish(WsRunCancelling(run=record.id).model_dump(mode="json"))
            return reply(RunRef(id=record.id, status=record.status), 202)  # type: ignore[arg-type]
        raise ApiError(409, "already_finished", f"the run already {record.status}")

    async def run_delete(self, request: web.Request) -> web.Response:
        """Forget a run and delete its output folder; a running run must be cancelled first."""
        record = self._record(request)
        if not self.server.store.delete(record.id):
            raise ApiError(409, "run_running", "the run is running; cancel it first")
        folder = self.server.config.outputs_dir / record.id  # the id matched _RUN_ID_RE: a plain name
        await asyncio.to_thread(shutil.rmtree, folder, True)
        if record.status == RunStatus.QUEUED:
            self.server.publish(self.server.queue_message(record.id))
        return reply(RunRef(id=record.id, status="deleted"))

    def _record(self, request: web.Request) -> RunRecord:
        run_id = request.match_info["id"]
        record = self.server.store.get(run_id) if _RUN_ID_RE.match(run_id) else None
        if record is None:
            raise ApiError(404, "unknown_run", f"no run with id '{run_id}'")
        return record

    def _run_fields(self, record: RunRecord) -> dict[str, Any]:
        nodes = record.nodes
        if record.status == RunStatus.RUNNING:
            nodes = self.server.worker.live_nodes(record.id) or {}
        return {
            "id": record.id,
            "status": record.status,
            "created": record.created,
            "started": record.started,
            "finished": record.finished,
            "seconds": record.seconds,
            "workflow": record.workflow,
            "name": _graph_name(record.graph),
            "inputs": record.inputs,
            "position": self.server.store.position(record) if record.status == RunStatus.QUEUED else None,
            "attempts": record.attempts,
            "nodes": {k: NodeState(**v) for k, v in nodes.items()},
            "outputs": [OutputInfo(**o) for o in record.outputs],
            "error": _sentence(record.errors[0]) if record.errors else None,
            "errors": record.errors,
        }

    # -- files --------------------------------------------------------------------------
    async def output_get(self, request: web.Request) -> web.FileResponse:
        """A file under the outputs folder, never outside it."""
        return web.FileResponse(resolve_inside(self.server.config.outputs_dir, request.match_info["path"]))

    async def uploads_list(self, request: web.Request) -> web.Response:
        """Uploaded images, newest first."""
        return reply(UploadList(uploads=await asyncio.to_thread(self.server.uploads.list)))

    async def uploads_create(self, request: web.Request) -> web.Response:
        """Store an uploaded image after checking it."""
        return reply(await self.server.uploads.receive(request), 201)

    async def upload_get(self, request: web.Request) -> web.FileResponse:
        """An uploaded image, never a file outside the uploads folder."""
        return web.FileResponse(resolve_inside(self.server.config.inputs_dir, request.match_info["name"]))

    # -- system -------------------------------------------------------------------------
    async def system(self, request: web.Request) -> web.Response:
        """A status snapshot; device details are probed once, off the loop."""
        backend = self.server.backend
        if self._device is None:
            self._device = await asyncio.to_thread(backend.device_info)
        queued, running = self.server.store.queue_state()
        info = SystemInfo(
            versions={"nodeflow": __version__, "python": sys.version.split()[0], **{n: _version(n) for n in _VERSIONED}},
            backend=backend.name,
            device=self._device,
            memory=_memory(),
            queue=QueueState(queued=queued, running=running),
            cache=await asyncio.to_thread(backend.cache_stats),
            nodes=len(self.server.registry),
            plugin_errors=len(self.server.registry.errors),
        )
        return reply(info)

    async def cache_clear(self, request: web.Request) -> web.Response:
        """Empty the result cache."""
        return reply(CacheStats(cache=await asyncio.to_thread(self.server.backend.clear_cache)))

    # -- events & editor ----------------------------------------------------------------
    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        """Run events for every run, as JSON messages (see ``docs/server.md``)."""
        return await self.server.hub.serve(request)

    async def index(self, request: web.Request) -> web.StreamResponse:
        """The editor's ``index.html``, or a short note when the editor is not installed."""
        web_dir = self.server.config.web_dir
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
        web_dir = self.server.config.web_dir
        if path == "api" or path.startswith("api/") or web_dir is None:
            raise ApiError(404, "not_found", "no such endpoint")
        return web.FileResponse(resolve_inside(web_dir, path))


async def _json_body(request: web.Request) -> Any:
    """The request's JSON body; 415 unless it is declared ``application/json`` (forms cannot do that cross-site)."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send JSON with Content-Type: application/json")
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "the body is nested too deeply") from None


def _parse(graph: Any) -> GraphDoc:
    try:
        return parse_graph(graph)
    except GraphInvalid as exc:
        raise ApiError(400, "invalid_graph", "the graph document is malformed", exc.errors) from None


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


def _graph_name(graph: Any) -> str | None:
    meta = graph.get("meta") if isinstance(graph, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) and name else None


def _sentence(error: dict[str, Any]) -> str:
    return str(ErrorInfo(str(error.get("code")), str(error.get("message")), error.get("node"), error.get("input")))


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
