"""A follow-up sent into a chat whose first message is not yet in the store (found by tests/integration/
test_turnover.py in CI: a message that superseded a new chat's first reply met 404 "chat not found").

A new chat's first exchange is written while the reply streams (the first token does not wait for the disk), so
the chat id the client reads in `meta` can name a chat the store has not committed yet. A message sent into it
then — Stop and send again, or a second message that cancels the first — must be accepted, not refused."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from gima_server import appkeys

from ..conftest import MakeClient, same_user_on, sign_up
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


async def test_a_message_into_a_chat_another_process_is_still_writing_is_accepted(
    make_client: MakeClient, redis_url: str,
) -> None:
    """No sticky sessions: the follow-up reaches a second process (one store, one Redis) while the first is still
    writing the new chat's first exchange. It was 404 there ("chat not found"), though the chat was a moment old."""
    one = await make_client(redis_url=redis_url, demo_tokens_per_s=20, demo_reply_words=40, rate_limits="off")
    two = await make_client(redis_url=redis_url, demo_tokens_per_s=20, demo_reply_words=40, rate_limits="off")
    alice = await sign_up(one, "alice@example.com")
    alice_two = await same_user_on(two, alice)
    store = one.app[appkeys.STORE]._inner  # type: ignore[attr-defined]
    store._executor.submit(time.sleep, 1.0)  # the first process's writer is busy for a moment (a slow disk)
    first = await one.post("/api/chat/stream", json={"content": "first thought"}, headers=alice.headers)
    assert first.status == 200
    chat_id = (await read_until(first, lambda ev: len(ev) >= 1))[0].data["chatId"]
    assert await two.app[appkeys.STORE].get_chat(alice.user["id"], chat_id) is None  # not written yet

    events, _ = await alice_two.stream("second thought", chatId=chat_id)
    assert events[-1].name == "done", events[-1].data
    assert events[0].data["chatId"] == chat_id
    await first.read()  # the first reply ends (superseded or done) before the chat is read back
    messages = await two.app[appkeys.STORE].list_messages(alice.user["id"], chat_id)
    assert [m.content for m in messages if m.role == "user"] == ["first thought", "second thought"]


async def test_a_chat_id_no_process_made_is_not_found_on_another_process(
    make_client: MakeClient, redis_url: str,
) -> None:
    """Only a chat made moments ago is waited for: an id from long ago or never made, or a chat of someone else
    being written on the other process, is still 404 (and nothing is written)."""
    one = await make_client(redis_url=redis_url, demo_tokens_per_s=20, demo_reply_words=40, rate_limits="off")
    two = await make_client(redis_url=redis_url, demo_tokens_per_s=20, demo_reply_words=40, rate_limits="off")
    alice = await sign_up(one, "alice@example.com")
    bob = await sign_up(two, "bob@example.com")
    one.app[appkeys.STORE]._inner._executor.submit(time.sleep, 1.0)  # type: ignore[attr-defined]
    first = await one.post("/api/chat/stream", json={"content": "first thought"}, headers=alice.headers)
    chat_id = (await read_until(first, lambda ev: len(ev) >= 1))[0].data["chatId"]
    for other_id in ("0123456789abcdef0123456789abcdef", "made-up-chat", chat_id):
        resp = await two.post("/api/chat/stream", json={"content": "mine now", "chatId": other_id},
                              headers=bob.headers)
        assert resp.status == 404, other_id
        assert (await resp.json())["error"]["code"] == "not_found"
    await asyncio.sleep(0.1)
    assert [chat["id"] for chat in (await (await two.get("/api/chats", headers=bob.headers)).json())["chats"]] == []


async def _new_chat_while_the_writer_is_busy(client: Any, api: Any, busy: Any = None) -> tuple[Any, str]:
    """A new chat whose first exchange waits behind a busy store writer (a slow disk: a second, or until `busy`
    is set): (its stream, its id)."""
    client.app[appkeys.STORE]._inner._executor.submit(time.sleep, 1.0) if busy is None else (
        client.app[appkeys.STORE]._inner._executor.submit(busy.wait, 30))
    first = await client.post("/api/chat/stream", json={"content": "first thought"}, headers=api.headers)
    assert first.status == 200
    chat_id = (await read_until(first, lambda ev: len(ev) >= 1))[0].data["chatId"]
    assert await client.app[appkeys.STORE].get_chat(api.user["id"], chat_id) is None  # not written yet
    return first, chat_id


