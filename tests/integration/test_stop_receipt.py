"""Stopping a reply says what it cost: whether the upstream call was closed, and the tokens used so far."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from gima_server.agents.base import AgentEvent, AgentRequest, agent_phase, delta

from ..conftest import MakeClient, quick_user
from ..sse import parse_sse, read_until
from ..upstream_fakes import FakeUpstream


async def _cancel_after_deltas(client: Any, headers: dict[str, str], n: int) -> tuple[list[Any], dict[str, Any]]:
    resp = await client.post("/api/chat/stream", json={"content": "tell me a long story"}, headers=headers)
    seen = await read_until(resp, lambda events: sum(e.name == "delta" for e in events) >= n)
    message_id = seen[0].data["messageId"]
    assert (await client.post(f"/api/chat/streams/{message_id}/cancel", headers=headers)).status == 202
    rest, _ = parse_sse(await resp.read())
    return seen + rest, seen[0].data


async def test_a_cancelled_reply_carries_its_receipt_in_the_last_event_and_the_stored_message(
    make_client: MakeClient,
) -> None:
    client = await make_client(demo_tokens_per_s=50, demo_reply_words=400)
    alice = await quick_user(client, "alice@example.com")
    events, meta = await _cancel_after_deltas(client, alice.headers, 3)
    final = events[-1]
    assert final.name == "error" and final.data["code"] == "cancelled"
    deltas = sum(e.name == "delta" for e in events)
    assert final.data["upstreamClosed"] is True
    assert final.data["usage"] == {"inputTokens": 5, "outputTokens": deltas, "estimated": True}  # 20 characters: 5 tokens
    stored = (await alice.messages(meta["chatId"]))[-1]
    assert stored["status"] == "cancelled" and stored["upstreamClosed"] is True and stored["usage"] == final.data["usage"]
    status, replay = await alice.resume(meta["messageId"])  # the receipt is part of the reply's story
    assert status == 200 and replay[-1].data["upstreamClosed"] is True


async def test_a_superseded_reply_has_a_receipt_too_and_a_completed_one_reports_usage(make_client: MakeClient) -> None:
    client = await make_client(demo_tokens_per_s=100, demo_reply_words=40)
    alice = await quick_user(client, "alice@example.com")
    first = await client.post("/api/chat/stream", json={"content": "first"}, headers=alice.headers)
    await read_until(first, lambda events: any(e.name == "delta" for e in events))
    second = await client.post("/api/chat/stream", json={"content": "second"}, headers=alice.headers)
    rest, _ = parse_sse(await first.read())
    assert rest[-1].data["code"] == "superseded" and rest[-1].data["upstreamClosed"] is True
    done, _ = parse_sse(await second.read())
    deltas = sum(e.name == "delta" for e in done)
    assert done[-1].name == "done" and done[-1].data["usage"]["outputTokens"] == deltas
    assert "upstreamClosed" not in done[-1].data  # nothing was stopped


async def test_the_upstream_sees_the_hang_up_and_the_receipt_says_so(make_client: MakeClient, aiohttp_server: Any) -> None:
    fake = FakeUpstream("openai")
    fake.faults.token_delay_s = 0.1
    server = await aiohttp_server(fake.app)
    client = await make_client(agent="openai", openai_base_url=f"http://127.0.0.1:{server.port}/v1",
                               openai_api_key="test-key")
    alice = await quick_user(client, "alice@example.com")
    events, _ = await _cancel_after_deltas(client, alice.headers, 2)
    assert events[-1].data["upstreamClosed"] is True and events[-1].data["usage"]["estimated"] is True
    for _ in range(100):
        if fake.disconnects:
            break
        await asyncio.sleep(0.02)
    assert fake.disconnects == 1  # what the receipt claims: the upstream call was closed


class StubbornAgent:
    """An agent whose stream will not close: it keeps yielding when told to stop (a broken upstream client)."""

    async def stream(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        yield agent_phase("assistant", "start")
        try:
            while True:
                yield delta("assistant", "more ")
                await asyncio.sleep(0.02)
        finally:
            while True:  # told to close, it yields again: aclose() raises RuntimeError, the call may still run
                try:
                    yield delta("assistant", "refusing to stop")
                except GeneratorExit:
                    pass

    def breakers(self) -> dict[str, str]:
        return {}

    async def close(self) -> None:
        return None


async def test_a_stream_that_cannot_be_closed_reports_upstream_closed_false(make_client: MakeClient) -> None:
    client = await make_client(agent=StubbornAgent())
    alice = await quick_user(client, "alice@example.com")
    events, meta = await _cancel_after_deltas(client, alice.headers, 2)
    assert events[-1].data["code"] == "cancelled" and events[-1].data["upstreamClosed"] is False
    stored = (await alice.messages(meta["chatId"]))[-1]
    assert stored["upstreamClosed"] is False
