"""ComfyUI's HTTP API on ``nodeflow serve``, for unmodified ComfyUI API clients.

The routes (:data:`COMFY_ROUTES`) are the subset ComfyUI's own ``script_examples`` and
common clients use: ``POST /prompt``, ``GET /history[/{prompt_id}]``, ``GET /view``,
``POST /upload/image``, ``POST /upload/mask``, ``GET|POST /queue``, ``POST /interrupt``,
``GET /object_info[/{class}]``, ``GET /system_stats``, ``GET /embeddings``,
``GET /models[/{folder}]``, ``GET /ws`` (:mod:`.comfy_events`). They are a translation at
the edge: a prompt is imported (:mod:`nodeflow.comfy`), validated and queued as an
ordinary run in the native queue and history; the answers are built from the run
records. So the native API sees ComfyUI prompts as runs, and ComfyUI clients see
native runs in ``/history`` and ``/queue``.

What they share with the native API: the token and the Host/Origin checks
(:mod:`.security` guards these paths like ``/api``), the confined path resolver, the
upload checks, and the file containment of :func:`.security.resolve_inside`. A
prompt's ``prompt_id`` is its run id written as a UUID; a client may choose it (any
UUID). Bodies are read as JSON whatever their Content-Type, as ComfyUI does (its
examples post with urllib's default form type): cross-site requests are still refused
by the Origin and ``Sec-Fetch-Site`` checks.

Also here: ``POST /api/import/comfy`` (native API): a ComfyUI file in, the nodeflow
graph out, for the editor's open dialog and drag-and-drop.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sqlite3
import sys
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web
from pydantic import BaseModel, Field

from .. import __version__
from ..comfy import PNG_SIGNATURE, comfy_errors, import_comfy, import_notes
from ..comfy.classes import CLASSES, CONTROL_VALUES, node_info
from ..comfy.mapping import available
from ..errors import ErrorInfo
from ..events import RunStatus
from ..files import KINDS
from ..validate import validate
from .bodies import read_body, too_large
from .comfy_events import ComfySockets, EventBridge, image_ref, prompt_id_of
from .replies import ApiError, reply
from .routes import Query, Route
from .schemas import ErrorModel, RunDetail
from .security import resolve_inside

if TYPE_CHECKING:
    from .app import Server

#: Node types whose nodes are a ComfyUI prompt's outputs.
OUTPUT_TYPES = frozenset({"sd.save_image", "sd.preview_image"})
#: Most history entries one ``GET /history`` returns.
MAX_HISTORY = 10_000


class ComfyImported(BaseModel):
    """A ComfyUI file translated: the nodeflow graph, its shape, and what validation says of it."""

    graph: dict[str, Any]
    source: str = Field(description="ui or api")
    problems: list[ErrorModel] = Field(default_factory=list, description="validation problems, told with ComfyUI's node ids")
    notes: list[str] = Field(default_factory=list, description="what the import did besides translating nodes, in sentences")


_VIEW = (Query("filename", "string", "file name"), Query("subfolder", "string", "folder under the type's folder", ""),
         Query("type", "string", "output, temp or input", "output"))
COMFY_ROUTES: tuple[Route, ...] = (
    Route("POST", "/api/import/comfy", "import_comfy", "Translate a ComfyUI workflow, prompt (JSON) or PNG into a nodeflow graph",
          "workflows", body="file", responses={200: ComfyImported, 400: None, 408: None, 413: None}),
    Route("POST", "/prompt", "post_prompt", "ComfyUI: queue an API-format prompt", "comfyui", body="json",
          responses={200: "json", 400: "json"}),
    Route("GET", "/prompt", "get_prompt", "ComfyUI: queue length", "comfyui", responses={200: "json"}),
    Route("GET", "/history", "history", "ComfyUI: finished prompts", "comfyui", responses={200: "json"},
          query=(Query("max_items", "integer", "newest entries to return"),)),
    Route("GET", "/history/{prompt_id}", "history_one", "ComfyUI: one finished prompt ({} while queued or unknown)", "comfyui",
          responses={200: "json"}),
    Route("GET", "/view", "view", "ComfyUI: an output, temp or input file", "comfyui", responses={200: "file", 400: None, 404: None},
          query=_VIEW),
    Route("POST", "/upload/image", "upload_image", "ComfyUI: upload an image (form field 'image')", "comfyui", body="multipart",
          responses={200: "json", 400: None, 413: None, 415: None}),
    Route("POST", "/upload/mask", "upload_mask", "ComfyUI: upload a mask painted on an earlier image ('image', 'original_ref')",
          "comfyui", body="multipart", responses={200: "json", 400: None, 404: None, 413: None, 415: None}),
    Route("GET", "/queue", "queue", "ComfyUI: running and pending prompts", "comfyui", responses={200: "json"}),
    Route("POST", "/queue", "queue_edit", "ComfyUI: clear the queue, or delete prompts from it", "comfyui", body="json",
          responses={200: None, 400: None}),
    Route("POST", "/interrupt", "interrupt", "ComfyUI: cancel the running prompt", "comfyui", responses={200: None}),
    Route("GET", "/object_info", "object_info", "ComfyUI: the classes nodeflow runs", "comfyui", responses={200: "json"}),
    Route("GET", "/object_info/{node_class}", "object_info_one", "ComfyUI: one class ({} if unknown)", "comfyui",
          responses={200: "json"}),
    Route("GET", "/system_stats", "system_stats", "ComfyUI: system and device", "comfyui", responses={200: "json"}),
    Route("GET", "/embeddings", "embeddings", "ComfyUI: embedding names", "comfyui", responses={200: "json"}),
    Route("GET", "/models", "model_folders", "ComfyUI: model folder names", "comfyui", responses={200: "json"}),
    Route("GET", "/models/{folder}", "model_folder", "ComfyUI: the models in one folder", "comfyui", responses={200: "json", 404: None}),
    Route("GET", "/ws", "comfy_ws", "ComfyUI: websocket of prompt events (?clientId=)", "comfyui", responses={101: "websocket"}),
)


def comfy_rejection(errors: list[ErrorInfo], classes: dict[str, str], kind: str = "prompt_outputs_failed_validation",
                    message: str = "Prompt outputs failed validation") -> dict[str, Any]:
    """A 400 body in ComfyUI's shape (``error``, ``node_errors``), plus nodeflow's structured ``errors``."""
    node_errors: dict[str, Any] = {}
    for err in errors:
        if err.node is None:
            continue
        entry = node_errors.setdefault(err.node, {"errors": [], "dependent_outputs": [], "class_type": classes.get(err.node)})
        entry["errors"].append({"type": err.code, "message": err.message, "details": err.input or "",
                                "extra_info": {"input_name": err.input} if err.input else {}})
    details = "\n".join(str(e) for e in errors)
    return {"error": {"type": kind, "message": message, "details": details, "extra_info": {}}, "node_errors": node_errors,
            "errors": [e.to_dict() for e in errors]}


class ComfyApi:
    """The ComfyUI routes and websocket, bound to one composed server."""

    def __init__(self, server: Server):
        self.server = server
        self.sockets = ComfySockets(self.status)
        server.listeners.append(EventBridge(self.sockets, self.run_info, self.status))

    def add_routes(self, app: web.Application) -> None:
        """Register :data:`COMFY_ROUTES`."""
        for route in COMFY_ROUTES:
            app.router.add_route(route.method, route.path, getattr(self, route.handler))

    async def close(self) -> None:
        """Close the ComfyUI websockets."""
        await self.sockets.close()

    # -- shared ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """ComfyUI's ``status``: prompts left, the running one included."""
        queued, running = self.server.store.queue_state()
        return {"exec_info": {"queue_remaining": queued + len(running)}}

    def run_info(self, run_id: str) -> dict[str, Any]:
        """``meta.comfy`` of a run's graph (ids, classes, prompt and client ids); {} for a native run."""
        record = self.server.store.get(run_id)
        comfy = record.graph.get("meta", {}).get("comfy") if record is not None else None
        return comfy if isinstance(comfy, dict) else {}

    # -- the editor's import ---------------------------------------------------------------------
    async def import_comfy(self, request: web.Request) -> web.Response:
        """A ComfyUI file (JSON text or PNG bytes, any Content-Type) -> the nodeflow graph, and its validation problems."""
        data = await self._import_body(request)
        server = self.server
        imported = await asyncio.to_thread(import_comfy, data, server.registry, server.paths)
        if imported.doc is None:
            first = imported.errors[0].message if imported.errors else "no reason given"
            raise ApiError(400, "invalid_comfy_file", f"the ComfyUI file cannot be imported: {first}"
                           + (f" (and {len(imported.errors) - 1} more problem(s))" if len(imported.errors) > 1 else ""),
                           imported.errors)
        if len(imported.doc.nodes) > server.config.max_graph_nodes:
            raise ApiError(413, "graph_too_large", f"the imported graph has {len(imported.doc.nodes)} nodes; this server accepts"
                                                   f" at most {server.config.max_graph_nodes}")
        problems = await asyncio.to_thread(validate, imported.doc, server.registry, server.paths, server.budget)
        told = comfy_errors(problems, imported.doc.meta)
        return reply(ComfyImported(graph=imported.doc.model_dump(mode="json"), source=imported.source,
                                   problems=[ErrorModel(**e.to_dict()) for e in told], notes=import_notes(imported.doc.meta)))

    async def _import_body(self, request: web.Request) -> bytes:
        """The file: a PNG within the upload limit, JSON within the JSON limit, sent within the body timeout."""
        config = self.server.config
        try:
            data = await read_body(request, config.max_upload_bytes, config.body_timeout)
        except ApiError as exc:
            if exc.status != 413:
                raise
            raise ApiError(413, "too_large", f"ComfyUI files are limited to {config.max_upload_bytes} bytes (the upload limit)") from None
        if not data:
            raise ApiError(400, "bad_request", "send the ComfyUI file as the request body")
        if not data.startswith(PNG_SIGNATURE) and len(data) > config.max_json_bytes:
            raise too_large(config.max_json_bytes)
        return data

    # -- prompts -------------------------------------------------------------------------------------
    async def post_prompt(self, request: web.Request) -> web.Response:
        """Import, validate and queue an API prompt; ComfyUI's answer (``prompt_id``, ``number``, ``node_errors``)."""
        body = await _json(request)
        prompt = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(prompt, dict) or not prompt:
            return web.json_response(comfy_rejection([ErrorInfo("no_prompt", "No prompt provided")], {}, "no_prompt",
                                                     "No prompt provided"), status=400)
        run_id, prompt_id = _ids(body.get("prompt_id"))
        server = self.server
        imported = await asyncio.to_thread(import_comfy, prompt, server.registry, server.paths, "comfyui", "api")
        if imported.doc is None:
            return web.json_response(comfy_rejection(imported.errors, imported.classes), status=400)
        doc = imported.doc
        if not any(n.type in OUTPUT_TYPES for n in doc.nodes.values()):
            return web.json_response(comfy_rejection([ErrorInfo("prompt_no_outputs", "Prompt has no outputs")], imported.classes,
                                                     "prompt_no_outputs", "Prompt has no outputs"), status=400)
        problems = comfy_errors(await asyncio.to_thread(validate, doc, server.registry, server.paths, server.budget), doc.meta)
        if problems:
            return web.json_response(comfy_rejection(problems, imported.classes), status=400)
        client_id = body.get("client_id") if isinstance(body.get("client_id"), str) else None
        doc.meta["comfy"].update(prompt_id=prompt_id, client_id=client_id, prompt=prompt)
        try:
            created = server.store.add(doc.model_dump(mode="json"), run_id=run_id)
        except sqlite3.IntegrityError:
            raise ApiError(400, "bad_request", f"prompt_id {prompt_id} is already in use") from None
        server.worker.wake()
        server.publish(server.queue_message(created.id))
        record = server.store.get(created.id)
        return web.json_response({"prompt_id": prompt_id, "number": record.number if record else 0, "node_errors": {}})

    async def get_prompt(self, request: web.Request) -> web.Response:
        """``{"exec_info": {"queue_remaining": n}}``."""
        return web.json_response(self.status())

    async def history(self, request: web.Request) -> web.Response:
        """Finished prompts (native runs too), oldest first, at most ``max_items`` (the newest ones)."""
        limit = _int(request.query.get("max_items"), MAX_HISTORY)
        records = await asyncio.to_thread(self._finished, limit)
        return web.json_response({entry["prompt"][1]: entry for entry in map(history_entry, reversed(records))})

    def _finished(self, limit: int) -> list[RunDetail]:
        found = []
        for status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
            found += self.server.store.history(limit=limit, offset=0, status=status.value)[0]
        found.sort(key=lambda r: r.number, reverse=True)
        return self._details(found[:limit])

    def _details(self, summaries: list[Any]) -> list[RunDetail]:
        """The full records (graph, outputs) of listed runs; runs deleted meanwhile are left out."""
        details = (self.server.store.get(s.id) for s in summaries)
        return [d for d in details if d is not None]

    async def history_one(self, request: web.Request) -> web.Response:
        """One finished prompt as ``{prompt_id: entry}``; ``{}`` while it is queued or running, or unknown."""
        prompt_id = request.match_info["prompt_id"]
        record = self._record(prompt_id)
        if record is None or not RunStatus(record.status).final:
            return web.json_response({})
        return web.json_response({prompt_id: history_entry(record)})

    def _record(self, prompt_id: str) -> RunDetail | None:
        try:
            return self.server.store.get(uuid.UUID(prompt_id).hex)
        except ValueError:
            return None

    # -- queue ----------------------------------------------------------------------------------------------
    async def queue(self, request: web.Request) -> web.Response:
        """``queue_running`` and ``queue_pending`` as ComfyUI lists them."""
        store = self.server.store
        running = self._details(store.history(limit=10, offset=0, status=RunStatus.RUNNING.value)[0])
        pending = self._details(store.history(limit=MAX_HISTORY, offset=0, status=RunStatus.QUEUED.value)[0])
        return web.json_response({"queue_running": [queue_item(r) for r in running],
                                  "queue_pending": [queue_item(r) for r in reversed(pending)]})

    async def queue_edit(self, request: web.Request) -> web.Response:
        """``{"clear": true}`` empties the queue; ``{"delete": [prompt_id...]}`` removes those queued prompts."""
        body = await _json(request)
        if not isinstance(body, dict):
            raise ApiError(400, "bad_request", "send a JSON object")
        store = self.server.store
        targets: list[str] = []
        if body.get("clear"):
            targets += [r.id for r in store.history(limit=MAX_HISTORY, offset=0, status=RunStatus.QUEUED.value)[0]]
        for prompt_id in body.get("delete") or []:
            record = self._record(str(prompt_id))
            if record is not None and record.status == RunStatus.QUEUED:
                targets.append(record.id)
        for run_id in targets:
            store.delete(run_id)
        if targets:
            self.server.publish(self.server.queue_message(targets[-1]))
        return web.Response(status=200)

    async def interrupt(self, request: web.Request) -> web.Response:
        """Cancel the running prompts (only ``prompt_id``, when the body names one; with ``--workers N`` several run).

        The worker sends each accepted cancel's ``run_cancelling``.
        """
        body = await _json(request) if request.can_read_body else {}
        wanted = body.get("prompt_id") if isinstance(body, dict) else None
        running = self.server.store.queue_state()[1]
        if wanted is not None:
            known = self._record(str(wanted)) is not None
            running = [r for r in running if known and uuid.UUID(str(wanted)).hex == r]
        for run_id in running:
            await asyncio.to_thread(self.server.worker.request_cancel, run_id)
        return web.Response(status=200)

    # -- files ---------------------------------------------------------------------------------------------------
    async def view(self, request: web.Request) -> web.FileResponse:
        """A file from the outputs (``output``, ``temp``) or uploads (``input``) folder, never from anywhere else."""
        name = request.query.get("filename", "")
        path = self._file(name, request.query.get("subfolder", ""), request.query.get("type", "output"))
        return web.FileResponse(path, headers={"Content-Disposition": f'filename="{path.name}"'})

    def _file(self, name: str, subfolder: str, kind: str) -> Any:
        for annotation in ("output", "input", "temp"):
            if name.endswith(f" [{annotation}]"):
                name, kind = name[: -len(annotation) - 3], annotation
        roots = {"output": self.server.config.outputs_dir, "temp": self.server.config.outputs_dir, "input": self.server.config.inputs_dir}
        if kind not in roots:
            raise ApiError(400, "bad_request", "type must be output, temp or input")
        return resolve_inside(roots[kind], f"{subfolder.strip('/')}/{name}" if subfolder.strip("/") else name)

    async def upload_image(self, request: web.Request) -> web.Response:
        """Store an uploaded image in the uploads folder; ComfyUI's answer ``{name, subfolder, type}``."""
        info = await self.server.uploads.receive(request)
        return web.json_response({"name": info.name, "subfolder": "", "type": "input"})

    async def upload_mask(self, request: web.Request) -> web.Response:
        """Put the uploaded mask's alpha on the image ``original_ref`` names and store the result as a new upload."""
        fields = await _form(request, self.server.config.max_upload_bytes)
        if not isinstance(fields.get("image"), bytes) or not isinstance(fields.get("original_ref"), str):
            raise ApiError(400, "bad_request", "send the mask as 'image' and the image it belongs to as 'original_ref'")
        try:
            ref = json.loads(fields["original_ref"])
            original = self._file(str(ref["filename"]), str(ref.get("subfolder", "")), str(ref.get("type", "input")))
        except (ValueError, KeyError, TypeError):
            raise ApiError(400, "bad_request", "original_ref must be JSON {filename, subfolder, type}") from None
        data = await asyncio.to_thread(_with_alpha, original, fields["image"])
        info = await asyncio.to_thread(self.server.uploads.store, data, original.name)
        return web.json_response({"name": info.name, "subfolder": "", "type": "input"})

    # -- what there is -------------------------------------------------------------------------------------------
    async def object_info(self, request: web.Request) -> web.Response:
        """Every class nodeflow translates, as ComfyUI describes classes."""
        return web.json_response(await asyncio.to_thread(self._object_info, None))

    async def object_info_one(self, request: web.Request) -> web.Response:
        """One class, or ``{}``."""
        return web.json_response(await asyncio.to_thread(self._object_info, request.match_info["node_class"]))

    def _object_info(self, only: str | None) -> dict[str, Any]:
        names = [n for n in available(self.server.registry) if only is None or n == only]
        if not names:
            return {}
        combos = self._combos()
        return {name: node_info(CLASSES[name], combos) for name in names}

    def _combos(self) -> dict[str, list[Any]]:
        from nodeflow_nodes.sd.schedulers import FRIENDLY, SCHEDULES, scheduler_name_problem

        files = self.server.model_files
        samplers = ["euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpmpp_2m", "dpmpp_2m_sde",
                    "dpmpp_2m_sde_gpu", "dpmpp_sde", "ddim", "uni_pc", "uni_pc_bh2", "ddpm", "lcm"]
        return {
            "checkpoint": files.names("checkpoint"), "lora": files.names("lora"), "vae": files.names("vae"),
            "controlnet": files.names("controlnet"), "embedding": files.names("embedding"), "config": [],
            "image": sorted(u.name for u in self.server.uploads.list()),
            "sampler": [s for s in samplers if s in FRIENDLY and not scheduler_name_problem(s)],
            "scheduler": [s for s in SCHEDULES if s != "default"],
            # ComfyUI's lists, less what nodeflow refuses (bislerp, center crop)
            "upscale_latent": ["nearest-exact", "bilinear", "area", "bicubic"],
            "upscale_image": ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"], "crop": ["disabled"],
            "channel": ["alpha", "red", "green", "blue"], "noise_switch": ["enable", "disable"], "control": sorted(CONTROL_VALUES),
            "cond_area": ["default", "mask bounds"],
        }

    async def system_stats(self, request: web.Request) -> web.Response:
        """System and device, in ComfyUI's shape (no paths, no command line)."""
        import torch

        device = await asyncio.to_thread(self.server.backend.device_info)
        memory = _memory()
        return web.json_response({
            "system": {"os": os.name, "ram_total": memory[0], "ram_free": memory[1], "comfyui_version": f"nodeflow {__version__}",
                       "python_version": sys.version, "pytorch_version": torch.__version__, "embedded_python": False, "argv": []},
            "devices": [{"name": device.get("name"), "type": device.get("type"), "index": 0 if device.get("type") == "cuda" else None,
                         "vram_total": device.get("memory_total", 0), "vram_free": device.get("memory_free", 0),
                         "torch_vram_total": device.get("memory_total", 0), "torch_vram_free": device.get("memory_free", 0)}],
        })

    async def embeddings(self, request: web.Request) -> web.Response:
        """Embedding names without their suffix (what ``embedding:name`` takes)."""
        names = await asyncio.to_thread(self.server.model_files.names, "embedding")
        return web.json_response([n.rsplit(".", 1)[0] if "." in n.rsplit("/", 1)[-1] else n for n in names])

    async def model_folders(self, request: web.Request) -> web.Response:
        """The model folder names (ComfyUI's layout)."""
        return web.json_response([sub for sub, _ in KINDS.values() if sub])

    async def model_folder(self, request: web.Request) -> web.Response:
        """The models in one folder of ComfyUI's layout; 404 for another name."""
        kinds = {sub: kind for kind, (sub, _) in KINDS.items() if sub}
        kind = kinds.get(request.match_info["folder"])
        if kind is None:
            raise ApiError(404, "not_found", f"no model folder '{request.match_info['folder']}' (folders: {', '.join(kinds)})")
        return web.json_response(await asyncio.to_thread(self.server.model_files.names, kind))

    async def comfy_ws(self, request: web.Request) -> web.WebSocketResponse:
        """ComfyUI's websocket (:mod:`.comfy_events`)."""
        return await self.sockets.serve(request)


