"""Same-origin (CSRF) check for cookie-authenticated writes, CORS for listed origins, security headers."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from . import appkeys
from .auth.sessions import COOKIE_NAME, csrf_token_matches
from .errors import ApiError

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)
_CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key, Last-Event-ID, X-CSRF-Token, X-Request-Id, traceparent"


def _request_origin(request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    if origin:
        return origin
    referer = request.headers.get("Referer")
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "null"
    return None


def _trusted_origins(request: web.Request) -> set[str]:
    settings = request.app[appkeys.SETTINGS]
    own = settings.public_origin or f"{request.scheme}://{request.host}"
    return {own, *settings.allowed_origins}


async def check_origin(request: web.Request) -> None:
    """Writes that a browser could be tricked into sending must come from a trusted origin (or bear the CSRF token)."""
    if request.method in _SAFE_METHODS or "Authorization" in request.headers:
        return
    has_cookie = COOKIE_NAME in request.cookies
    if has_cookie or request.path.startswith("/api/auth/"):
        origin = _request_origin(request)
        trusted = origin in _trusted_origins(request) if origin is not None else not has_cookie
        if not trusted and not await csrf_token_matches(request):
            raise ApiError(403, "forbidden", "cross-origin request refused (origin check failed)")


def check_websocket_origin(request: web.Request) -> None:
    """Browsers let any page open a WebSocket with the user's cookies: a foreign Origin is refused (403)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin not in _trusted_origins(request):
        raise ApiError(403, "forbidden", "cross-origin WebSocket refused")


def preflight_response(request: web.Request) -> web.Response | None:
    """The answer to a CORS preflight from an allowed origin; None for every other request."""
    origin = request.headers.get("Origin")
    if (
        request.method != "OPTIONS"
        or "Access-Control-Request-Method" not in request.headers
        or origin not in request.app[appkeys.SETTINGS].allowed_origins
    ):
        return None
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE",
            "Access-Control-Allow-Headers": _CORS_HEADERS,
            "Access-Control-Max-Age": "600",
        },
    )


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: hardening headers, and CORS only for explicitly allowed origins (never '*')."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if response.content_type == "text/html":
        headers.setdefault("Content-Security-Policy", _CSP)
    origin = request.headers.get("Origin")
    if origin and origin in request.app[appkeys.SETTINGS].allowed_origins:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Allow-Credentials"] = "true"
        headers["Access-Control-Expose-Headers"] = "X-Trace-Id, Retry-After, Idempotent-Replayed"
        headers.add("Vary", "Origin")
