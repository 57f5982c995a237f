"""Semantic history search through a real server, with a deterministic embedding model whose vectors encode topics
(tests/upstream_fakes.topic_vector): meaning without shared words."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from gima_server import appkeys

from ..conftest import Api, MakeClient, sign_up
from ..upstream_fakes import FakeUpstream

OCEAN_QUESTION = "Why do tides rise on the beach?"
OCEAN_QUERY = "lunar pull on coastal water"  # no word of the question, or of the demo's answer to it


async def _server(make_client: MakeClient, aiohttp_server: Any, **settings: Any) -> tuple[FakeUpstream, TestClient]:
    fake = FakeUpstream("openai")
    server = await aiohttp_server(fake.app)
    client = await make_client(embeddings_base_url=f"http://127.0.0.1:{server.port}/v1", embeddings_model="topics",
                               **settings)
    return fake, client


async def _search(user: Api, query: str, mode: str) -> list[dict[str, Any]]:
    resp = await user.client.get("/api/search", params={"q": query, "mode": mode}, headers=user.headers)
    assert resp.status == 200, await resp.text()
    return list((await resp.json())["results"])


def _embedded_texts(fake: FakeUpstream) -> list[str]:
    return [text for body in fake.embedding_requests for text in
            ([body["input"]] if isinstance(body["input"], str) else body["input"])]


async def test_a_query_finds_by_meaning_what_text_search_cannot_and_never_another_users(
    make_client: MakeClient, aiohttp_server: Any,
) -> None:
    fake, client = await _server(make_client, aiohttp_server)
    alice, bob = await sign_up(client, "alice@example.com"), await sign_up(client, "bob@example.com")
    ocean, _ = await alice.stream(OCEAN_QUESTION)
    await alice.stream("How long should bread dough rest before baking?")
    await bob.stream("Do waves on the shore follow the moon?")  # bob's ocean talk: never alice's result

    assert await _search(alice, OCEAN_QUERY, "text") == []
    found = await _search(alice, OCEAN_QUERY, "semantic")
    chat_id = ocean[0].data["chatId"]
    assert {r["chatId"] for r in found[:2]} == {chat_id}  # the ocean chat's two messages come first
    assert found[0]["snippet"][0]["match"] is False and found[0]["chatTitle"]
    bobs = {c["id"] for c in (await (await client.get("/api/chats", headers=bob.headers)).json())["chats"]}
    assert not bobs & {r["chatId"] for r in found}
    assert all(r["chatId"] not in bobs for r in await _search(alice, "moon waves shore", "semantic"))
    assert fake.headers[-1].get("Authorization") is None  # no key configured: none sent


async def test_hybrid_fuses_the_text_and_the_meaning_rankings(make_client: MakeClient, aiohttp_server: Any) -> None:
    fake, client = await _server(make_client, aiohttp_server)
    alice = await sign_up(client, "alice@example.com")
    await alice.stream("Tell me about rocket launch windows")
    await alice.stream("My oven bakes bread unevenly")
    text_only = await _search(alice, "oven bread", "text")
    hybrid = await _search(alice, "oven bread", "hybrid")
    assert text_only and hybrid[0]["messageId"] == text_only[0]["messageId"]
    assert any(part["match"] for part in hybrid[0]["snippet"])  # the text ranking's snippet, words marked
    assert {r["messageId"] for r in text_only} < {r["messageId"] for r in hybrid}  # meaning adds the rest


async def test_messages_are_embedded_in_the_background_but_not_while_their_user_streams(
    make_client: MakeClient, aiohttp_server: Any, tmp_path: Path,
) -> None:
    agents = tmp_path / "agents.toml"
    agents.write_text('[agents.quick]\nkind = "demo"\ntokens_per_s = 0\ndefault = true\n'
                      '[agents.slow]\nkind = "demo"\ntokens_per_s = 15\n')
    fake, client = await _server(make_client, aiohttp_server, agents_file=str(agents))
    alice, bob = await sign_up(client, "alice@example.com"), await sign_up(client, "bob@example.com")
    headers = alice.headers
    slow = {"model": "slow"}
    first = await client.post("/api/chat/stream", json={"content": "Alice asks about tides first", **slow},
                              headers=headers)
    # Her next message supersedes the first reply at once: she never stops streaming, her first turn is finished.
    running = await client.post("/api/chat/stream", json={"content": "Alice asks a slow second question", **slow},
                                headers=headers)
    await bob.stream("Bob asks about the ocean")
    for _ in range(100):  # the indexer's rounds: every 2 s while idle
        if any("Bob asks" in text for text in _embedded_texts(fake)):
            break
        await asyncio.sleep(0.1)
    assert any("Bob asks" in text for text in _embedded_texts(fake))
    assert not any("Alice" in text for text in _embedded_texts(fake))  # she is streaming: her turn waits
    await first.read()
    await running.read()
    for _ in range(100):
        if any("Alice asks about tides" in text for text in _embedded_texts(fake)):
            break
        await asyncio.sleep(0.1)
    assert any("Alice asks about tides" in text for text in _embedded_texts(fake))
    store = client.app[appkeys.STORE]
    await asyncio.sleep(0)
    assert all(b["model"] == "topics" for b in fake.embedding_requests)
    assert await store.user_vectors(alice.user["id"], "topics")


async def test_each_background_batch_counts_against_the_users_embeddings_quota(
    make_client: MakeClient, aiohttp_server: Any,
) -> None:
    fake, client = await _server(make_client, aiohttp_server, rate_limits="embeddings=1/h/1", embeddings_batch=2)
    alice = await sign_up(client, "alice@example.com")
    for n in range(3):
        await alice.stream(f"Question number {n} about tides")
    await asyncio.sleep(4.5)  # two rounds of the indexer at least
    assert len(fake.embedding_requests) == 1 and len(fake.embedding_requests[0]["input"]) == 2
    metrics = await (await client.get("/metrics")).text()
    assert 'gima_rate_limited_total{limit="embeddings"}' in metrics


async def test_without_embeddings_semantic_modes_are_400_naming_the_setting(make_client: MakeClient) -> None:
    client = await make_client()
    alice = await sign_up(client, "alice@example.com")
    for mode in ("semantic", "hybrid"):
        resp = await client.get("/api/search", params={"q": "tides", "mode": mode}, headers=alice.headers)
        assert resp.status == 400 and "GIMA_EMBEDDINGS_MODEL" in (await resp.json())["error"]["message"]
    resp = await client.get("/api/search", params={"q": "tides", "mode": "vibes"}, headers=alice.headers)
    assert resp.status == 400


async def test_deleting_the_account_deletes_the_vectors(make_client: MakeClient, aiohttp_server: Any) -> None:
    fake, client = await _server(make_client, aiohttp_server)
    alice = await sign_up(client, "alice@example.com")
    await alice.stream(OCEAN_QUESTION)
    assert await _search(alice, OCEAN_QUERY, "semantic")
    store = client.app[appkeys.STORE]
    assert await store.user_vectors(alice.user["id"], "topics")
    resp = await client.delete("/api/auth/me", json={"password": "correct horse battery"}, headers=alice.headers)
    assert resp.status == 204, await resp.text()
    assert await store.user_vectors(alice.user["id"], "topics") == []
