"""Single sign-on against a real OpenID Connect provider running in the test (oidc-provider-mock: a real
discovery document, JWKS, authorization and token endpoints): authorization code with PKCE, state and nonce."""

from __future__ import annotations

from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from oidc_provider_mock import User, run_server_in_thread

from gima_server import appkeys

from ..conftest import MakeClient, sign_up
from ..secrets_watch import remember

SECRET = "oidc-client-secret-for-the-tests"
remember(SECRET)


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    users = [User(sub="ada", claims={"email": "ada@example.com", "name": "Ada Lovelace"})]
    with run_server_in_thread(require_nonce=True, user_claims=users) as server:
        yield f"http://localhost:{server.server_port}"


async def _sso_client(make_client: MakeClient, issuer: str, **settings: Any) -> TestClient:
    return await make_client(oidc_issuer=issuer, oidc_client_id="gima-test", oidc_client_secret=SECRET, **settings)


async def _authorize(client: TestClient, sub: str | None, next_path: str = "/") -> aiohttp.ClientResponse:
    """The browser's trip: our login route, the provider's form (as if the person chose `sub`), back to us."""
    start = await client.get("/api/auth/oidc/login", params={"next": next_path}, allow_redirects=False)
    assert start.status == 302, await start.text()
    authorize_url = start.headers["Location"]
    query = parse_qs(urlsplit(authorize_url).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"] and query["nonce"]
    form = {"sub": sub} if sub is not None else {"action": "deny"}
    async with aiohttp.ClientSession() as browser:
        granted = await browser.post(authorize_url, data=form, allow_redirects=False)
        assert granted.status == 302, await granted.text()
        back = granted.headers["Location"]
    parts = urlsplit(back)
    assert parts.path == "/api/auth/oidc/callback"
    return await client.get(f"{parts.path}?{parts.query}", allow_redirects=False)


async def test_a_provider_user_signs_in_and_gets_a_session(make_client: MakeClient, provider: str) -> None:
    client = await _sso_client(make_client, provider)
    done = await _authorize(client, "ada", "/chats?x=1")
    assert done.status == 302 and done.headers["Location"] == "/chats?x=1", await done.text()
    me = await client.get("/api/auth/me")
    assert me.status == 200, await me.text()
    user = (await me.json())["user"]
    assert user["name"] == "Ada Lovelace" and user["email"].endswith(".external.invalid")
    again = await _authorize(client, "ada")  # the same subject: the same local user
    assert again.status == 302
    assert (await (await client.get("/api/auth/me")).json())["user"]["id"] == user["id"]


async def test_a_local_account_with_the_same_email_is_never_taken_over(make_client: MakeClient, provider: str) -> None:
    client = await _sso_client(make_client, provider)
    local = await sign_up(client, "ada@example.com")
    client.session.cookie_jar.clear()
    await _authorize(client, "ada")
    signed_in = (await (await client.get("/api/auth/me")).json())["user"]
    assert signed_in["id"] != local.user["id"]  # per issuer and subject, not by the provider's email claim


async def test_a_denied_or_forged_sign_in_gets_no_session(make_client: MakeClient, provider: str) -> None:
    client = await _sso_client(make_client, provider)
    denied = await _authorize(client, None)
    assert denied.status == 401 and "access_denied" in (await denied.json())["error"]["message"]
    assert (await (await client.get("/api/auth/me")).json())["user"] is None
    # A callback nobody started here (a link an attacker sends): refused, no session.
    forged = await client.get("/api/auth/oidc/callback", params={"code": "x", "state": "y"}, allow_redirects=False)
    assert forged.status == 400 and (await (await client.get("/api/auth/me")).json())["user"] is None
    # A started sign-in whose state was swapped: refused.
    start = await client.get("/api/auth/oidc/login", allow_redirects=False)
    assert start.status == 302
    swapped = await client.get("/api/auth/oidc/callback", params={"code": "x", "state": "other"}, allow_redirects=False)
    assert swapped.status == 400 and (await (await client.get("/api/auth/me")).json())["user"] is None


async def test_a_spent_code_cannot_sign_in_twice(make_client: MakeClient, provider: str) -> None:
    client = await _sso_client(make_client, provider)
    start = await client.get("/api/auth/oidc/login", allow_redirects=False)
    async with aiohttp.ClientSession() as browser:
        granted = await browser.post(start.headers["Location"], data={"sub": "ada"}, allow_redirects=False)
    back = urlsplit(granted.headers["Location"])
    first = await client.get(f"{back.path}?{back.query}", allow_redirects=False)
    assert first.status == 302
    client.session.cookie_jar.clear()
    replay = await client.get(f"{back.path}?{back.query}", allow_redirects=False)
    assert replay.status == 400  # the flow's state is gone with the first use


async def test_next_never_leaves_the_site(make_client: MakeClient, provider: str) -> None:
    client = await _sso_client(make_client, provider)
    for hostile in ("https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)"):
        done = await _authorize(client, "ada", hostile)
        assert done.headers["Location"] == "/", hostile


async def test_without_settings_the_routes_do_not_exist(make_client: MakeClient) -> None:
    client = await make_client()
    assert (await client.get("/api/auth/oidc/login", allow_redirects=False)).status == 404
    assert (await client.get("/api/auth/oidc/callback", allow_redirects=False)).status == 404
    assert client.app.get(__import__("gima_server.auth.oidc", fromlist=["OIDC_PROVIDER"]).OIDC_PROVIDER) is None
    assert appkeys.SETTINGS in client.app
