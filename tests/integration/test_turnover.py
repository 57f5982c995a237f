"""Replies ending and starting all the time (issue 26): under turnover with cancel-previous and resumes, every
client still sees every event once, in order, with one end, and the store holds what was streamed.

The benches measure how fast this is; this test only asserts what must hold while it happens."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from aiohttp.test_utils import TestClient

from gima_server import appkeys

from ..conftest import Api, MakeClient, quick_user
from ..sse import SseEvent, parse_sse, read_until

USERS = 12
TURNS = 8


def _deltas(events: list[SseEvent]) -> str:
    return "".join(e.data["text"] for e in events if e.name == "delta")


def _check_log(events: list[SseEvent], how: str) -> None:
    """ids 1..n with no gap and no repeat, one terminal event, and it is the last."""
    ids = [e.id for e in events if e.id is not None]
    assert ids == list(range(1, len(ids) + 1)), f"{how}: ids {ids[:5]}..{ids[-5:]}"
    ends = [e for e in events if e.name in ("done", "error")]
    assert len(ends) == 1 and events[-1] is ends[0], f"{how}: ends {[e.name for e in ends]}"


async def _read_to_end(api: Api, resp: Any) -> list[SseEvent]:
    assert resp.status == 200, await resp.text()
    events, _ = parse_sse(await resp.read())
    return events


async def _whole(api: Api, chat_id: str | None) -> tuple[str, list[SseEvent]]:
    events, _ = await api.stream("tell me about lakes", chatId=chat_id)
    _check_log(events, "whole")
    assert events[-1].name == "done"
    assert events[-1].data["content"] == _deltas(events)
    return events[0].data["messageId"], events


async def _superseded(client: TestClient, api: Api, chat_id: str | None) -> list[tuple[str, list[SseEvent]]]:
    """Send, read a little, send again in the same session: the first ends superseded, the second runs."""
    first = await client.post("/api/chat/stream", json={"content": "first thought", "chatId": chat_id},
                              headers=api.headers)
    assert first.status == 200
    seen = await read_until(first, lambda ev: sum(e.name == "delta" for e in ev) >= 2 or ev and ev[-1].name == "done")
    chat_id = seen[0].data["chatId"]
    second = asyncio.create_task(api.stream("second thought", chatId=chat_id))
    first_events = seen + parse_sse(await first.read())[0]
    _check_log(first_events, "superseded")
    # The first may have finished before the second arrived; otherwise the second cancelled it.
    assert first_events[-1].name == "done" or first_events[-1].data["code"] == "superseded"
    second_events, _ = await second
    _check_log(second_events, "superseding")
    assert second_events[-1].name == "done"
    return [(first_events[0].data["messageId"], first_events), (second_events[0].data["messageId"], second_events)]


async def _resumed(client: TestClient, api: Api, chat_id: str | None, rng: random.Random) -> tuple[str, list[SseEvent]]:
    """Read part of a reply, drop the connection, resume with Last-Event-ID (maybe twice): the pieces join up."""
    resp = await client.post("/api/chat/stream", json={"content": "a long answer please", "chatId": chat_id},
                             headers=api.headers)
    assert resp.status == 200
    cut = rng.randint(1, 12)
    events = await read_until(resp, lambda ev: len(ev) >= cut or ev and ev[-1].name in ("done", "error"))
    resp.close()  # the client goes away mid-reply; the reply runs on
    message_id = events[0].data["messageId"]
    for _ in range(2):
        if events[-1].name in ("done", "error"):
            break
        headers = {**api.headers, "Last-Event-ID": str(events[-1].id)}
        again = await client.get(f"/api/chat/streams/{message_id}/events", headers=headers)
        assert again.status == 200
        more = await read_until(again, lambda ev: len(ev) >= cut or ev and ev[-1].name in ("done", "error"))
        again.close()
        events += more
    if events[-1].name not in ("done", "error"):
        status, rest = await api.resume(message_id, events[-1].id)
        assert status == 200
        events += rest
    _check_log(events, "resumed")
    assert events[-1].name == "done"
    return message_id, events


async def _user(client: TestClient, index: int) -> list[tuple[str, str, list[SseEvent]]]:
    api = await quick_user(client, f"turnover{index}@example.com")
    rng = random.Random(index)
    chat_id: str | None = None
    streamed: list[tuple[str, str, list[SseEvent]]] = []
    for _ in range(TURNS):
        kind = rng.choice(("whole", "superseded", "resumed"))
        if kind == "whole":
            replies = [await _whole(api, chat_id)]
        elif kind == "superseded":
            replies = await _superseded(client, api, chat_id)
        else:
            replies = [await _resumed(client, api, chat_id, rng)]
        for message_id, events in replies:
            chat_id = events[0].data["chatId"]
            streamed.append((chat_id, message_id, events))
    return streamed


async def test_turnover_with_cancel_previous_and_resumes_keeps_every_event_once(make_client: MakeClient) -> None:
    client = await make_client(demo_tokens_per_s=800, demo_reply_words=40, rate_limits="off")  # turnover, not limits
    results = await asyncio.gather(*(_user(client, i) for i in range(USERS)))
    store, registry = client.app[appkeys.STORE], client.app[appkeys.REGISTRY]
    streamed = [reply for user in results for reply in user]
    assert len(streamed) >= USERS * TURNS
    kinds = {events[-1].name if events[-1].name == "done" else events[-1].data["code"] for _, _, events in streamed}
    assert kinds >= {"done", "superseded"}, kinds  # the mix really happened
    for user_index, user in enumerate(results):
        user_id = (await store.get_user_by_email(f"turnover{user_index}@example.com")).id
        by_id = {m.id: m for chat_id in {c for c, _, _ in user} for m in await store.list_messages(user_id, chat_id)}
        for _, message_id, events in user:
            stored = by_id[message_id]
            assert stored.content == _deltas(events)  # what the client saw is what was kept, nothing twice
            assert stored.status == ("complete" if events[-1].name == "done" else "cancelled")
    await asyncio.wait_for(registry.wait_idle(), 10)
    assert registry.live_count == 0
