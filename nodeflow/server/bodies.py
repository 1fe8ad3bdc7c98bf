"""Request bodies: read within a size limit and a deadline, decoded strictly, graphs parsed within their limit.

The event loop only moves bytes (:func:`read_body`); :func:`decode_json` and
:func:`parse_graph_within` are meant for a worker thread (the handlers offload them),
so a large body never stalls the loop. Every limit is a documented server setting
(:class:`~nodeflow.server.config.ServerConfig`), and each refusal names it:

* more bytes than ``max_json_bytes`` -> 413 ``too_large`` (before reading, when the
  request declares its length);
* not sent within ``body_timeout`` seconds -> 408 ``request_timeout``;
* not JSON, or ``NaN``/``Infinity`` (not JSON numbers; the history could not store
  them faithfully) -> 400 ``invalid_json``;
* arrays and objects nested deeper than ``max_json_depth`` -> 400 ``invalid_json`` (refused
  while decoding, before anything else sees the document);
* a graph with more than ``max_graph_nodes`` nodes -> 413 ``graph_too_large``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ..errors import GraphInvalid
from ..graph import GraphDoc, parse_graph
from .replies import ApiError
from .storage import loads

_CHUNK = 64 * 1024


async def read_body(request: web.Request, max_bytes: int, timeout: float) -> bytes:
    """The whole body, at most ``max_bytes`` of it, received within ``timeout`` seconds."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large(max_bytes)
    data = bytearray()

    async def receive() -> None:
        async for chunk in request.content.iter_chunked(_CHUNK):
            data.extend(chunk)
            if len(data) > max_bytes:
                raise too_large(max_bytes)

    await within(receive(), timeout)
    return bytes(data)


async def within(work: Any, timeout: float) -> Any:
    """Await ``work``; 408 ``request_timeout`` (and the connection closed) when it takes longer than ``timeout``."""
    try:
        return await asyncio.wait_for(work, timeout)
    except asyncio.TimeoutError:
        raise ApiError(408, "request_timeout", f"the request body did not arrive within {timeout:g} seconds",
                       headers={"Connection": "close"}) from None


def too_large(max_bytes: int) -> ApiError:
    """The 413 answer for a JSON body over the limit."""
    return ApiError(413, "too_large", f"JSON bodies are limited to {max_bytes} bytes on this server")


def decode_json(raw: bytes, max_depth: int) -> Any:
    """Decode ``raw`` as strict JSON nested at most ``max_depth`` deep (run it off the loop)."""
    try:
        value = loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise nested_too_deeply(max_depth) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    check_depth(value, max_depth)
    return value


def check_depth(value: Any, max_depth: int) -> None:
    """Raise 400 ``invalid_json`` if arrays/objects in ``value`` nest deeper than ``max_depth``.

    Iterative, so the check itself cannot hit the recursion limit; two flat stacks rather
    than one of tuples, so walking a million containers allocates nothing the garbage
    collector would then walk again (its passes hold the GIL).
    """
    items: list[Any] = [value]
    depths: list[int] = [1]
    while items:
        item, depth = items.pop(), depths.pop()
        if depth > max_depth:
            raise nested_too_deeply(max_depth)
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, (dict, list)):
                items.append(child)
                depths.append(depth + 1)


def nested_too_deeply(max_depth: int) -> ApiError:
    """The 400 answer for JSON nested deeper than the limit."""
    return ApiError(400, "invalid_json", f"the body is nested too deeply: arrays and objects may nest at most {max_depth} levels")


def parse_graph_within(data: Any, max_nodes: int) -> GraphDoc:
    """Parse a graph document, refusing one with more than ``max_nodes`` nodes before parsing it (off the loop)."""
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if isinstance(nodes, dict) and len(nodes) > max_nodes:
        raise ApiError(413, "graph_too_large",
                       f"the graph has {len(nodes)} nodes; this server accepts at most {max_nodes} (serve --max-graph-nodes)")
    try:
        return parse_graph(data)
    except GraphInvalid as exc:
        raise ApiError(400, "invalid_graph", "the graph document is malformed", exc.errors) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (send finite numbers)")