async def test_a_new_chats_messages_read_at_once_are_found(make_client: MakeClient) -> None:
    """The page reads a chat's messages as soon as `meta` names it (a reload, a second tab): not 404."""
    client = await make_client(demo_tokens_per_s=20, demo_reply_words=40, rate_limits="off")
    alice = await sign_up(client, "alice@example.com")
    _, chat_id = await _new_chat_while_the_writer_is_busy(client, alice)
    resp = await client.get(f"/api/chats/{chat_id}/messages", headers=alice.headers)
    assert resp.status == 200, await resp.text()
    messages = (await resp.json())["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == ["first thought"]


async def test_a_new_chat_renamed_at_once_keeps_its_new_title(make_client: MakeClient) -> None:
    client = await make_client(demo_tokens_per_s=20, demo_reply_words=40, rate_limits="off")
    alice = await sign_up(client, "alice@example.com")
    _, chat_id = await _new_chat_while_the_writer_is_busy(client, alice)
    resp = await client.patch(f"/api/chats/{chat_id}", json={"title": "Renamed"}, headers=alice.headers)
    assert resp.status == 200, await resp.text()
    chats = (await (await client.get("/api/chats", headers=alice.headers)).json())["chats"]
    assert [(c["id"], c["title"]) for c in chats] == [(chat_id, "Renamed")]


async def test_a_new_chat_deleted_at_once_stays_deleted(make_client: MakeClient) -> None:
    """Deleted while its first exchange is still on its way to the store: 204, its reply stops, and the chat does
    not come back when the write lands."""
    client = await make_client(demo_tokens_per_s=20, demo_reply_words=40, rate_limits="off")
    alice = await sign_up(client, "alice@example.com")
    first, chat_id = await _new_chat_while_the_writer_is_busy(client, alice)
    resp = await client.delete(f"/api/chats/{chat_id}", headers=alice.headers)
    assert resp.status == 204, await resp.text()
    await first.read()  # the reply has ended (cancelled) and written what it writes
    await client.app[appkeys.REGISTRY].wait_idle()
    assert (await (await client.get("/api/chats", headers=alice.headers)).json())["chats"] == []
    assert (await client.get(f"/api/chats/{chat_id}/messages", headers=alice.headers)).status == 404


async def test_a_new_chat_of_someone_else_is_still_not_found_at_once(make_client: MakeClient) -> None:
    client = await make_client(demo_tokens_per_s=20, demo_reply_words=40, rate_limits="off")
    alice = await sign_up(client, "alice@example.com")
    bob = await sign_up(client, "bob@example.com")
    writer_free = threading.Event()
    _, chat_id = await _new_chat_while_the_writer_is_busy(client, alice, writer_free)
    try:
        for resp in (await client.get(f"/api/chats/{chat_id}/messages", headers=bob.headers),
                     await client.patch(f"/api/chats/{chat_id}", json={"title": "mine"}, headers=bob.headers),
                     await client.delete(f"/api/chats/{chat_id}", headers=bob.headers)):
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "not_found"
        # Answered while alice's first exchange still waited for the writer: nobody waited for her write.
        assert await client.app[appkeys.STORE].get_chat(alice.user["id"], chat_id) is None
    finally:
        writer_free.set()


async def test_a_new_chats_messages_read_on_another_process_are_found(make_client: MakeClient, redis_url: str) -> None:
    """No sticky sessions: the page's next read of a chat made moments ago lands on the other process."""
    one = await make_client(redis_url=redis_url, demo_tokens_per_s=20, demo_reply_words=40, rate_limits="off")
    two = await make_client(redis_url=redis_url, demo_tokens_per_s=20, demo_reply_words=40, rate_limits="off")
    alice = await sign_up(one, "alice@example.com")
    alice_two = await same_user_on(two, alice)
    _, chat_id = await _new_chat_while_the_writer_is_busy(one, alice)
    resp = await two.get(f"/api/chats/{chat_id}/messages", headers=alice_two.headers)
    assert resp.status == 200, await resp.text()
    messages = (await resp.json())["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == ["first thought"]


async def test_a_new_chat_deleted_after_its_reply_is_not_found_at_once(make_client: MakeClient) -> None:
    """Deleted once its first exchange was stored: a request naming it again is a 404 at once, not after polling the
    store for the 5 s a chat made moments ago on another process is waited for (one store lookup a request)."""
    client = await make_client(demo_reply_words=5, rate_limits="off")
    alice = await sign_up(client, "alice@example.com")
    first = await client.post("/api/chat/stream", json={"content": "first thought"}, headers=alice.headers)
    events = await read_until(first, lambda ev: bool(ev) and ev[-1].name == "done")
    chat_id = events[0].data["chatId"]
    await client.app[appkeys.REGISTRY].wait_idle()
    assert (await client.delete(f"/api/chats/{chat_id}", headers=alice.headers)).status == 204
    store = client.app[appkeys.STORE]
    lookups: list[str] = []
    get_chat = store.get_chat

    async def counted(user_id: str, asked: str) -> Any:
        lookups.append(asked)
        return await get_chat(user_id, asked)

    store.get_chat = counted
    for resp in (await client.get(f"/api/chats/{chat_id}/messages", headers=alice.headers),
                 await client.patch(f"/api/chats/{chat_id}", json={"title": "again"}, headers=alice.headers),
                 await client.delete(f"/api/chats/{chat_id}", headers=alice.headers)):
        assert resp.status == 404
    assert lookups == [chat_id] * 3
