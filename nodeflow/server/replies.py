"""JSON replies: success bodies from pydantic models, failures as :class:`ApiError`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from ..errors import ErrorInfo
from .schemas import ErrorBody, ErrorModel
from .storage import DISK_FULL_MESSAGE, is_disk_full

log = logging.getLogger("nodeflow.server")


class ApiError(Exception):
    """An expected failure: raised by handlers and middlewares, answered as an :class:`ErrorBody`."""

    def __init__(self, status: int, code: str, message: str, errors: list[ErrorInfo] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = list(errors or [])
        self.headers = headers or {}

    def response(self, scrub: Callable[[str], str] = str) -> web.Response:
        """The JSON response for this error; ``scrub`` rewrites server paths out of every message."""
        body = ErrorBody(
            error=scrub(self.message),
            code=self.code,
            errors=[ErrorModel(**{**e.to_dict(), "message": scrub(e.message)}) for e in self.errors],
        )
        return web.json_response(body.model_dump(mode="json"), status=self.status, headers=self.headers)


def reply(model: BaseModel, status: int = 200) -> web.Response:
    """A JSON response from a small response model (serialised on the loop; large ones go through ``Api.answer``)."""
    return web.json_response(model.model_dump(mode="json"), status=status)


def reply_json(data: Any, status: int = 200) -> web.Response:
    """A JSON response from plain data (documents whose schema lives elsewhere, like graphs)."""
    return web.json_response(data, status=status)


_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                 408: "request_timeout", 413: "too_large", 415: "unsupported_media_type", 507: "disk_full"}


def error_middleware(scrub: Callable[[str], str]) -> Any:
    """A middleware answering :class:`ApiError`, a full disk (507) and aiohttp's own 4xx (on ``/api``) as JSON.

    Never a traceback; messages pass through ``scrub``, so no answer names a server folder.
    """

    @web.middleware
    async def errors_to_json(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response(scrub)
        except web.HTTPException as exc:
            if exc.status < 400 or not request.path.startswith("/api"):
                raise
            headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
            return ApiError(exc.status, _STATUS_CODES.get(exc.status, "error"), exc.reason, headers=headers).response()
        except Exception as exc:
            if is_disk_full(exc):
                log.warning("%s %s: the disk is full (%s)", request.method, request.path, exc)
                return ApiError(507, "disk_full", DISK_FULL_MESSAGE).response()
            log.exception("%s %s failed", request.method, request.path)
            return ApiError(500, "internal_error", "internal server error (see the server log)").response()

    return errors_to_json
