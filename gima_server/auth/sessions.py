"""Who is calling: a Bearer JWT or the cookie session, both bound to a revocable login session."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from aiohttp import web
from aiohttp_session import get_session, new_session

from .. import appkeys
from ..apikeys.model import looks_like_key
from ..errors import ApiError
from ..store.base import User
from .external import ExternalTokens

COOKIE_NAME = "gima_session"


@dataclass(frozen=True, slots=True)
class Principal:
    user: User
    session_id: str  # an API key's is "key:<key id>": the key is its own session
    via: str  # "bearer", "cookie", "external" (a host site's token) or "api_key"
    api_key_id: str | None = None


_PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("principal")


def _unauthorized(message: str = "authentication required") -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="gima"'})


class SessionCache:
    """Recently validated login sessions, so a request does not read the store twice to learn who it is.

    A logout in this process forgets its entry at once; another process's logout (or a role change) is
    seen here within ttl_s. ttl_s = 0 turns the cache off.
    """

    def __init__(self, ttl_s: float, max_entries: int = 50_000) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._entries: dict[str, tuple[User, float, float]] = {}  # session id: (user, session expiry, cached until)

    def get(self, session_id: str) -> User | None:
        entry = self._entries.get(session_id)
        if entry is None:
            return None
        now = time.time()
        if entry[1] < now or entry[2] < now:
            del self._entries[session_id]
            return None
        return entry[0]

    def put(self, session_id: str, user: User, session_expires_at: float) -> None:
        if self._ttl_s <= 0:
            return
        if len(self._entries) >= self._max_entries:
            self._entries.clear()  # rare: a cheap bound beats bookkeeping on the hot path
        self._entries[session_id] = (user, session_expires_at, time.time() + self._ttl_s)

    def forget(self, session_id: str) -> None:
        self._entries.pop(session_id, None)


async def _principal_for(request: web.Request, user_id: str | None, session_id: str, via: str) -> Principal | None:
    cache = request.app[appkeys.SESSIONS]
    cached = cache.get(session_id)
    if cached is not None:
        return Principal(cached, session_id, via) if user_id is None or cached.id == user_id else None
    found = await request.app[appkeys.STORE].get_session_user(session_id)
    if found is None:
        return None
    session, user = found
    if session.revoked or session.expires_at < time.time():
        return None
    if user_id is not None and session.user_id != user_id:
        return None
    cache.put(session.id, user, session.expires_at)
    return Principal(user, session.id, via)


async def _external_principal(request: web.Request, external: ExternalTokens, token: str) -> Principal:
    """A host site's token: verified against its secret or JWKS, its subject a local user of that issuer."""
    identity = await external.verify(token)
    if identity is None:
        raise _unauthorized("invalid or expired access token")
    user = await external.user_for(identity, request.app[appkeys.STORE])
    return Principal(user, identity.session_id, "external")


async def authenticate(request: web.Request) -> Principal | None:
    """Resolve the caller once per request; a bad Bearer token is a 401, never a fall-back to the cookie."""
    if _PRINCIPAL in request:
        cached: Principal | None = request[_PRINCIPAL]
        return cached
    principal: Principal | None = None
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, raw_token = header.partition(" ")
        token = raw_token.strip()
        external = request.app[appkeys.EXTERNAL_TOKENS]
        if scheme.lower() == "bearer" and looks_like_key(token):
            principal = await request.app[appkeys.API_KEYS].principal(token, request.app[appkeys.STORE])
            if principal is None:
                raise _unauthorized("invalid API key")
        elif scheme.lower() == "bearer" and external is not None and external.claims_issuer(token):
            principal = await _external_principal(request, external, token)
        else:
            claims = request.app[appkeys.TOKENS].verify(token) if scheme.lower() == "bearer" else None
            if claims is None:
                raise _unauthorized("invalid or expired access token")
            principal = await _principal_for(request, claims.user_id, claims.session_id, "bearer")
            if principal is None:
                raise _unauthorized("session has ended")
    elif COOKIE_NAME in request.cookies:
        cookie = await get_session(request)
        session_id = cookie.get("sid")
        if isinstance(session_id, str):
            principal = await _principal_for(request, None, session_id, "cookie")
    request[_PRINCIPAL] = principal
    return principal


async def require_user(request: web.Request) -> Principal:
    principal = await authenticate(request)
    if principal is None:
        raise _unauthorized()
    return principal


async def start_cookie_session(request: web.Request, session_id: str) -> str:
    """Put the login in a fresh cookie session (new cookie, no fixation); return its CSRF token."""
    cookie = await new_session(request)
    csrf_token = secrets.token_urlsafe(24)
    cookie["sid"] = session_id
    cookie["csrf"] = csrf_token
    return csrf_token


async def end_cookie_session(request: web.Request) -> None:
    if COOKIE_NAME in request.cookies:
        (await get_session(request)).invalidate()


async def csrf_token_matches(request: web.Request) -> bool:
    sent = request.headers.get("X-CSRF-Token")
    if not sent or COOKIE_NAME not in request.cookies:
        return False
    expected = (await get_session(request)).get("csrf")
    return isinstance(expected, str) and hmac.compare_digest(sent, expected)


async def csrf_token(request: web.Request) -> str | None:
    if COOKIE_NAME not in request.cookies and _PRINCIPAL not in request:
        return None
    value = (await get_session(request)).get("csrf")
    return value if isinstance(value, str) else None
