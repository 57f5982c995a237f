"""Long chats fit the model: the history sent is the newest whole messages within the model's context budget, read
a page at a time from the store (never the whole chat), counted in `meta` and on the stored reply."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient

from gima_server.agents.tokens import message_tokens
from gima_server.context.window import INTERRUPTED_NOTE
from gima_server.ids import new_id
from gima_server.store.base import Exchange, Message
from gima_server.store.sqlite import SqliteStore

from ..conftest import Api, MakeClient, quick_user
from ..upstream_fakes import FakeUpstream
from .test_migration import alpha_user, new_job, put_batch, wait_for

BUDGET = 2_000
OUTPUT = 100  # the agent's max_tokens, kept free out of the budget


class CountingStore(SqliteStore):
    """The SQLite store, counting the message rows each way of reading a chat returns."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.rows_read = {"list_messages": 0, "recent_messages": 0}

    async def list_messages(self, user_id: str, chat_id: str) -> list[Message]:
        rows = await super().list_messages(user_id, chat_id)
        self.rows_read["list_messages"] += len(rows)
        return rows

    async def recent_messages(self, user_id: str, chat_id: str, limit: int,
                              before_id: str | None = None) -> list[Message]:
        rows = await super().recent_messages(user_id, chat_id, limit, before_id)
        self.rows_read["recent_messages"] += len(rows)
        return rows


async def _server(tmp_path: Path, make_client: MakeClient, aiohttp_server: Any,
                  **settings: Any) -> tuple[FakeUpstream, TestClient, CountingStore]:
    gpt = FakeUpstream("openai")
    server = await aiohttp_server(gpt.app)
    agents = tmp_path / "agents.toml"
    agents.write_text(f"""
[agents.small]
kind = "openai"
base_url = "http://127.0.0.1:{server.port}/v1"
model = "small-test"
context_tokens = {BUDGET}
max_tokens = {OUTPUT}
default = true
""")
    store = CountingStore(tmp_path / "counted.sqlite3")
    client = await make_client(agents_file=str(agents), store=store, **settings)
    return gpt, client, store


async def _long_chat(store: SqliteStore, user_id: str, exchanges: int) -> str:
    """A chat of 2 x exchanges stored messages, written straight to the store (the import lane has its own test)."""
    chat_id = new_id()
    start = time.time() - exchanges
    for n in range(exchanges):
        exchange = Exchange(user_id, chat_id, "Long chat" if n == 0 else None, new_id(), new_id(),
                            f"question {n}: how do streams resume after a cut?", start + n)
        await store.begin_exchange(exchange)
        await store.finish_reply(exchange.reply_message_id, f"answer {n}: from the last event id the client saw.",
                                 "complete", "stop", 3)
    return chat_id


def _sent_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(message_tokens(m["content"]) for m in messages)


async def test_a_reply_in_a_chat_of_two_thousand_turns_reads_a_bounded_page_and_sends_what_fits(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any,
) -> None:
    gpt, client, store = await _server(tmp_path, make_client, aiohttp_server)
    alice = await quick_user(client, "alice@example.com")
    chat_id = await _long_chat(store, alice.user["id"], 2_000)  # 2,000 turns: 4,000 stored messages
    store.rows_read.update(list_messages=0, recent_messages=0)

    events, _ = await alice.stream("and what if the server restarts?", chatId=chat_id)

    assert events[-1].name == "done"
    sent = gpt.requests[-1]["messages"]
    assert sent[-1] == {"role": "user", "content": "and what if the server restarts?"}
    assert sent[0]["role"] == "user" and sent[-2]["content"] == "answer 1999: from the last event id the client saw."
    assert _sent_tokens(sent) <= BUDGET - OUTPUT
    earlier = len(sent) - 1
    assert 20 < earlier < 2_000  # a real share of the budget, not the whole chat
    # The newest whole messages, in order, with nothing skipped between them.
    oldest = int(sent[0]["content"].split(":")[0].split()[1])
    expected = [c for n in range(oldest, 2_000) for c in (f"question {n}", f"answer {n}")]
    assert [m["content"].split(":")[0] for m in sent[:-1]] == expected
    assert store.rows_read["list_messages"] == 0
    assert store.rows_read["recent_messages"] <= earlier * 1.3 + 8  # what fitted, and a little more
    meta = events[0]
    assert meta.name == "meta" and meta.data["contextMessages"] == earlier
    stored = await alice.messages(chat_id)
    assert stored[-1]["contextMessages"] == earlier and stored[-1]["status"] == "complete"
    assert len(stored) == 4_002


async def test_a_cancelled_reply_goes_with_its_partial_text_marked_and_an_empty_one_is_left_out(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any,
) -> None:
    gpt, client, store = await _server(tmp_path, make_client, aiohttp_server)
    alice = await quick_user(client, "alice@example.com")
    chat_id = new_id()
    cut = Exchange(alice.user["id"], chat_id, "Cut short", new_id(), new_id(), "tell me a long story", time.time() - 9)
    await store.begin_exchange(cut)
    await store.finish_reply(cut.reply_message_id, "Once upon a time", "cancelled", "cancelled", 5)
    failed = Exchange(alice.user["id"], chat_id, None, new_id(), new_id(), "are you there?", time.time() - 5)
    await store.begin_exchange(failed)
    await store.finish_reply(failed.reply_message_id, "", "error", "upstream_unavailable", 2)

    events, _ = await alice.stream("go on", chatId=chat_id)

    assert events[-1].name == "done"
    assert gpt.requests[-1]["messages"] == [
        {"role": "user", "content": "tell me a long story"},
        {"role": "assistant", "content": f"Once upon a time\n\n{INTERRUPTED_NOTE}"},
        {"role": "user", "content": "are you there?\n\ngo on"},  # the upstream merges neighbours of one role
    ]
    assert events[0].data["contextMessages"] == 3  # the failed reply without text did not go


