"""POST /v1/embeddings in OpenAI's shape, answered by the configured embeddings upstream (route class embeddings)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import appkeys
from ..agents.plain import PlainUpstream, post_embeddings
from ..agents.upstream import UpstreamError
from ..auth.sessions import require_user
from ..errors import ApiError, invalid
from ..observability.tracing import request_trace_id
from ..validation import Field, check_object, parse_json, read_raw

MAX_INPUTS = 2048  # OpenAI's own limit per request
_BODY = {
    "model": Field(str, required=True, max_chars=200),
    "input": Field((str, list), required=True),
    "encoding_format": Field(str, max_chars=16),
    "dimensions": Field(int, minimum=1, maximum=65_536),
    "user": Field(str, max_chars=256),
}


def not_configured(what: str, settings: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} is not configured on this server ({settings})")


def upstream_failed(exc: UpstreamError) -> ApiError:
    """An upstream's failure as this route's error: its refusal a 400 (the request's fault), the rest a 503."""
    if exc.code == "upstream_error":
        return ApiError(400, "upstream_error", exc.message)
    return ApiError(503, "upstream_unavailable", exc.message, retry_after_s=exc.retry_after_s or 5.0)


def _checked_input(value: Any) -> Any:
    """A string, or a non-empty list of strings, of token ids, or of token-id lists: what OpenAI accepts."""
    if isinstance(value, str):
        if not value:
            raise invalid("input must not be empty (parameter 'input')")
        return value
    if not value or len(value) > MAX_INPUTS:
        raise invalid(f"input must hold 1-{MAX_INPUTS} items (parameter 'input')")
    if all(isinstance(v, str) and v for v in value):
        return value
    if all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        return value
    if all(isinstance(v, list) and v and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in v)
           for v in value):
        return value
    raise invalid("input must be a string, or a list of non-empty strings or of token ids (parameter 'input')")


async def embeddings(request: web.Request) -> web.Response:
    await require_user(request)
    upstream = request.app[appkeys.EMBEDDINGS]
    if upstream is None:
        raise not_configured("embeddings", "GIMA_EMBEDDINGS_BASE_URL, or embeddings = \"<id>\" in GIMA_AGENTS_FILE")
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "body must be application/json")
    body = check_object(parse_json(await read_raw(request)), _BODY)
    if body["encoding_format"] not in (None, "float", "base64"):
        raise invalid("encoding_format must be float or base64 (parameter 'encoding_format')")
    sent: dict[str, Any] = {"model": upstream.target.upstream_model(body["model"]), "input": _checked_input(body["input"])}
    sent.update({k: body[k] for k in ("encoding_format", "dimensions", "user") if body[k] is not None})
    return web.json_response(await _answer(upstream, sent, request_trace_id(request)))


async def _answer(upstream: PlainUpstream, sent: dict[str, Any], trace_id: str) -> dict[str, Any]:
    try:
        return await post_embeddings(upstream, sent, trace_id)
    except UpstreamError as exc:
        raise upstream_failed(exc) from None


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/embeddings", embeddings)
