"""A follow-up sent into a chat whose first message is not yet in the store (found by tests/integration/
test_turnover.py in CI: a message that superseded a new chat's first reply met 404 "chat not found").

A new chat's first exchange is written while the reply streams (the first token does not wait for the disk), so
the chat id the client reads in `meta` can name a chat the store has not committed yet. A message sent into it
then — Stop and send again, or a second message that cancels the first — must be accepted, not refused."""

from __future__ import annotations

import time

from gima_server import appkeys

from ..conftest import MakeClient, sign_up
from ..sse import read_until


async def test_a_message_into_a_chat_still_being_written_is_accepted(make_client: MakeClient) -> None:
    client = await make_client(demo_tokens_per_s=20, demo_reply_words=40, rate_limits="off")
    alice = await sign_up(client, "alice@example.com")
    store = client.app[appkeys.STORE]._inner  # type: ignore[attr-defined]
    # The store's writer is busy for a moment (a slow disk): the new chat's first exchange waits behind it.
    store._executor.submit(time.sleep, 1.0)
    first = await client.post("/api/chat/stream", json={"content": "first thought"}, headers=alice.headers)
    assert first.status == 200
    meta = (await read_until(first, lambda ev: len(ev) >= 1))[0]
    chat_id = meta.data["chatId"]
    assert await store.get_chat(alice.user["id"], chat_id) is None  # not written yet

    events, _ = await alice.stream("second thought", chatId=chat_id)
    assert events[-1].name == "done", events[-1].data
    assert events[0].data["chatId"] == chat_id
    messages = await store.list_messages(alice.user["id"], chat_id)
    assert [m.content for m in messages if m.role == "user"] == ["first thought", "second thought"]


async def test_a_chat_of_someone_else_still_being_written_is_not_found(make_client: MakeClient) -> None:
    client = await make_client(demo_tokens_per_s=20, demo_reply_words=40, rate_limits="off")
    alice = await sign_up(client, "alice@example.com")
    bob = await sign_up(client, "bob@example.com")
    store = client.app[appkeys.STORE]._inner  # type: ignore[attr-defined]
    store._executor.submit(time.sleep, 1.0)
    first = await client.post("/api/chat/stream", json={"content": "first thought"}, headers=alice.headers)
    chat_id = (await read_until(first, lambda ev: len(ev) >= 1))[0].data["chatId"]
    resp = await client.post("/api/chat/stream", json={"content": "mine now", "chatId": chat_id},
                             headers=bob.headers)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
