"""Access tokens: HS256 JWTs carrying sub (user) and sid (session), signed by a key ring for rotation."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable

import jwt

from .keyring import kid_for

_ALGORITHM = "HS256"
_ISSUER = "gima-server"
_VERIFIED_MAX = 8192  # tokens whose signature was checked, kept until they expire (oldest dropped past this)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    session_id: str


class TokenIssuer:
    """Signs with the first key; verifies with any key of the ring (matched by kid)."""

    def __init__(self, keys: tuple[str, ...], ttl_s: int) -> None:
        if not keys:
            raise ValueError("at least one signing key is required")
        self.ttl_s = ttl_s
        self.use(keys[0], keys)

    def use(self, signing_key: str, verifying_keys: Iterable[str]) -> None:
        """Sign with signing_key from now on; verify with any of verifying_keys (a ring that was re-read)."""
        self._signing_key = signing_key
        self._keys = {kid_for(k): k for k in (signing_key, *verifying_keys)}
        # Profile (bench.paced's ramp): reading a token's header to find its key was 16 of the 54 µs a first-seen
        # token costs (PyJWT decodes all three segments for it). Our own tokens' headers are byte-identical per
        # key, so the header segment picks the key; the signature check still covers it. Others are read.
        self._by_header = {_header_segment(k, kid): k for kid, k in self._keys.items()}
        # Profile (bench.turnover): decoding and checking the HMAC was ~3 % of a reply's start, paid again by every
        # request with the same token. A verified token maps to its claims until its exp; a new ring empties it.
        self._verified: dict[str, tuple[AccessClaims, float]] = {}

    @property
    def signing_kid(self) -> str:
        return kid_for(self._signing_key)

    def issue(self, user_id: str, session_id: str, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {"sub": user_id, "sid": session_id, "iat": issued, "exp": issued + self.ttl_s, "iss": _ISSUER}
        return _encode(claims, self._signing_key, kid_for(self._signing_key))

    def verify(self, token: str) -> AccessClaims | None:
        known = self._verified.get(token)
        if known is not None:
            if known[1] > time.time():
                return known[0]
            del self._verified[token]
        claims = self._verify(token)
        if claims is not None:
            if len(self._verified) >= _VERIFIED_MAX:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = claims
            return claims[0]
        return None

    def _verify(self, token: str) -> tuple[AccessClaims, float] | None:
        try:
            key = self._by_header.get(token.partition(".")[0])
            if key is None:
                key = self._keys.get(jwt.get_unverified_header(token).get("kid", ""))
            if key is None:
                return None
            claims = jwt.decode(
                token, key, algorithms=[_ALGORITHM], issuer=_ISSUER, options={"require": ["sub", "sid", "exp", "iat"]}
            )
        except jwt.PyJWTError:
            return None
        if not isinstance(claims.get("sub"), str) or not isinstance(claims.get("sid"), str):
            return None
        return AccessClaims(claims["sub"], claims["sid"]), float(claims["exp"])


def _encode(claims: dict[str, object], key: str, kid: str) -> str:
    return jwt.encode(claims, key, algorithm=_ALGORITHM, headers={"kid": kid})


def _header_segment(key: str, kid: str) -> str:
    """The first segment of every token issue() signs with this key (the header does not depend on the claims)."""
    return _encode({}, key, kid).partition(".")[0]
