"""Access tokens: a verified token is remembered until it expires, never past it, and never across a new key ring."""

from __future__ import annotations

import time

from gima_server.auth import tokens
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
