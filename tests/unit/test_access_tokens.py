"""Access tokens: a verified token is remembered until it expires, never past it, and never across a new key ring."""

from __future__ import annotations

import base64
import json
import time

import jwt

from gima_server.auth import tokens
from gima_server.auth.keyring import kid_for
from gima_server.auth.tokens import AccessClaims, TokenIssuer

OLD, NEW = "o" * 40, "n" * 40


def test_a_remembered_token_still_expires() -> None:
    issuer = TokenIssuer((OLD,), ttl_s=60)
    token = issuer.issue("u1", "s1", now=time.time() - 59)  # one second left
    assert issuer.verify(token) == AccessClaims("u1", "s1")
    assert issuer.verify(token) == AccessClaims("u1", "s1")  # from memory
    time.sleep(1.2)
    assert issuer.verify(token) is None


def test_a_new_ring_forgets_tokens_of_a_dropped_key() -> None:
    issuer = TokenIssuer((OLD,), ttl_s=600)
    token = issuer.issue("u1", "s1")
    assert issuer.verify(token) is not None
    issuer.use(NEW, (NEW,))  # the old key retired
    assert issuer.verify(token) is None


def test_tampered_and_foreign_tokens_are_refused_every_time() -> None:
    issuer = TokenIssuer((OLD,), ttl_s=600)
    token = issuer.issue("u1", "s1")
    forged = TokenIssuer((NEW,), ttl_s=600).issue("u1", "s1")
    for _ in range(2):
        assert issuer.verify(token[:-2] + ("AA" if not token.endswith("AA") else "BB")) is None
        assert issuer.verify(forged) is None


def test_memory_is_bounded() -> None:
    issuer = TokenIssuer((OLD,), ttl_s=600)
    for n in range(tokens._VERIFIED_MAX + 50):
        assert issuer.verify(issuer.issue(f"u{n}", "s")) is not None
    assert len(issuer._verified) == tokens._VERIFIED_MAX


def _claims() -> dict[str, object]:
    now = int(time.time())
    return {"sub": "u1", "sid": "s1", "iat": now, "exp": now + 600, "iss": "gima-server"}


def test_a_token_of_any_key_in_the_ring_verifies_whatever_its_header_looks_like() -> None:
    old_token = TokenIssuer((OLD,), ttl_s=600).issue("u1", "s1")
    issuer = TokenIssuer((NEW,), ttl_s=600)
    issuer.use(NEW, (NEW, OLD))  # rotated: signs with NEW, still accepts OLD's tokens
    assert issuer.verify(old_token) == AccessClaims("u1", "s1")
    assert issuer.verify(issuer.issue("u2", "s2")) == AccessClaims("u2", "s2")
    # Another encoder's header for the same key (an extra field): not byte-identical to ours, read and accepted.
    other = jwt.encode(_claims(), NEW, algorithm="HS256", headers={"kid": kid_for(NEW), "cty": "JWT"})
    assert issuer.verify(other) == AccessClaims("u1", "s1")


def test_a_header_copied_from_our_tokens_does_not_make_a_foreign_signature_valid() -> None:
    issuer = TokenIssuer((OLD,), ttl_s=600)
    # Byte-identical header to the issuer's own (its key's kid), signed with another key.
    forged = jwt.encode(_claims(), NEW, algorithm="HS256", headers={"kid": kid_for(OLD)})
    assert forged.partition(".")[0] == issuer.issue("u1", "s1").partition(".")[0]
    assert issuer.verify(forged) is None
    # And our header with alg none and no signature.
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": kid_for(OLD)}).encode()).rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(json.dumps(_claims()).encode()).rstrip(b"=").decode()
    assert issuer.verify(f"{header}.{payload}.") is None
