"""Tokens signed by a host site (HS256 secret or RS256/ES256 keys from a JWKS served over real HTTP) sign its
users in as local users of that issuer; every forged, foreign, stale or confused token gets 401 and makes nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any, AsyncIterator

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gima_server import appkeys
from gima_server.auth.external import external_email

from ..conftest import Api, MakeClient
from ..secrets_watch import remember
from ..sse import parse_sse

SECRET = "a-host-site-secret-that-is-long-enough-0123456789"
ISSUER, AUDIENCE = "https://shop.example", "gima-widget"
remember(SECRET)


def _claims(sub: str = "customer-42", **over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 300, "name": "Ada", **over}


def _hs(claims: dict[str, Any], secret: str = SECRET) -> str:
    token = jwt.encode(claims, secret, algorithm="HS256")
    remember(token)
    return token


async def _me(client: TestClient, token: str) -> tuple[int, dict[str, Any]]:
    resp = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    return resp.status, await resp.json()


async def _has_user(client: TestClient, sub: str, issuer: str = ISSUER) -> bool:
    return await client.app[appkeys.STORE].get_user_by_email(external_email(issuer, sub)) is not None


async def test_a_host_sites_token_signs_its_user_in_and_can_chat(make_client: MakeClient) -> None:
    client = await make_client(external_jwt_secret=SECRET, external_jwt_issuer=ISSUER, external_jwt_audience=AUDIENCE,
                               demo_tokens_per_s=0, demo_first_token_ms=0)
    token = _hs(_claims())
    status, body = await _me(client, token)
    assert status == 200 and body["user"]["name"] == "Ada" and body["user"]["roles"] == ["user"]
    again_status, again = await _me(client, _hs(_claims()))  # a fresh token for the same person: the same user
    assert again_status == 200 and again["user"]["id"] == body["user"]["id"]
    resp = await client.post("/api/chat/stream", json={"content": "hello from the shop"},
                             headers={"Authorization": f"Bearer {token}"})
    events, _ = parse_sse(await resp.read())
    assert resp.status == 200 and events[-1].name == "done"
    chats = await client.get("/api/chats", headers={"Authorization": f"Bearer {token}"})
    assert chats.status == 200 and len((await chats.json())["chats"]) == 1


async def test_two_issuers_never_share_an_account(make_client: MakeClient) -> None:
    shop = await make_client(external_jwt_secret=SECRET, external_jwt_issuer=ISSUER, external_jwt_audience=AUDIENCE)
    other = "https://blog.example"
    blog = await make_client(external_jwt_secret=SECRET, external_jwt_issuer=other, external_jwt_audience=AUDIENCE)
    _, at_shop = await _me(shop, _hs(_claims("same-sub")))
    _, at_blog = await _me(blog, _hs(_claims("same-sub", iss=other)))
    assert at_shop["user"]["id"] != at_blog["user"]["id"]  # one data dir, one store, two people


@pytest.mark.parametrize("case", ["alg-none", "wrong-issuer", "wrong-audience", "expired", "no-exp", "bad-signature",
                                  "too-long-lived", "empty-sub", "not-a-jwt", "future-iat-only"])
async def test_bad_tokens_get_401_and_make_no_user(make_client: MakeClient, case: str) -> None:
    client = await make_client(external_jwt_secret=SECRET, external_jwt_issuer=ISSUER, external_jwt_audience=AUDIENCE)
    sub = f"victim-{case}"
    now = int(time.time())
    tokens = {
        "alg-none": jwt.encode(_claims(sub), None, algorithm="none"),  # type: ignore[arg-type]
        "wrong-issuer": _hs(_claims(sub, iss="https://evil.example")),
        "wrong-audience": _hs(_claims(sub, aud="someone-else")),
        "expired": _hs(_claims(sub, iat=now - 900, exp=now - 600)),
        "no-exp": _hs({k: v for k, v in _claims(sub).items() if k != "exp"}),
        "bad-signature": _hs(_claims(sub), secret="not-the-secret-but-just-as-long-0123456789"),
        "too-long-lived": _hs(_claims(sub, exp=now + 30 * 86_400)),
        "empty-sub": _hs(_claims("")),
        "not-a-jwt": "definitely.not.ajwt",
        "future-iat-only": _hs(_claims(sub, iat=now + 3600, exp=now + 3900)),
    }
    status, body = await _me(client, tokens[case])
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert not await _has_user(client, sub) and not await _has_user(client, sub, "https://evil.example")


class _Jwks:
    """A host site's key endpoint on a real HTTP server; it counts how often it is asked."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.fetches += 1
        return web.json_response({"keys": self.keys})

    def publish(self, public_key: Any, kid: str, alg: str) -> None:
        algo = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
        self.keys.append({**json.loads(algo.to_jwk(public_key)), "kid": kid, "alg": alg, "use": "sig"})


