"""Rate limits, token budgets and admission through a real server and client."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp.test_utils import TestClient

from ..conftest import MakeClient, log_in, quick_user, same_origin, sign_up
from ..sse import parse_sse, read_until


async def test_429_has_retry_after_headers_and_changes_nothing(make_client: MakeClient) -> None:
    client = await make_client(rate_limits="chat=30/min/2")
    alice = await sign_up(client, "alice@example.com")
    await alice.stream("one")
    await alice.stream("two")
    resp = await client.post("/api/chat/stream", json={"content": "three"}, headers=alice.headers)
    assert resp.status == 429
    body = (await resp.json())["error"]
    assert body["code"] == "rate_limited" and 0 < body["retryAfter"] <= 2
    assert resp.headers["Retry-After"] == "2" or resp.headers["Retry-After"] == "1"
    assert resp.headers["RateLimit-Policy"] == '"chat";q=30;w=60'
    assert resp.headers["RateLimit"].startswith('"chat";r=0;t=')
    chats = (await (await client.get("/api/chats", headers=alice.headers)).json())["chats"]
    assert len(chats) == 2


async def test_replays_and_resumes_cost_nothing(make_client: MakeClient) -> None:
    client = await make_client(rate_limits="chat=1/min/1")
    alice = await sign_up(client, "alice@example.com")
    events, _ = await alice.stream("only one allowed", headers={"Idempotency-Key": "k"})
    for _ in range(3):
        replay, resp = await alice.stream("only one allowed", headers={"Idempotency-Key": "k"})
        assert resp.headers["Idempotent-Replayed"] == "true"
        status, _ = await alice.resume(events[0].data["messageId"], 2)
        assert status == 200
    refused = await client.post("/api/chat/stream", json={"content": "a new one"}, headers=alice.headers)
    assert refused.status == 429


async def test_sign_up_attempts_are_limited_per_address(make_client: MakeClient) -> None:
    client = await make_client(rate_limits="auth=20/min/3")
    statuses = []
    for i in range(5):
        resp = await client.post(
            "/api/auth/signup", json={"email": f"u{i}@example.com", "password": "long enough pw"},
            headers={**same_origin(client), "User-Agent": f"agent-{i}"},  # a new User-Agent buys nothing
        )
        statuses.append(resp.status)
    assert statuses == [201, 201, 201, 429, 429]


async def test_login_attempts_are_limited_per_account(make_client: MakeClient) -> None:
    client = await make_client(rate_limits="auth=1000/min/1000,auth_account=10/min/3")
    await sign_up(client, "victim@example.com")
    client.session.cookie_jar.clear()
    statuses = []
    for _ in range(5):
        resp = await client.post(
            "/api/auth/login", json={"email": "VICTIM@example.com", "password": "wrong password"}, headers=same_origin(client)
        )
        statuses.append(resp.status)
    assert statuses == [401, 401, 401, 429, 429]


async def test_token_budget_is_reserved_then_settled(make_client: MakeClient) -> None:
    client = await make_client(
        rate_limits="tokens=1000/min/1000", reply_token_estimate=600, demo_tokens_per_s=200, demo_reply_words=40
    )
    alice = await sign_up(client, "alice@example.com")
    other_tab = await log_in(client, "alice@example.com")
    running = await client.post("/api/chat/stream", json={"content": "first"}, headers=alice.headers)
    await read_until(running, lambda ev: len(ev) >= 2)
    refused = await client.post("/api/chat/stream", json={"content": "second"}, headers=other_tab.headers)
    assert refused.status == 429 and (await refused.json())["error"]["message"].endswith("(tokens); retry later")
    events, _ = parse_sse(await running.read())
    used = sum(e.name == "delta" for e in events)
    assert events[-1].name == "done" and used < 200
    await asyncio.sleep(0.05)  # the reply settles its budget right after its last event
    again, _ = await other_tab.stream("third, after the refund")
    assert again[-1].name == "done"


async def test_admission_queue_bounds_and_503(make_client: MakeClient) -> None:
    client = await make_client(
        max_active_replies=1, admission_wait_s=0.2, admission_queue=1, demo_tokens_per_s=100, demo_reply_words=100
    )
    users = [await sign_up(client, f"u{i}@example.com") for i in range(3)]
    first = await client.post("/api/chat/stream", json={"content": "hold the slot"}, headers=users[0].headers)
    await read_until(first, lambda ev: len(ev) >= 2)
    waiting = asyncio.create_task(client.post("/api/chat/stream", json={"content": "wait"}, headers=users[1].headers))
    await asyncio.sleep(0.05)
    full = await client.post("/api/chat/stream", json={"content": "no room"}, headers=users[2].headers)
    assert full.status == 503 and (await full.json())["error"]["code"] == "server_busy" and full.headers["Retry-After"]
    timed_out = await waiting
    assert timed_out.status == 503 and timed_out.headers["Retry-After"] == "1"
    ready = await (await client.get("/ready")).json()
    assert ready["checks"]["load"]["activeReplies"] == 1
    first.close()


async def test_a_queued_reply_starts_when_a_slot_frees(make_client: MakeClient) -> None:
    client = await make_client(max_active_replies=1, admission_wait_s=10, demo_tokens_per_s=400, demo_reply_words=30)
    one, two = await sign_up(client, "one@example.com"), await sign_up(client, "two@example.com")
    (a, _), (b, _) = await asyncio.gather(one.stream("first in line"), two.stream("second in line"))
    assert a[-1].name == "done" and b[-1].name == "done"


async def test_metrics_endpoint_counts_429s(make_client: MakeClient) -> None:
    client = await make_client(rate_limits="chat=30/min/1")
    alice = await sign_up(client, "alice@example.com")
    await alice.stream("one")
    assert (await client.post("/api/chat/stream", json={"content": "two"}, headers=alice.headers)).status == 429
    text = await (await client.get("/metrics")).text()
    assert 'gima_rate_limited_total{limit="chat"} 1.0' in text


async def test_json_writes_honour_idempotency_keys(make_client: MakeClient) -> None:
    client = await make_client(rate_limits="default=600/min/7")
    alice = await sign_up(client, "alice@example.com")
    headers = {**alice.headers, "Idempotency-Key": "create-1"}
    first = await client.post("/api/chats", json={"title": "once"}, headers=headers)
    assert first.status == 201 and "Idempotent-Replayed" not in first.headers
    for _ in range(4):  # replays are free: charged, these four alone (2 each) would drain the bucket of 7
        again = await client.post("/api/chats", json={"title": "once"}, headers=headers)
        assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
        assert await again.json() == await first.json()
    other = await client.post("/api/chats", json={"title": "twice"}, headers=headers)
    assert other.status == 422 and (await other.json())["error"]["code"] == "idempotency_key_reused"
    chats = (await (await client.get("/api/chats", headers=alice.headers)).json())["chats"]
    assert [c["title"] for c in chats] == ["once"]
    bad = await client.post("/api/chats", json={"title": 5}, headers={**alice.headers, "Idempotency-Key": "bad-1"})
    replayed_bad = await client.post("/api/chats", json={"title": 5}, headers={**alice.headers, "Idempotency-Key": "bad-1"})
    assert bad.status == replayed_bad.status == 400 and replayed_bad.headers["Idempotent-Replayed"] == "true"
    assert (await replayed_bad.json())["error"]["traceId"] == replayed_bad.headers["X-Trace-Id"]


async def test_normal_chat_from_100_users_sees_no_429_while_a_flood_does(make_client: MakeClient) -> None:
    client = await make_client(demo_reply_words=5)
    users = [await quick_user(client, f"user{i}@example.com") for i in range(100)]

    async def chat(api, text: str) -> int:  # type: ignore[no-untyped-def]
        resp = await client.post("/api/chat/stream", json={"content": text}, headers=api.headers)
        await resp.read()
        return resp.status

    for round_no in range(3):  # every user sends a message, three rounds in quick succession
        statuses = await asyncio.gather(*(chat(u, f"question {round_no} from {i}") for i, u in enumerate(users)))
        assert set(statuses) == {200}
    flood = [await chat(users[0], f"flood {i}") for i in range(15)]
    assert flood.count(429) >= 7 and 200 in flood


async def _login_from(client: TestClient, address: str, email: str, password: str) -> int:
    """A log-in from another client address (the loopback network is all ours: 127.0.0.0/8)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        origin = str(client.make_url("")).rstrip("/")
        async with session.post(client.make_url("/api/auth/login"), json={"email": email, "password": password},
                                headers={"Origin": origin}) as resp:
            return resp.status


async def test_an_attacker_elsewhere_cannot_lock_the_owner_out(make_client: MakeClient) -> None:
    client = await make_client(rate_limits="auth=1000/min/1000,auth_account=10/min/3,auth_account_total=100/min/50")
    await sign_up(client, "owner@example.com")
    attacker = [await _login_from(client, "127.0.0.2", "owner@example.com", "guessing wrong") for _ in range(5)]
    assert attacker == [401, 401, 401, 429, 429]
    assert await _login_from(client, "127.0.0.1", "owner@example.com", "correct horse battery") == 200


async def test_guessing_from_many_addresses_meets_the_per_account_ceiling(make_client: MakeClient) -> None:
    client = await make_client(rate_limits="auth=1000/min/1000,auth_account=10/min/3,auth_account_total=1/min/4")
    await sign_up(client, "owner@example.com")
    statuses = [await _login_from(client, f"127.0.0.{2 + n % 3}", "owner@example.com", "guessing wrong") for n in range(6)]
    assert statuses == [401, 401, 401, 401, 429, 429]