# -- history and queue entries -----------------------------------------------------------------------------------
def _comfy_meta(record: RunDetail) -> dict[str, Any]:
    comfy = record.graph.get("meta", {}).get("comfy") if isinstance(record.graph.get("meta"), dict) else None
    return comfy if isinstance(comfy, dict) else {}


def queue_item(record: RunDetail) -> list[Any]:
    """``[number, prompt_id, prompt, extra_data, outputs_to_execute]`` as ComfyUI queues a prompt."""
    comfy = _comfy_meta(record)
    ids = comfy.get("ids", {})
    outputs = sorted({ids.get(n, n) for n, nd in record.graph.get("nodes", {}).items() if nd.get("type") in OUTPUT_TYPES})
    return [record.number, comfy.get("prompt_id") or prompt_id_of(record.id), comfy.get("prompt", record.graph),
            {"client_id": comfy.get("client_id")}, outputs]


def history_entry(record: RunDetail) -> dict[str, Any]:
    """A finished run as a ComfyUI history entry: ``prompt``, ``outputs`` (images), ``status``, ``meta``."""
    comfy = _comfy_meta(record)
    ids = comfy.get("ids", {})
    item = queue_item(record)
    outputs: dict[str, dict[str, list[dict[str, str]]]] = {}
    for output in record.outputs:
        if output.path:
            cid = ids.get(output.node, output.node)
            outputs.setdefault(str(cid), {"images": []})["images"].append(image_ref(output.path, output.kind))
    final = {"succeeded": "execution_success", "cancelled": "execution_interrupted"}.get(record.status, "execution_error")
    stamp = {"prompt_id": item[1]}
    messages = [["execution_start", {**stamp, "timestamp": int((record.started or record.created) * 1000)}],
                [final, {**stamp, "timestamp": int((record.finished or record.created) * 1000)}]]
    if record.errors and final != "execution_success":
        messages[1][1]["exception_message"] = record.errors[0].message  # type: ignore[index]
    return {
        "prompt": item,
        "outputs": outputs,
        "status": {"status_str": "success" if record.status == RunStatus.SUCCEEDED else "error",
                   "completed": record.status == RunStatus.SUCCEEDED, "messages": messages},
        "meta": {cid: {"node_id": cid, "display_node": cid, "parent_node": None, "real_node_id": cid} for cid in outputs},
    }


