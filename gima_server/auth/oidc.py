"""Single sign-on with OpenID Connect: authorization code with PKCE (authlib), the ID token checked with pyjwt.

GET /api/auth/oidc/login?next=/path sends the browser to the provider with a fresh state, nonce and PKCE
verifier kept in the encrypted cookie session; GET /api/auth/oidc/callback checks the state, trades the code
(with the verifier and the client secret) for tokens, checks the ID token's signature, issuer, audience,
expiry and nonce, and signs in the provider's `sub` as a local user of that issuer (never merged with a local
account of the same email). Then it redirects to `next` on this site.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from aiohttp_session import get_session

from .. import appkeys
from ..errors import ApiError, invalid, not_found
from .external import user_of_subject
from .sessions import start_cookie_session

log = logging.getLogger("gima.auth.oidc")
_DISCOVERY_TTL_S = 3600.0
_FLOW_TTL_S = 600  # a sign-in must come back from the provider within this time
_ALGORITHMS = ["RS256", "ES256", "PS256"]
_MAX_NAME_CHARS = 100


@dataclass(frozen=True, slots=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret: str
    scopes: str
    session_ttl_s: int


class OidcProvider:
    """The provider's discovery document and keys, fetched when first needed and kept for an hour."""

    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self._config: dict[str, Any] | None = None
        self._fetched_at = 0.0
        self._jwks: jwt.PyJWKClient | None = None
        self._lock = asyncio.Lock()

    async def config(self) -> dict[str, Any]:
        async with self._lock:
            if self._config is None or time.monotonic() - self._fetched_at > _DISCOVERY_TTL_S:
                url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
                try:
                    timeout = aiohttp.ClientTimeout(total=5)
                    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
                        resp.raise_for_status()
                        found = await resp.json(content_type=None)
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    log.warning("OIDC discovery failed (%s)", type(exc).__name__)
                    raise ApiError(503, "unavailable", "the sign-in provider does not answer; try again shortly",
                                   retry_after_s=5) from None
                if not isinstance(found, dict) or found.get("issuer") != self.settings.issuer:
                    raise ApiError(503, "unavailable", "the sign-in provider's configuration names another issuer")
                self._config, self._fetched_at = found, time.monotonic()
                self._jwks = jwt.PyJWKClient(str(found["jwks_uri"]), cache_keys=True, timeout=5)
            return self._config

    async def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        await self.config()
        jwks = self._jwks
        assert jwks is not None
        try:
            key = await asyncio.to_thread(_signing_key, jwks, id_token)  # urllib: off the loop
            claims: dict[str, Any] = jwt.decode(
                id_token, key.key, algorithms=_ALGORITHMS, audience=self.settings.client_id,
                issuer=self.settings.issuer, leeway=30, options={"require": ["exp", "iat", "sub", "iss", "aud"]})
        except (jwt.PyJWTError, jwt.PyJWKClientError) as exc:
            log.warning("OIDC ID token refused (%s: %s)", type(exc).__name__, exc)
            raise ApiError(401, "unauthorized", "the sign-in provider's ID token is not valid") from None
        if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
            raise ApiError(401, "unauthorized", "the ID token was not issued for this sign-in (nonce)")
        if not isinstance(claims["sub"], str) or not 0 < len(claims["sub"]) <= 255:
            raise ApiError(401, "unauthorized", "the ID token has no usable subject")
        return claims


OIDC_PROVIDER: web.AppKey[OidcProvider] = web.AppKey("oidc_provider")


def _signing_key(jwks: jwt.PyJWKClient, id_token: str) -> jwt.PyJWK:
    """The key named by the token's kid; a provider with one key may leave the kid out."""
    kid = jwt.get_unverified_header(id_token).get("kid")
    if kid:
        return jwks.get_signing_key(str(kid))
    keys = jwks.get_signing_keys()
    if len(keys) != 1:
        raise jwt.PyJWKClientError("the ID token names no key and the provider has several")
    return keys[0]


