import jwt
import pytest

from gima_server.auth.passwords import hash_password, verify_password
from gima_server.auth.tokens import TokenIssuer

OLD, NEW = "o" * 40, "n" * 40


def test_tokens_carry_sub_and_sid_and_expire() -> None:
    issuer = TokenIssuer((NEW,), ttl_s=60)
    token = issuer.issue("user-1", "session-1", now=1_000_000_000)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "user-1" and claims["sid"] == "session-1"
    assert issuer.verify(token) is None  # issued long ago: expired
    fresh = issuer.verify(issuer.issue("user-1", "session-1"))
    assert fresh is not None and (fresh.user_id, fresh.session_id) == ("user-1", "session-1")


def test_key_rotation_verifies_old_tokens_and_signs_with_the_new_key() -> None:
    old_token = TokenIssuer((OLD,), 60).issue("u", "s")
    rotated = TokenIssuer((NEW, OLD), 60)
    assert rotated.verify(old_token) is not None
    assert TokenIssuer((OLD,), 60).verify(rotated.issue("u", "s")) is None
    assert TokenIssuer((NEW,), 60).verify(old_token) is None


def test_forged_tokens_fail() -> None:
    issuer = TokenIssuer((NEW,), 60)
    none_alg = jwt.encode({"sub": "u", "sid": "s", "exp": 9999999999, "iat": 1}, key="", algorithm="none")
    assert issuer.verify(none_alg) is None
    assert issuer.verify("garbage") is None
    other = jwt.encode({"sub": "u", "sid": "s"}, "x" * 40, algorithm="HS256", headers={"kid": "whatever"})
    assert issuer.verify(other) is None


@pytest.mark.timeout(20)
async def test_password_hash_roundtrip() -> None:
    hashed = await hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    assert await verify_password(hashed, "correct horse")
    assert not await verify_password(hashed, "wrong horse")
    assert not await verify_password(None, "anything")