# -- request helpers ---------------------------------------------------------------------------------------------------
def _ids(given: Any) -> tuple[str, str]:
    """(run id, prompt id): the client's UUID when it gave one, else a new one."""
    if given is None:
        run_id = uuid.uuid4().hex
        return run_id, prompt_id_of(run_id)
    try:
        return uuid.UUID(str(given)).hex, str(given)
    except ValueError:
        raise ApiError(400, "bad_request", f"prompt_id must be a UUID, not {given!r}") from None


async def _json(request: web.Request) -> Any:
    """The body as JSON whatever its Content-Type (ComfyUI clients post JSON as a form)."""
    try:
        return json.loads(await request.read() or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None


async def _form(request: web.Request, limit: int) -> dict[str, Any]:
    """A multipart form's fields: files as bytes, the rest as text; 413 past ``limit`` bytes in all."""
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError):
        raise ApiError(415, "not_multipart", "send multipart/form-data") from None
    fields: dict[str, Any] = {}
    total = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or not part.name:
            continue
        data = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            data += chunk
            total += len(chunk)
            if total > limit:
                raise ApiError(413, "too_large", f"uploads are limited to {limit} bytes")
        fields[part.name] = bytes(data) if part.filename else data.decode("utf-8", "replace")
    return fields


def _with_alpha(original: Any, mask: bytes) -> bytes:
    """``original`` as RGBA PNG bytes with ``mask``'s alpha channel (ComfyUI's mask editor upload)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(original) as picture, Image.open(io.BytesIO(mask)) as painted:
            combined = picture.convert("RGBA")
            alpha = painted.convert("RGBA").getchannel("A")
            if alpha.size != combined.size:
                raise ApiError(400, "bad_request", f"the mask is {alpha.size[0]}x{alpha.size[1]}, the image"
                                                   f" {combined.size[0]}x{combined.size[1]}")
            combined.putalpha(alpha)
    except (UnidentifiedImageError, OSError):
        raise ApiError(415, "not_an_image", "the mask or the image is not an image this server reads") from None
    buffer = io.BytesIO()
    combined.save(buffer, format="PNG")
    return buffer.getvalue()


def _int(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    try:
        return max(0, min(int(raw), MAX_HISTORY))
    except ValueError:
        raise ApiError(400, "bad_request", "max_items must be an integer") from None


def _memory() -> tuple[int | None, int | None]:
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_PHYS_PAGES") * page, os.sysconf("SC_AVPHYS_PAGES") * page
    except (ValueError, OSError, AttributeError):
        return None, None


__all__ = ["COMFY_ROUTES", "ComfyApi", "ComfyImported", "comfy_rejection", "history_entry", "queue_item"]
