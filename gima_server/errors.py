"""ApiError, and how every error is rendered as the JSON error of API.md."""

from __future__ import annotations

import logging
import math
from typing import Mapping

from aiohttp import web

from .observability.http_metrics import ERROR_CODE
from .observability.tracing import request_trace_id

log = logging.getLogger("gima.errors")

_CODE_FOR_STATUS = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after_s: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s
        self.headers = dict(headers or {})


def not_found(what: str = "resource") -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


# OpenAI's error types by status, for /v1 (its SDKs pick the exception class from the status).
_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
                 415: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error"}
_OPENAI_CODES = {"unauthorized": "invalid_api_key", "rate_limited": "rate_limit_exceeded"}
_OPENAI_PARAMS = {"context_length_exceeded": "messages"}


def error_response(request: web.Request, error: ApiError) -> web.Response:
    request[ERROR_CODE] = error.code
    body: dict[str, object] = {"code": error.code, "message": error.message, "traceId": request_trace_id(request)}
    if request.path.startswith("/v1/"):
        body = {"message": error.message, "type": _OPENAI_TYPES.get(error.status, "server_error"),
                "param": _OPENAI_PARAMS.get(error.code),
                "code": _OPENAI_CODES.get(error.code, error.code), "traceId": body["traceId"]}
    headers = dict(error.headers)
    if error.retry_after_s is not None:
        body["retryAfter"] = error.retry_after_s
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_s)))
    return web.json_response({"error": body}, status=error.status, headers=headers)


def _from_http_exception(exc: web.HTTPException) -> ApiError:
    code = _CODE_FOR_STATUS.get(exc.status, "error" if exc.status >= 500 else "invalid_request")
    message = exc.reason if exc.status != 413 else "request body is too large"
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return ApiError(exc.status, code, message, headers=headers)


def render_exception(request: web.Request, exc: Exception) -> web.Response:
    """Every error as the JSON error of API.md; anything unexpected is logged with its trace id, never shown."""
    if isinstance(exc, ApiError):
        return error_response(request, exc)
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        return error_response(request, _from_http_exception(exc))
    if isinstance(exc, (web.HTTPException, ConnectionResetError)):
        raise exc  # a redirect, or a client that left: nothing to render
    log.exception("unhandled error on %s %s", request.method, request.path, extra={"trace_id": request_trace_id(request)})
    return error_response(request, ApiError(500, "internal_error", "internal server error"))