async def test_a_message_that_alone_exceeds_the_budget_is_refused_and_changes_nothing(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any,
) -> None:
    gpt, client, store = await _server(tmp_path, make_client, aiohttp_server)
    alice = await quick_user(client, "alice@example.com")
    events, _ = await alice.stream("a first message")
    chat_id = events[0].data["chatId"]
    asked = len(gpt.requests)
    huge = "streaming " * 2_500  # about 2,500 tokens: more than the whole window

    resp = await client.post("/api/chat/stream", json={"content": huge, "chatId": chat_id}, headers=alice.headers)
    body = await resp.json()
    assert resp.status == 400 and body["error"]["code"] == "payload_too_large"
    assert "2,000" in body["error"]["message"]  # names the budget it did not fit
    resp = await client.post("/api/chat/stream", json={"content": huge}, headers=alice.headers)  # a new chat too
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "payload_too_large"
    assert len(gpt.requests) == asked
    assert len(await alice.messages(chat_id)) == 2
    chats = await (await client.get("/api/chats", headers=alice.headers)).json()
    assert len(chats["chats"]) == 1


async def test_v1_messages_that_do_not_fit_are_openais_context_length_exceeded(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any,
) -> None:
    gpt, client, store = await _server(tmp_path, make_client, aiohttp_server)
    alice = await quick_user(client, "alice@example.com")
    sdk = openai.AsyncOpenAI(api_key=alice.token, base_url=f"http://{client.host}:{client.port}/v1", max_retries=0)
    history = [{"role": "user" if n % 2 == 0 else "assistant", "content": f"turn {n} " + "words " * 40}
               for n in range(60)]
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk.chat.completions.create(model="small", messages=[*history, {"role": "user", "content": "and?"}])
    error = refused.value.body
    assert isinstance(error, dict) and error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert gpt.requests == []
    # What fits goes whole, as sent (a caller's own messages are never trimmed).
    completion = await sdk.chat.completions.create(model="small", messages=[*history[-6:], {"role": "user",
                                                                                           "content": "and?"}])
    assert completion.choices[0].finish_reason == "stop"
    assert [m["content"] for m in gpt.requests[-1]["messages"]] == [m["content"] for m in history[-6:]] + ["and?"]
    await sdk.close()


async def test_the_ai_sdk_route_trims_a_known_chat_and_says_so_in_the_start_part(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any,
) -> None:
    gpt, client, store = await _server(tmp_path, make_client, aiohttp_server)
    alice = await quick_user(client, "alice@example.com")
    chat_id = await _long_chat(store, alice.user["id"], 300)
    body = {"id": chat_id, "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "still here?"}]}]}
    resp = await client.post("/api/chat", json=body, headers=alice.headers)
    assert resp.status == 200
    text = await resp.text()
    sent = gpt.requests[-1]["messages"]
    assert sent[-1]["content"] == "still here?" and _sent_tokens(sent) <= BUDGET - OUTPUT
    assert f'"contextMessages":{len(sent) - 1}' in text.replace(" ", "")


async def test_an_imported_conversation_of_two_thousand_messages_chats_on_within_the_budget(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any,
) -> None:
    gpt, client, store = await _server(tmp_path, make_client, aiohttp_server, migration_enabled=True)
    alpha: Api = await alpha_user(client)
    job_id = await new_job(alpha, total=1)
    conversation = {"id": "old-1", "title": "A long old chat", "createdAt": 1_600_000_000,
                    "messages": [{"role": "user" if n % 2 == 0 else "assistant", "content": f"old message {n}"}
                                 for n in range(2_000)]}
    assert (await put_batch(alpha, job_id, 0, [conversation])).status == 202
    assert (await client.post(f"/api/migration/jobs/{job_id}/complete", headers=alpha.headers)).status == 202
    await wait_for(client, alpha, job_id, "done", timeout_s=60)
    chats = await (await client.get("/api/chats", headers=alpha.headers)).json()
    chat_id = chats["chats"][0]["id"]
    store.rows_read.update(list_messages=0, recent_messages=0)

    for turn in ("what did we decide?", "and after that?"):
        events, _ = await alpha.stream(turn, chatId=chat_id)
        assert events[-1].name == "done"
        sent = gpt.requests[-1]["messages"]
        assert sent[-1]["content"] == turn and _sent_tokens(sent) <= BUDGET - OUTPUT
    assert sent[0]["role"] == "user" and sent[-2]["role"] == "assistant"  # the reply to the first turn went too
    assert events[0].data["contextMessages"] == len(sent) - 1
    assert store.rows_read["list_messages"] == 0 and store.rows_read["recent_messages"] < 2 * 300
