"""Outgoing webhooks against a receiver of its own process that verifies every delivery with `standardwebhooks`:
what is sent for each event, retries after 500s and timeouts with the same webhook-id, giving up after the
schedule, the text only where an endpoint opted in, a delivery that outlives a SIGKILLed process, and a hanging
receiver that delays neither a reply nor the shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gima_server import appkeys
from gima_server.webhooks.model import Delivery, Endpoint, new_secret

from ..conftest import MakeClient, same_origin, sign_up
from ..processes import wait_healthy
from ..redis_server import free_port
from ..sse import read_until

ROOT = Path(__file__).resolve().parents[2]
QUICK = {"webhook_poll_s": 0.05, "webhook_retry_schedule": "0.2,0.2,0.2,0.2", "webhook_timeout_s": 1.0}


class Receiver:
    """tests/webhook_receiver.py in a process of its own."""

    def __init__(self, tmp_path: Path, secret: str | None = None) -> None:
        self.secret = secret or new_secret()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.log = tmp_path / f"hooks-{self.port}.jsonl"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.webhook_receiver", str(self.port), self.secret,
                                      str(self.log)], cwd=ROOT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise AssertionError("the receiver did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def records(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    async def control(self, **state: Any) -> None:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{self.port}/control", json=state) as resp:
                assert resp.status == 200

    async def wait_for(self, done: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            records = self.records()
            if done(records):
                return records
            await asyncio.sleep(0.05)
        raise AssertionError(f"the receiver did not get what was expected: {self.records()}")


def of_type(records: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [r for r in records if r["event"]["type"] == event_type]


@pytest.fixture
def receiver(tmp_path: Path) -> Any:
    hooks = Receiver(tmp_path)
    hooks.start()
    yield hooks
    hooks.stop()


async def _settled(client: TestClient, timeout_s: float = 5.0) -> list[Delivery]:
    """The deliveries once the newest is no longer pending: the receiver records a try as it answers it, and the
    sender stores the outcome only after the answer reaches it (reading the store at once raced that write)."""
    store = client.app[appkeys.STORE]
    deadline = time.monotonic() + timeout_s
    while True:
        deliveries = await store.list_webhook_deliveries("env", 10)
        if (deliveries and deliveries[0].status != "pending") or time.monotonic() > deadline:
            return deliveries
        await asyncio.sleep(0.02)


async def _client(make_client: MakeClient, receiver: Receiver, **settings: Any) -> TestClient:
    return await make_client(webhook_url=receiver.url, webhook_secret=receiver.secret, **{**QUICK, **settings})


async def test_each_event_is_delivered_signed_with_what_it_reports_and_no_reply_text(
    make_client: MakeClient, receiver: Receiver,
) -> None:
    client = await _client(make_client, receiver)
    alice = await sign_up(client, "alice@example.com")
    created = await receiver.wait_for(lambda r: len(of_type(r, "user.created")) == 1)
    assert of_type(created, "user.created")[0]["event"]["data"]["userId"] == alice.user["id"]

    events, _ = await alice.stream("hello there")
    message_id = events[0].data["messageId"]
    records = await receiver.wait_for(lambda r: len(of_type(r, "reply.completed")) == 1)
    completed = of_type(records, "reply.completed")[0]
    assert completed["verified"] and completed["id"].startswith("msg_")
    assert completed["event"]["timestamp"].endswith("Z")
    data = completed["event"]["data"]
    assert {k: data[k] for k in ("messageId", "chatId", "userId", "status", "finishReason")} == {
        "messageId": message_id, "chatId": events[0].data["chatId"], "userId": alice.user["id"], "status": "complete",
        "finishReason": "stop"}
    assert data["model"] and data["usage"]["outputTokens"] > 0
    assert "content" not in data  # the endpoint did not opt in to the text

    resp = await client.delete("/api/auth/me", headers={**alice.headers, **same_origin(client)},
                               json={"password": "correct horse battery"})
    assert resp.status in (200, 204), await resp.text()
    records = await receiver.wait_for(lambda r: len(of_type(r, "user.deleted")) == 1)
    assert of_type(records, "user.deleted")[0]["event"]["data"] == {"userId": alice.user["id"]}
    assert all(r["verified"] for r in records) and len({r["id"] for r in records}) == len(records)


async def test_a_stopped_reply_is_reply_cancelled(make_client: MakeClient, receiver: Receiver) -> None:
    client = await _client(make_client, receiver, demo_tokens_per_s=20, demo_reply_words=200)
    alice = await sign_up(client, "alice@example.com")
    resp = await client.post("/api/chat/stream", json={"content": "a long one"}, headers=alice.headers)
    seen = await read_until(resp, lambda events: any(e.name == "delta" for e in events))
    message_id = seen[0].data["messageId"]
    stop = await client.post(f"/api/chat/streams/{message_id}/cancel", headers=alice.headers)
    assert stop.status == 202
    resp.close()
    records = await receiver.wait_for(lambda r: len(of_type(r, "reply.cancelled")) == 1)
    cancelled = of_type(records, "reply.cancelled")[0]
    assert cancelled["verified"] and cancelled["event"]["data"]["messageId"] == message_id
    assert cancelled["event"]["data"]["status"] == "cancelled" and cancelled["event"]["data"]["finishReason"] == "cancelled"
    assert of_type(records, "reply.completed") == []


async def test_only_an_endpoint_that_opted_in_gets_the_reply_text_and_only_the_events_it_takes(
    make_client: MakeClient, receiver: Receiver, tmp_path: Path,
) -> None:
    client = await _client(make_client, receiver)
    texts = Receiver(tmp_path)
    texts.start()
    try:
        await client.app[appkeys.STORE].save_webhook_endpoint(Endpoint(
            "with-text", texts.url, texts.secret, ("reply.completed",), include_content=True, created_at=time.time()))
        alice = await sign_up(client, "alice@example.com")
        events, _ = await alice.stream("short")
        got = await texts.wait_for(lambda r: len(r) == 1)
        assert got[0]["verified"] and got[0]["event"]["data"]["content"] == events[-1].data["content"]
        everything = await receiver.wait_for(lambda r: len(of_type(r, "reply.completed")) == 1)
        assert "content" not in of_type(everything, "reply.completed")[0]["event"]["data"]
        await asyncio.sleep(0.3)
        assert len(texts.records()) == 1  # not user.created: it did not ask for it
    finally:
        texts.stop()


async def test_500s_and_timeouts_are_retried_with_the_same_id_until_delivered(
    make_client: MakeClient, receiver: Receiver,
) -> None:
    client = await _client(make_client, receiver, webhook_timeout_s=0.3)
    await receiver.control(fail=2)
    await sign_up(client, "alice@example.com")
    records = await receiver.wait_for(lambda r: any(x["answer"] == 200 for x in r))
    assert [r["answer"] for r in records] == [500, 500, 200]
    assert len({r["id"] for r in records}) == 1  # one delivery, three tries
    deliveries = await _settled(client)
    assert [(d.status, d.attempts, d.last_status) for d in deliveries] == [("delivered", 3, 200)]

    await receiver.control(hang_s=1.0)  # longer than the timeout: the try counts as failed
    await sign_up(client, "bob@example.com")
    await receiver.wait_for(lambda r: len(of_type(r, "user.created")) >= 5)
    await receiver.control(hang_s=0)
    records = await receiver.wait_for(lambda r: of_type(r, "user.created")[-1]["hung"] is False)
    bob = [r for r in of_type(records, "user.created") if r["event"]["data"]["email"] == "bob@example.com"]
    assert len({r["id"] for r in bob}) == 1 and len(bob) >= 2
    deliveries = await _settled(client)
    assert deliveries[0].status == "delivered" and deliveries[0].attempts == len(bob)


async def test_a_receiver_that_always_fails_is_given_up_after_the_schedule(
    make_client: MakeClient, receiver: Receiver,
) -> None:
    client = await _client(make_client, receiver)
    await receiver.control(fail=100)
    await sign_up(client, "alice@example.com")
    records = await receiver.wait_for(lambda r: len(r) >= 5)
    await asyncio.sleep(0.6)  # a sixth try would come within the schedule's 0.2 s (+20 %)
    assert len(receiver.records()) == 5  # the first try and the schedule's four retries
    deliveries = await _settled(client)
    assert [(d.status, d.attempts, d.last_error) for d in deliveries] == [("failed", 5, "HTTP 500")]
    assert len({r["id"] for r in records}) == 1


async def test_deliveries_delivered_or_given_up_are_pruned_after_the_retention_and_pending_ones_kept(
    make_client: MakeClient, receiver: Receiver,
) -> None:
    """The outbox does not grow with every reply forever (GIMA_WEBHOOK_RETENTION_DAYS; here about a second)."""
    client = await _client(make_client, receiver, webhook_retention_days=1.5 / 86400, webhook_retry_schedule="60,60,60,60")
    store = client.app[appkeys.STORE]
    await sign_up(client, "alice@example.com")
    await receiver.wait_for(lambda r: len(of_type(r, "user.created")) == 1)
    assert [d.status for d in await _settled(client)] == ["delivered"]
    await receiver.control(fail=1000)
    await sign_up(client, "bob@example.com")  # fails and waits for its next try: pending
    await receiver.wait_for(lambda r: any(x["answer"] == 500 for x in r))
    async with asyncio.timeout(10):
        while len(await store.list_webhook_deliveries("env", 10)) > 1:  # noqa: ASYNC110 - the sender's own rounds
            await asyncio.sleep(0.1)
    left = await store.list_webhook_deliveries("env", 10)
    assert [d.status for d in left] == ["pending"]  # bob's, however old: its next try is a minute away
    assert json.loads(left[0].body)["data"]["email"] == "bob@example.com"


async def test_a_receiver_that_hangs_holds_at_most_its_share_of_the_tries_and_never_another_endpoints(
    make_client: MakeClient, receiver: Receiver, tmp_path: Path,
) -> None:
    """Two endpoints; the env one hangs on every delivery. The other still gets each of its deliveries at once,
    and the hanging one never has more than MAX_IN_FLIGHT_PER_ENDPOINT tries open (its log: one line per try)."""
    from gima_server.webhooks.model import Endpoint
    from gima_server.webhooks.sender import MAX_IN_FLIGHT_PER_ENDPOINT

    healthy = Receiver(tmp_path / "healthy")
    (tmp_path / "healthy").mkdir()
    healthy.start()
    try:
        client = await _client(make_client, receiver, webhook_timeout_s=30.0)
        store = client.app[appkeys.STORE]
        await store.save_webhook_endpoint(Endpoint("healthy", healthy.url, healthy.secret, created_at=time.time()))
        await receiver.control(hang_s=60)
        users = 80  # more than a process's 64 tries at once
        for n in range(users):
            await store.create_user(f"many{n}@example.com", "h", f"many{n}", ("user",))  # fans out to both
        await healthy.wait_for(lambda r: len(of_type(r, "user.created")) == users, timeout_s=20)
        assert len(receiver.records()) <= MAX_IN_FLIGHT_PER_ENDPOINT  # every try it got is still hanging
    finally:
        healthy.stop()


async def _first_try_recorded(db: Path, timeout_s: float = 10.0) -> None:
    """Until the server's store shows the failed first try (a fixed pause raced it on a loaded machine: killed before
    the record, the delivery stays leased for longer than the test waits)."""
    async with asyncio.timeout(timeout_s):
        while True:
            with contextlib.closing(sqlite3.connect(db)) as conn:
                if conn.execute("SELECT 1 FROM webhook_deliveries WHERE attempts >= 1").fetchone():
                    return
            await asyncio.sleep(0.05)


def _server(tmp_path: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GIMA_")}
    clean.update({"GIMA_DATA_DIR": str(tmp_path / "data"), "GIMA_WEBHOOK_POLL_S": "0.05", **env})
    return subprocess.Popen([sys.executable, "-m", "gima_server", "--port", str(port)], env=clean,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_a_pending_delivery_survives_a_sigkilled_process_and_is_sent_after_restart(tmp_path: Path) -> None:
    hooks = Receiver(tmp_path)  # not started yet: every try fails to connect
    env = {"GIMA_WEBHOOK_URL": hooks.url, "GIMA_WEBHOOK_SECRET": hooks.secret, "GIMA_WEBHOOK_RETRY_SCHEDULE": "1,1,1,1"}
    port = free_port()
    first = _server(tmp_path, port, **env)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, f"http://127.0.0.1:{port}", first)
            async with session.post(f"http://127.0.0.1:{port}/api/auth/signup",
                                    json={"email": "kill@example.com", "password": "a good password"}) as resp:
                assert resp.status == 201
            await _first_try_recorded(tmp_path / "data" / "gima.sqlite3")  # the delivery now waits for its retry
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    hooks.start()
    second = _server(tmp_path, port, **env)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, f"http://127.0.0.1:{port}", second)
        records = await hooks.wait_for(lambda r: len(r) >= 1, timeout_s=15)
        assert records[0]["verified"] and records[0]["event"]["data"]["email"] == "kill@example.com"
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
        hooks.stop()


async def test_a_hanging_receiver_delays_neither_a_reply_nor_the_shutdown(tmp_path: Path) -> None:
    hooks = Receiver(tmp_path)
    hooks.start()
    port = free_port()
    server = _server(tmp_path, port, GIMA_WEBHOOK_URL=hooks.url, GIMA_WEBHOOK_SECRET=hooks.secret,
                     GIMA_WEBHOOK_TIMEOUT_S="30", GIMA_DRAIN_S="2", GIMA_DEMO_TOKENS_PER_S="0",
                     GIMA_DEMO_FIRST_TOKEN_MS="0")
    try:
        await hooks.control(hang_s=60)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, base, server)
            async with session.post(f"{base}/api/auth/signup",
                                    json={"email": "hang@example.com", "password": "a good password"}) as resp:
                token = (await resp.json())["accessToken"]
            await hooks.wait_for(lambda r: len(r) == 1)  # user.created is hanging in the receiver
            for n in range(3):
                started = time.monotonic()
                async with session.post(f"{base}/api/chat/stream", json={"content": f"quick {n}"},
                                        headers={"Authorization": f"Bearer {token}"}) as resp:
                    body = await resp.text()
                assert "event: done" in body and time.monotonic() - started < 2.0
            await hooks.wait_for(lambda r: len(r) >= 2)  # a reply.completed is hanging too
        stopping = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        assert time.monotonic() - stopping < 5.0  # not the receiver's 60 s, nor the 30 s timeout
    finally:
        if server.poll() is None:
            server.kill()
        hooks.stop()


async def test_a_backlog_for_one_endpoint_goes_out_batch_after_batch_without_waiting_for_the_next_poll(
    sqlite_store: Any, receiver: Receiver,
) -> None:
    """More due deliveries for one endpoint than one claim takes: once a batch's tries settle the next batch is
    claimed, not a poll interval later (one poll a batch capped an endpoint at BATCH deliveries per poll: 20 a second
    by default, while replies end by the hundred). The poll here is 30 s, so only the first batch would arrive."""
    from gima_server.webhooks.sender import BATCH, WebhookSender

    await sqlite_store.save_webhook_endpoint(Endpoint("one", receiver.url, receiver.secret, created_at=time.time()))
    backlog = BATCH * 5
    for n in range(backlog):
        await sqlite_store.create_user(f"u{n}@example.com", "h", f"u{n}", ("user",))  # a user.created delivery each
    sender = WebhookSender(sqlite_store, (1.0,), 5.0, 30.0)
    running = asyncio.create_task(sender.run_forever())
    try:
        records = await receiver.wait_for(lambda r: len(of_type(r, "user.created")) >= backlog, timeout_s=15)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert len({r["id"] for r in records}) == backlog  # each once