def _redirect_uri(request: web.Request) -> str:
    own = request.app[appkeys.SETTINGS].public_origin or f"{request.scheme}://{request.host}"
    return f"{own}/api/auth/oidc/callback"


def _safe_next(raw: str | None) -> str:
    """Only a path on this site: an open redirect would hand the new session's page to anyone's link."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw or not raw.isprintable():
        return "/"
    return raw[:1000]


def _client(provider: OidcProvider, request: web.Request) -> Any:
    from authlib.integrations.httpx_client import AsyncOAuth2Client  # type: ignore[import-untyped, unused-ignore]

    s = provider.settings
    return AsyncOAuth2Client(s.client_id, s.client_secret, scope=s.scopes, redirect_uri=_redirect_uri(request),
                             code_challenge_method="S256", timeout=10)


def _provider(request: web.Request) -> OidcProvider:
    provider = request.app.get(OIDC_PROVIDER)
    if provider is None:
        raise not_found("resource")  # not configured: the routes do not exist
    return provider


async def login(request: web.Request) -> web.StreamResponse:
    provider = _provider(request)
    config = await provider.config()
    state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    async with _client(provider, request) as client:
        url, _ = client.create_authorization_url(config["authorization_endpoint"], state=state, nonce=nonce,
                                                 code_verifier=verifier)
    session = await get_session(request)
    session["oidc"] = {"state": state, "nonce": nonce, "verifier": verifier, "next": _safe_next(request.query.get("next")),
                       "at": time.time()}
    raise web.HTTPFound(url, headers={"Cache-Control": "no-store"})


async def callback(request: web.Request) -> web.StreamResponse:
    provider = _provider(request)
    session = await get_session(request)
    flow = session.pop("oidc", None)
    if not isinstance(flow, dict) or time.time() - float(flow.get("at", 0)) > _FLOW_TTL_S:
        raise invalid("this sign-in was not started here or took too long; start again")
    if "error" in request.query:
        raise ApiError(401, "unauthorized", f"the sign-in provider refused: {request.query['error'][:100]}")
    state, code = request.query.get("state", ""), request.query.get("code", "")
    if not code or not secrets.compare_digest(state, str(flow["state"])):
        raise invalid("the sign-in's state does not match; start again")
    config = await provider.config()
    try:
        async with _client(provider, request) as client:
            token = await client.fetch_token(config["token_endpoint"], code=code, code_verifier=flow["verifier"],
                                             grant_type="authorization_code")
    except Exception as exc:  # authlib raises OAuthError, httpx its transport errors: either way the code is spent
        log.warning("OIDC code exchange failed (%s)", type(exc).__name__)
        raise ApiError(401, "unauthorized", "the sign-in provider did not accept the sign-in; start again") from None
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise ApiError(401, "unauthorized", "the sign-in provider sent no ID token")
    claims = await provider.verify_id_token(id_token, str(flow["nonce"]))
    name = next((str(claims[k]).strip()[:_MAX_NAME_CHARS] for k in ("name", "email") if isinstance(claims.get(k), str)
                 and claims[k].strip()), "Single sign-on user")
    store = request.app[appkeys.STORE]
    user = await user_of_subject(store, provider.settings.issuer, claims["sub"], name)
    login_session = await store.create_session(user.id, provider.settings.session_ttl_s)
    await start_cookie_session(request, login_session.id)
    raise web.HTTPFound(str(flow["next"]), headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application) -> None:
    settings = app[appkeys.SETTINGS]
    if settings.oidc_issuer:
        app[OIDC_PROVIDER] = OidcProvider(OidcSettings(settings.oidc_issuer, settings.oidc_client_id,
                                                       settings.oidc_client_secret, settings.oidc_scopes,
                                                       settings.session_ttl_s))
    app.router.add_get("/api/auth/oidc/login", login)
    app.router.add_get("/api/auth/oidc/callback", callback)
