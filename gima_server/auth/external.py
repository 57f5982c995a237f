"""JWTs signed by a host site that embeds the widget: verified with pyjwt, mapped to a local user per issuer.

The host site already knows its user; it signs a short-lived token (HS256 with a shared secret, or RS256/ES256
with keys published as a JWKS) and the widget sends it as `Authorization: Bearer`. Its `sub` becomes a local
user on first sight, keyed by issuer *and* subject, under an address no sign-up can take (`.invalid`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import jwt

from ..store.base import DuplicateError, Store, User

log = logging.getLogger("gima.auth.external")
_ASYMMETRIC = ["RS256", "ES256"]
_MAX_SUBJECT_CHARS = 255
_MAX_NAME_CHARS = 100
_MAX_CACHED_USERS = 50_000
EXTERNAL_PASSWORD_HASH = "!external"  # not an argon2 hash: a password never matches it


@dataclass(frozen=True, slots=True)
class ExternalJwtSettings:
    issuer: str
    audience: str
    secret: str = ""
    jwks_url: str = ""
    leeway_s: float = 10.0
    max_ttl_s: int = 3600
    user_cache_s: float = 5.0  # a deleted or changed account is seen within this time
    jwks_refresh_s: float = 5.0  # an unknown kid fetches the JWKS again at most this often (random kids cost nothing to send)


@dataclass(frozen=True, slots=True)
class ExternalIdentity:
    issuer: str
    subject: str
    name: str
    session_id: str


def external_email(issuer: str, subject: str) -> str:
    """The local user's address: one per (issuer, subject), in a reserved domain that sign-up refuses."""
    issuer_tag = hashlib.sha256(issuer.encode()).hexdigest()[:16]
    return f"{hashlib.sha256(subject.encode()).hexdigest()[:40]}@{issuer_tag}.external.invalid"


class ExternalTokens:
    def __init__(self, settings: ExternalJwtSettings) -> None:
        self._settings = settings
        self._jwks = jwt.PyJWKClient(settings.jwks_url, cache_jwk_set=False, timeout=3) if settings.jwks_url else None
        self._keys: dict[str, jwt.PyJWK] = {}  # bound: the provider's key set, replaced whole at each fetch
        self._fetched_at = -settings.jwks_refresh_s
        self._refresh = asyncio.Lock()
        self._users: dict[str, tuple[User, float]] = {}  # email: (user, cached until)

    def claims_issuer(self, token: str) -> bool:
        """Whether an unverified token names this issuer (so it is ours to verify, not the local key ring's)."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return False
        return isinstance(claims, dict) and claims.get("iss") == self._settings.issuer

    async def verify(self, token: str) -> ExternalIdentity | None:
        s = self._settings
        try:
            header = jwt.get_unverified_header(token)
            if self._jwks is None:
                key: Any = s.secret
                algorithms = ["HS256"]
            else:
                algorithms = _ASYMMETRIC
                jwk = await self._signing_key(str(header.get("kid", "")))
                if jwk is None or (jwk.algorithm_name not in (None, "", header.get("alg"))):
                    return None
                key = jwk.key
            claims = jwt.decode(
                token, key, algorithms=algorithms, issuer=s.issuer, audience=s.audience, leeway=s.leeway_s,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            return None
        subject, issued, expires = claims.get("sub"), claims.get("iat"), claims.get("exp")
        if not isinstance(subject, str) or not 0 < len(subject) <= _MAX_SUBJECT_CHARS:
            return None
        if not isinstance(issued, (int, float)) or not isinstance(expires, (int, float)) or expires - issued > s.max_ttl_s:
            return None  # "short-lived" is enforced, not hoped for
        name = claims.get("name")
        name = name.strip()[:_MAX_NAME_CHARS] if isinstance(name, str) and name.strip() else "Guest of " + s.issuer[:60]
        sid = claims.get("sid")
        session_key = f"{s.issuer}\0{subject}\0{sid if isinstance(sid, str) else ''}"
        return ExternalIdentity(s.issuer, subject, name, hashlib.sha256(session_key.encode()).hexdigest()[:32])

    async def _signing_key(self, kid: str) -> jwt.PyJWK | None:
        found = self._keys.get(kid)
        if found is not None or self._jwks is None:
            return found
        async with self._refresh:
            found = self._keys.get(kid)
            if found is not None or time.monotonic() - self._fetched_at < self._settings.jwks_refresh_s:
                return found
            self._fetched_at = time.monotonic()
            client = self._jwks
            try:
                key_set = await asyncio.to_thread(client.get_jwk_set, True)  # urllib: off the loop
            except jwt.PyJWKClientError as exc:
                log.warning("could not fetch the external JWKS (%s)", type(exc).__name__)
                return None
            self._keys = {k.key_id: k for k in key_set.keys if k.key_id}
            return self._keys.get(kid)

    async def user_for(self, identity: ExternalIdentity, store: Store) -> User:
        email = external_email(identity.issuer, identity.subject)
        cached = self._users.get(email)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        user = await user_of_subject(store, identity.issuer, identity.subject, identity.name)
        if len(self._users) >= _MAX_CACHED_USERS:
            self._users.clear()
        self._users[email] = (user, time.monotonic() + self._settings.user_cache_s)
        return user


async def user_of_subject(store: Store, issuer: str, subject: str, name: str) -> User:
    """The local user of an (issuer, subject), made on first sight; never an account with the same email."""
    email = external_email(issuer, subject)
    user = await store.get_user_by_email(email)
    if user is None:
        try:
            user = await store.create_user(email, EXTERNAL_PASSWORD_HASH, name, ("user",))
            log.info("external user created", extra={"userId": user.id})
        except DuplicateError:  # two first requests at once: the other one made it
            user = await store.get_user_by_email(email)
            assert user is not None
    return user
