"""The OpenAPI 3.1 document, generated from the route table and the pydantic models.

Nothing here is written twice: paths, methods, bodies and responses come from
:data:`nodeflow.server.routes.ROUTES`, schemas from the models in
:mod:`nodeflow.server.schemas` (and :class:`nodeflow.graph.GraphDoc`). The websocket's
message schemas are listed under ``x-websocket-messages`` on ``/api/ws``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from .. import __version__
from ..graph import GraphDoc
from .routes import Route
from .schemas import WS_MESSAGES, ErrorBody

_PARAM_RE = re.compile(r"\{(\w+)(?::[^}]*)?\}")
_DESCRIPTIONS = {
    101: "switching to the websocket protocol",
    200: "OK",
    201: "created",
    202: "accepted",
    204: "done, no content",
    400: "malformed request or invalid graph (every problem is listed in `errors`)",
    401: "missing or wrong access token",
    403: "refused: cross-origin request, foreign Host, or read-only resource",
    404: "not found",
    408: "the request body did not arrive in time (body_timeout)",
    409: "conflicts with the run's state",
    413: "too large: a body over max_json_bytes, a graph over max_graph_nodes, an image over the upload limits",
    415: "wrong content type or not an accepted image",
    507: "the server's disk is full (code disk_full); deleting runs frees space",
}


class _Builder:
    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, model: type[BaseModel]) -> dict[str, str]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        self.schemas.update(schema.pop("$defs", {}))
        self.schemas[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    def content(self, kind: type[BaseModel] | str | None) -> dict[str, Any] | None:
        if kind is None or kind == "websocket":
            return None
        if isinstance(kind, type):
            return {"application/json": {"schema": self.ref(kind)}}
        shapes: dict[str, dict[str, Any]] = {
            "graph": {"application/json": {"schema": self.ref(GraphDoc)}},
            "openapi": {"application/json": {"schema": {"type": "object"}}},
            "json": {"application/json": {"schema": {}}},
            "file": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            "html": {"text/html": {"schema": {"type": "string"}}},
            "multipart": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}, "required": ["file"]}
                }
            },
        }
        return shapes[kind]


def openapi_path(pattern: str) -> str:
    """An aiohttp route pattern in OpenAPI form (``{path:.+}`` -> ``{path}``)."""
    return _PARAM_RE.sub(r"{\1}", pattern)


def build_openapi(routes: Sequence[Route]) -> dict[str, Any]:
    """The whole document for ``routes``."""
    b = _Builder()
    paths: dict[str, dict[str, Any]] = {}
    error = b.ref(ErrorBody)
    for route in routes:
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in _PARAM_RE.findall(route.path)
        ]
        for q in route.query:
            schema: dict[str, Any] = {"type": q.type}
            if q.default is not None:
                schema["default"] = q.default
            params.append({"name": q.name, "in": "query", "required": False, "description": q.description, "schema": schema})
        responses: dict[str, Any] = {}
        for status, kind in sorted(route.responses.items()):
            entry: dict[str, Any] = {"description": _DESCRIPTIONS.get(status, "")}
            body = {"application/json": {"schema": error}} if status >= 400 else b.content(kind)
            if body:
                entry["content"] = body
            responses[str(status)] = entry
        op: dict[str, Any] = {"operationId": route.handler, "summary": route.summary, "tags": [route.tag], "responses": responses}
        if params:
            op["parameters"] = params
        if route.body is not None:
            op["requestBody"] = {"required": True, "content": b.content(route.body)}
        if route.path.startswith("/api") or route.tag == "comfyui":
            responses.setdefault("401", {"description": _DESCRIPTIONS[401], "content": {"application/json": {"schema": error}}})
            responses.setdefault("403", {"description": _DESCRIPTIONS[403], "content": {"application/json": {"schema": error}}})
        else:
            op["security"] = []  # the editor's files need no token
        if route.handler == "websocket":
            op["x-websocket-messages"] = [b.ref(m) for m in WS_MESSAGES]
            op["description"] = "Each message is a JSON object with `type` and `run`; see x-websocket-messages and docs/server.md."
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "nodeflow server",
            "version": __version__,
            "description": "Run node graphs, read their history and outputs, follow them live over a websocket."
            " Security schemes apply when the server was started with --token.",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(b.schemas.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "queryToken": {"type": "apiKey", "in": "query", "name": "token",
                               "description": "only on GET /api/ws, /api/outputs/* and /api/uploads/*"},
            },
        },
        "security": [{"bearer": []}, {"queryToken": []}],
    }
