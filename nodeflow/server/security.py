"""Security: request guards, safe file paths, response headers, one log line per request.

The threat model is a browser on the same machine visiting a hostile page (which
can send requests to ``127.0.0.1``, or rebind a DNS name to it) and, when the server
listens beyond loopback, anyone on the network. Hence:

* ``Host`` must name this machine while bound to loopback (defeats DNS rebinding);
* a request carrying an ``Origin`` that is not the server's own is refused with 403,
  websocket handshakes included (browsers always send ``Origin`` on cross-origin
  writes and websockets); no CORS headers are ever sent;
* with a token, every ``/api`` request must carry it (``Authorization: Bearer``, or
  ``?token=`` on the GET URLs a browser cannot add headers to: the websocket, output
  and upload images); missing or wrong -> 401. The editor's static files need none;
* file paths are resolved with :func:`resolve_inside`, which refuses anything that
  could leave its folder;
* logs show the path without the query string, so a ``?token=`` never reaches a log.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from yarl import URL

from ..net import LOOPBACK_NAMES
from .config import ServerConfig
from .replies import ApiError

log = logging.getLogger("nodeflow.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HOST_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?")
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_QUERY_TOKEN_PREFIXES = ("/api/outputs/", "/api/uploads/")
_FILE_PREFIXES = ("/api/outputs/", "/api/uploads/", "/view")
#: ComfyUI-compatible routes (:mod:`nodeflow.server.comfy_api`): guarded like ``/api`` (token, cross-site).
COMFY_PATHS = ("/prompt", "/history", "/view", "/upload", "/queue", "/interrupt", "/object_info", "/system_stats",
               "/embeddings", "/models", "/ws")
#: The ComfyUI GET routes a script cannot add headers to as easily: they accept ``?token=`` too.
_COMFY_QUERY_TOKEN = ("/ws", "/view")


def is_comfy_path(path: str) -> bool:
    """Whether ``path`` is one of the ComfyUI-compatible routes."""
    return any(path == p or path.startswith(p + "/") for p in COMFY_PATHS)
_FILE_CSP = "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'"


def resolve_inside(root: Path, relative: str) -> Path:
    """The real path of file ``relative`` inside ``root``, or an :class:`ApiError`.

    Refused with 400 before touching the disk: empty segments, ``.``/``..``, absolute
    paths, drive letters, backslashes, NUL, and any ``%`` left after the router's one
    decoding (a double-encoded ``%252e%252e`` arrives as ``%2e%2e``). Refused with 404:
    hidden names, anything missing or not a regular file, and anything whose real path
    (after following symlinks) is outside ``root``.
    """
    if not relative or "\x00" in relative or "\\" in relative or "%" in relative:
        raise ApiError(400, "bad_path", "this path is not allowed")
    if relative.startswith("/") or _DRIVE_RE.match(relative):
        raise ApiError(400, "bad_path", "absolute paths are not allowed")
    parts = relative.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ApiError(400, "bad_path", "this path is not allowed")
    if any(p.startswith(".") for p in parts):
        raise ApiError(404, "not_found", "no such file")
    base = root.resolve()
    try:
        target = (base / relative).resolve(strict=True)
    except (OSError, RuntimeError):
        raise ApiError(404, "not_found", "no such file") from None
    if not target.is_relative_to(base) or not target.is_file():
        raise ApiError(404, "not_found", "no such file")
    return target


class Guard:
    """The host, origin and token checks, as one aiohttp middleware."""

    def __init__(self, config: ServerConfig):
        self.token = config.token.encode() if config.token else None
        # Bound to loopback, only loopback names may appear in Host; bound wider, the token guards.
        self.allowed_hosts = (LOOPBACK_NAMES | {config.host.lower().strip("[]")}) if config.loopback else None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Refuse the request (403/401/400) unless it passes every check; else call ``handler``."""
        host = self._host(request)
        if self.allowed_hosts is not None and host.lower() not in self.allowed_hosts:
            raise ApiError(403, "bad_host", "this server only answers requests addressed to localhost")
        origin = request.headers.get("Origin")
        if origin is not None and not _same_origin(origin, request):
            raise ApiError(403, "cross_origin", "cross-origin requests are refused")
        is_api = request.path == "/api" or request.path.startswith("/api/") or is_comfy_path(request.path)
        if is_api and request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site"):
            raise ApiError(403, "cross_origin", "cross-site requests are refused")
        if self.token is not None and is_api and not self._has_token(request):
            raise ApiError(401, "unauthorized", "a valid access token is required", headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    @staticmethod
    def _host(request: web.Request) -> str:
        raw = request.headers.get("Host", "")
        if not _HOST_RE.fullmatch(raw):
            raise ApiError(400, "bad_host", "the Host header is missing or malformed")
        host = URL(f"http://{raw}").host
        return host or ""

    def _has_token(self, request: web.Request) -> bool:
        assert self.token is not None
        given = None
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        elif request.method in ("GET", "HEAD") and (request.path in ("/api/ws", *_COMFY_QUERY_TOKEN) or request.path.startswith(_QUERY_TOKEN_PREFIXES)):
            given = request.query.get("token")
        return given is not None and hmac.compare_digest(given.encode(), self.token)


def _same_origin(origin: str, request: web.Request) -> bool:
    """Whether ``Origin`` is scheme://host:port of this very request (``null`` never is)."""
    try:
        theirs = URL(origin)
        ours = URL(f"{request.scheme}://{request.headers.get('Host', '')}")
    except ValueError:
        return False
    if not theirs.is_absolute() or theirs.path not in ("", "/") or theirs.user or theirs.query_string:
        return False
    return (theirs.scheme, (theirs.host or "").lower(), theirs.port) == (ours.scheme, (ours.host or "").lower(), ours.port)


@web.middleware
async def log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One log line per request: client, method, path (never the query), status, milliseconds."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        log.info("%s %s %s %d %.1fms", request.remote, request.method, request.path, status, (time.perf_counter() - started) * 1000)


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: no sniffing, no framing, no referrer (tokens in URLs stay put)."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith(_FILE_PREFIXES):
        # served files are data, never a document that could run script in our origin
        response.headers["Content-Security-Policy"] = _FILE_CSP
    else:
        response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
    if (request.path.startswith("/api/") or is_comfy_path(request.path)) and not request.path.startswith(_FILE_PREFIXES):
        response.headers.setdefault("Cache-Control", "no-store")
