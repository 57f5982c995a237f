"""One active reply per session: cancel-previous, the cancel endpoint, double-send coalescing, disconnects."""

from __future__ import annotations

import asyncio

from gima_server import appkeys

from ..conftest import MakeClient, log_in, sign_up
from ..sse import parse_sse, read_until

SLOW = {"demo_tokens_per_s": 400, "demo_reply_words": 400}


def _deltas(events: list) -> str:
    return "".join(e.data["text"] for e in events if e.name == "delta")


async def test_new_message_supersedes_the_running_reply(make_client: MakeClient) -> None:
    client = await make_client(**SLOW)
    alice = await sign_up(client, "alice@example.com")
    first = await client.post("/api/chat/stream", json={"content": "Write about rivers"}, headers=alice.headers)
    seen = await read_until(first, lambda ev: sum(e.name == "delta" for e in ev) >= 5)
    first_id, chat_id = seen[0].data["messageId"], seen[0].data["chatId"]
    second = asyncio.create_task(alice.stream("Now about mountains", chatId=chat_id))
    rest, _ = parse_sse(await first.read())
    first_events = seen + rest
    assert first_events[-1].name == "error" and first_events[-1].data["code"] == "superseded"
    registry = client.app[appkeys.REGISTRY]
    assert registry.find(alice.user["id"], first_id).finished
    assert registry.live_count == 1
    second_events, _ = await second
    assert second_events[-1].name == "done"
    messages = await alice.messages(chat_id)
    stored_first = next(m for m in messages if m["id"] == first_id)
    assert stored_first["status"] == "cancelled" and stored_first["finishReason"] == "superseded"
    assert stored_first["content"] == _deltas(first_events) and stored_first["content"]
    assert [m["status"] for m in messages if m["role"] == "assistant"] == ["cancelled", "complete"]


async def test_replies_of_different_sessions_run_side_by_side(make_client: MakeClient) -> None:
    client = await make_client(**SLOW)
    alice = await sign_up(client, "alice@example.com")
    other_tab = await log_in(client, "alice@example.com")
    one, two = await asyncio.gather(alice.stream("first session topic"), other_tab.stream("second session topic"))
    assert one[0][-1].name == "done" and two[0][-1].name == "done"


async def test_cancel_endpoint_ends_the_reply_and_keeps_partial_text(make_client: MakeClient) -> None:
    client = await make_client(**SLOW)
    alice = await sign_up(client, "alice@example.com")
    resp = await client.post("/api/chat/stream", json={"content": "Cancel me soon"}, headers=alice.headers)
    seen = await read_until(resp, lambda ev: sum(e.name == "delta" for e in ev) >= 3)
    message_id = seen[0].data["messageId"]
    cancel = await client.post(f"/api/chat/streams/{message_id}/cancel", headers=alice.headers)
    assert cancel.status == 202
    rest, _ = parse_sse(await resp.read())
    events = seen + rest
    assert events[-1].name == "error" and events[-1].data["code"] == "cancelled"
    stored = (await alice.messages(seen[0].data["chatId"]))[-1]
    assert stored["status"] == "cancelled" and stored["content"] == _deltas(events)


async def test_double_send_within_the_window_gets_the_first_reply(make_client: MakeClient) -> None:
    client = await make_client(**SLOW)
    alice = await sign_up(client, "alice@example.com")
    (one, _), (two, _) = await asyncio.gather(alice.stream("Same words twice"), alice.stream("Same words twice"))
    assert one[0].data["messageId"] == two[0].data["messageId"]
    assert [e.data for e in one] == [e.data for e in two] and one[-1].name == "done"
    messages = await alice.messages(one[0].data["chatId"])
    assert [m["role"] for m in messages] == ["user", "assistant"]


async def test_same_content_after_the_window_is_a_new_reply(make_client: MakeClient) -> None:
    client = await make_client(coalesce_window_ms=50, **SLOW)
    alice = await sign_up(client, "alice@example.com")
    first = await client.post("/api/chat/stream", json={"content": "Say it again"}, headers=alice.headers)
    seen = await read_until(first, lambda ev: len(ev) >= 2)
    await asyncio.sleep(0.1)
    second, _ = await alice.stream("Say it again", chatId=seen[0].data["chatId"])
    assert second[0].data["messageId"] != seen[0].data["messageId"]
    rest, _ = parse_sse(await first.read())
    assert rest[-1].data["code"] == "superseded"


async def test_client_disconnect_does_not_stop_the_reply_and_resume_sees_all(make_client: MakeClient) -> None:
    client = await make_client(demo_tokens_per_s=300, demo_reply_words=200)
    alice = await sign_up(client, "alice@example.com")
    resp = await client.post("/api/chat/stream", json={"content": "Survive my disconnect"}, headers=alice.headers)
    seen = await read_until(resp, lambda ev: sum(e.name == "delta" for e in ev) >= 4)
    resp.close()  # the browser goes away mid-reply
    message_id = seen[0].data["messageId"]
    status, rest = await alice.resume(message_id, seen[-1].id)
    assert status == 200
    events = seen + rest
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[-1].name == "done" and events[-1].data["content"] == _deltas(events)
    stored = (await alice.messages(seen[0].data["chatId"]))[-1]
    assert stored["status"] == "complete" and stored["content"] == events[-1].data["content"]


async def test_many_subscribers_read_the_same_live_reply(make_client: MakeClient) -> None:
    client = await make_client(**SLOW)
    alice = await sign_up(client, "alice@example.com")
    resp = await client.post("/api/chat/stream", json={"content": "Fan out to tabs"}, headers=alice.headers)
    seen = await read_until(resp, lambda ev: len(ev) >= 3)
    message_id = seen[0].data["messageId"]
    results = await asyncio.gather(*(alice.resume(message_id, k) for k in (0, 1, 2)))
    full = seen + parse_sse(await resp.read())[0]
    for k, (status, events) in zip((0, 1, 2), results, strict=True):
        assert status == 200 and [e.data for e in events] == [e.data for e in full[k:]]


async def test_a_reply_superseded_before_it_started_keeps_the_user_message(make_client: MakeClient) -> None:
    client = await make_client(**SLOW)
    alice = await sign_up(client, "alice@example.com")
    first = await client.post("/api/chat/stream", json={"content": "first"}, headers=alice.headers)
    seen = await read_until(first, lambda ev: sum(e.name == "delta" for e in ev) >= 2)
    chat_id = seen[0].data["chatId"]
    # Two more in a row: the second is superseded by the third while it still waits for the first to let go.
    second = asyncio.create_task(alice.stream("second", chatId=chat_id))
    registry = client.app[appkeys.REGISTRY]
    while len(registry._replies) < 2:  # noqa: ASYNC110 - wait until the server registered the second
        await asyncio.sleep(0.001)
    third, _ = await alice.stream("third", chatId=chat_id)
    second_events, _ = await second
    assert second_events[-1].name == "error" and second_events[-1].data["code"] == "superseded"
    assert third[-1].name == "done"
    messages = await alice.messages(chat_id)
    assert [m["content"] for m in messages if m["role"] == "user"] == ["first", "second", "third"]
    assert [m["status"] for m in messages if m["role"] == "assistant"] == ["cancelled", "cancelled", "complete"]