@pytest.fixture
async def jwks() -> AsyncIterator[tuple[_Jwks, str]]:
    endpoint = _Jwks()
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", endpoint.handle)
    server = TestServer(app)
    await server.start_server()
    yield endpoint, str(server.make_url("/.well-known/jwks.json"))
    await server.close()


async def test_jwks_keys_verify_and_a_new_kid_refreshes_the_set(make_client: MakeClient, jwks: tuple[_Jwks, str]) -> None:
    endpoint, url = jwks
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    endpoint.publish(rsa_key.public_key(), "k1", "RS256")
    client = await make_client(external_jwt_jwks_url=url, external_jwt_issuer=ISSUER, external_jwt_audience=AUDIENCE,
                               external_jwt_jwks_refresh_s=0.3)
    status, _ = await _me(client, jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"}))
    assert status == 200 and endpoint.fetches == 1
    assert (await _me(client, jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})))[0] == 200
    assert endpoint.fetches == 1  # cached
    ec_key = ec.generate_private_key(ec.SECP256R1())  # the site rotates to a new key
    endpoint.publish(ec_key.public_key(), "k2", "ES256")
    await asyncio.sleep(0.3)  # past the refresh cool-down
    status, _ = await _me(client, jwt.encode(_claims("rotated"), ec_key, algorithm="ES256", headers={"kid": "k2"}))
    assert status == 200 and endpoint.fetches == 2


async def test_unknown_kids_and_hs_rs_confusion_are_refused(make_client: MakeClient, jwks: tuple[_Jwks, str]) -> None:
    endpoint, url = jwks
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    endpoint.publish(rsa_key.public_key(), "k1", "RS256")
    client = await make_client(external_jwt_jwks_url=url, external_jwt_issuer=ISSUER, external_jwt_audience=AUDIENCE)
    for n in range(20):  # a flood of made-up kids costs at most one fetch per cool-down
        assert (await _me(client, jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": f"x{n}"})))[0] == 401
    assert endpoint.fetches == 1
    public_pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode()).rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(_claims("confused")).encode()).rstrip(b"=")
    import hashlib
    import hmac

    signature = base64.urlsafe_b64encode(hmac.new(public_pem, header + b"." + payload, hashlib.sha256).digest()).rstrip(b"=")
    confused = (header + b"." + payload + b"." + signature).decode()  # HS256 "signed" with the public key
    assert (await _me(client, confused))[0] == 401
    assert not await _has_user(client, "confused")


async def test_local_sign_in_still_works_beside_external_tokens(make_client: MakeClient) -> None:
    client = await make_client(external_jwt_secret=SECRET, external_jwt_issuer=ISSUER, external_jwt_audience=AUDIENCE)
    resp = await client.post("/api/auth/signup", json={"email": "local@example.com", "password": "correct horse battery"},
                             headers={"Origin": str(client.make_url("")).rstrip("/")})
    assert resp.status == 201 and resp.headers["Cache-Control"] == "no-store"
    local = Api(client, (await resp.json())["accessToken"], {})
    me = await client.get("/api/auth/me", headers=local.headers)
    assert me.status == 200 and me.headers["Cache-Control"] == "no-store"
