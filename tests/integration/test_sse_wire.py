"""What goes over the wire: heartbeats, batched writes, and a lone event without delay."""

from __future__ import annotations

import pytest

from gima_server.streams.sse import BatchingEventSourceResponse

from ..conftest import MakeClient, sign_up
from ..sse import parse_sse


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    seen: list[bytes] = []
    original = BatchingEventSourceResponse.send_frames

    async def counting(self: BatchingEventSourceResponse, frames: bytes) -> None:
        seen.append(frames)
        await original(self, frames)

    monkeypatch.setattr(BatchingEventSourceResponse, "send_frames", counting)
    return seen


async def test_heartbeat_comments_while_the_reply_is_quiet(make_client: MakeClient) -> None:
    client = await make_client(heartbeat_s=0.1, demo_first_token_ms=450, demo_reply_words=5)
    alice = await sign_up(client, "alice@example.com")
    resp = await client.post("/api/chat/stream", json={"content": "wait for it"}, headers=alice.headers)
    events, extras = parse_sse(await resp.read())
    assert extras.count(": ping") >= 3 and events[-1].name == "done"


async def test_waiting_events_go_out_in_one_write_each_with_its_id(make_client: MakeClient, writes: list[bytes]) -> None:
    client = await make_client(demo_reply_words=2000)
    alice = await sign_up(client, "alice@example.com")
    events, _ = await alice.stream("a reply that outpaces the network")
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert len(writes) < len(events) / 3  # many events per write when the reply runs ahead
    assert b"".join(writes).count(b"\nid: ") + 1 >= len(events)


async def test_a_lone_event_goes_out_at_once(make_client: MakeClient, writes: list[bytes]) -> None:
    client = await make_client(demo_tokens_per_s=20, demo_reply_words=6)
    alice = await sign_up(client, "alice@example.com")
    events, _ = await alice.stream("slow and steady")
    # Tokens 50 ms apart: the writer does not wait to gather a batch, so nearly every write is one event.
    single = sum(frames.count(b"\nid: ") + frames.startswith(b"id: ") == 1 for frames in writes)
    assert sum(e.name == "delta" for e in events) >= 10 and single >= 0.8 * len(writes)
