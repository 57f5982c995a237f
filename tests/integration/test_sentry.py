"""Sentry (SENTRY_DSN) against a local receiver that keeps every envelope the SDK sends: a reply ending
internal_error is reported with its trace id and model, the error behind it with its traceback, and no envelope
carries a token, cookie, password, API key or the user's text."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import pytest
import sentry_sdk
from aiohttp import web

import gima_server.observability.sentry as reporting
from gima_server.agents.base import AgentEvent, AgentRequest

from ..conftest import MakeClient, same_origin, sign_up

PASSWORD = "correct horse battery staple 77"
PRIVATE_TEXT = "my private diary entry about the harbour"


class BrokenAgent:
    """Fails after its first token, as a buggy agent would."""

    async def stream(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        yield AgentEvent("delta", {"agent": "assistant", "text": "Sure, "})
        raise RuntimeError("the agent's parser broke")

    def breakers(self) -> dict[str, str]:
        return {}

    async def close(self) -> None:
        return None


@pytest.fixture
async def envelopes(aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[bytes]]:
    received: list[bytes] = []

    async def envelope(request: web.Request) -> web.Response:
        received.append(await request.read())  # aiohttp undoes the SDK's Content-Encoding (gzip)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/api/{project}/envelope/", envelope)
    server = await aiohttp_server(app)
    monkeypatch.setenv("SENTRY_DSN", f"http://publickey@127.0.0.1:{server.port}/42")
    monkeypatch.setenv("SENTRY_ENVIRONMENT", "test")
    yield received
    sentry_sdk.get_client().close(timeout=2)
    sentry_sdk.init()  # no DSN: reporting off for the tests after this one
    reporting._enabled = False


async def test_a_failed_reply_is_reported_with_its_trace_and_nothing_private(
    make_client: MakeClient, envelopes: list[bytes],
) -> None:
    client = await make_client(agent=BrokenAgent())
    alice = await sign_up(client, "alice@example.com", PASSWORD)
    resp = await client.post("/api/chat/stream", json={"content": PRIVATE_TEXT},
                             headers={**alice.headers, **same_origin(client), "X-Api-Key": "gima_sk_notreallyakey123",
                                      "Cookie": "gima_session=s3cr3t-cookie-value"})
    body = await resp.text()
    assert "internal_error" in body
    trace_id = resp.headers["X-Trace-Id"]
    await asyncio.to_thread(sentry_sdk.flush, 5)  # the SDK sends from its own thread; the receiver runs here

    everything = b"\n".join(envelopes)
    assert b"reply ended internal_error" in everything  # the reply's end, as its own event
    assert b"the agent's parser broke" in everything and b"RuntimeError" in everything  # the error, with traceback
    assert trace_id.encode() in everything and b'"model":"gima-demo"' in everything.replace(b" ", b"")
    assert b'"Authorization":"[Filtered]"' in everything.replace(b" ", b"")  # the request is there, scrubbed
    for private in (alice.token, PASSWORD, PRIVATE_TEXT, "s3cr3t-cookie-value", "gima_sk_notreallyakey123",
                    "Bearer ", "alice@example.com"):
        assert private.encode() not in everything, private
