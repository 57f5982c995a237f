"""The alpha migration lane through a real server: flag and role, full import, idempotency, pauses, limits."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gima_server import appkeys
from gima_server.store.sqlite import SqliteStore

from ..conftest import Api, MakeClient, quick_user, same_user_on
from ..sse import read_until


def history(conversations: int, messages: int, tag: str = "c") -> list[dict[str, Any]]:
    return [
        {"id": f"{tag}{i}", "title": f"Old chat {tag}{i}", "createdAt": 1_600_000_000 + i,
         "messages": [{"role": "user" if j % 2 == 0 else "assistant", "content": f"{tag}{i} message {j}"}
                      for j in range(messages)]}
        for i in range(conversations)
    ]


async def alpha_user(client: TestClient, email: str = "alpha@example.com") -> Api:
    api = await quick_user(client, email)
    await client.app[appkeys.STORE].set_roles(api.user["id"], ["user", "alpha"])
    return api


async def new_job(api: Api, total: int | None = None) -> str:
    resp = await api.client.post("/api/migration/jobs", json={"source": "indexeddb", "totalConversations": total},
                                 headers=api.headers)
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["job"]["status"] == "queued" and body["job"]["pollAfterMs"] > 0
    return str(body["job"]["id"])


async def put_batch(api: Api, job_id: str, seq: int, conversations: list[dict[str, Any]]) -> Any:
    return await api.client.put(f"/api/migration/jobs/{job_id}/batches/{seq}", json={"conversations": conversations},
                                headers=api.headers)


async def wait_for(client: TestClient, api: Api, job_id: str, status: str, timeout_s: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = await client.app[appkeys.STORE].get_migration_job(api.user["id"], job_id)
        if job is not None and job.status == status:
            return job.public(0)
        await asyncio.sleep(0.02)
    raise AssertionError(f"job never became {status}: {job}")


async def all_chats(api: Api) -> list[dict[str, Any]]:
    chats, before = [], None
    while True:
        query = "limit=100" + (f"&before={before}" if before else "")
        page = await (await api.client.get(f"/api/chats?{query}", headers=api.headers)).json()
        chats += page["chats"]
        if not page["nextCursor"]:
            return chats
        before = page["nextCursor"]


async def test_flag_off_or_no_alpha_role_is_404_everywhere(make_client: MakeClient) -> None:
    off = await make_client()
    alpha_off = await alpha_user(off)
    on = await make_client(migration_enabled=True)
    plain = await quick_user(on, "plain@example.com")
    for api in (alpha_off, plain):
        for method, path in [("POST", "/api/migration/jobs"), ("PUT", "/api/migration/jobs/j1/batches/0"),
                             ("POST", "/api/migration/jobs/j1/complete"), ("GET", "/api/migration/jobs/j1")]:
            resp = await api.client.request(method, path, json={"source": "indexeddb"}, headers=api.headers)
            assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found", (method, path)


async def test_full_import_of_a_large_history_and_reupload_changes_nothing(make_client: MakeClient) -> None:
    client = await make_client(migration_enabled=True, rate_limits="migration=600/min/100")
    alice = await alpha_user(client)
    job_id = await new_job(alice, total=1000)
    conversations = history(1000, 20)
    for seq in range(10):
        resp = await put_batch(alice, job_id, seq, conversations[seq * 100:(seq + 1) * 100])
        assert resp.status == 202
    assert (await alice.client.post(f"/api/migration/jobs/{job_id}/complete", headers=alice.headers)).status == 202
    job = await wait_for(client, alice, job_id, "done", timeout_s=60)
    assert (job["imported"], job["skipped"], job["failed"]) == (1000, 0, 0)
    chats = await all_chats(alice)
    assert len(chats) == 1000
    sample = next(c for c in chats if c["title"] == "Old chat c17")
    messages = await alice.messages(sample["id"])
    assert [m["content"] for m in messages] == [f"c17 message {j}" for j in range(20)]
    assert {m["role"] for m in messages} == {"user", "assistant"}
    # The same batches again: the same seq is a no-op; the same conversations in a new job are skipped.
    assert (await put_batch(alice, job_id, 3, conversations[300:400])).status == 409  # the job is done
    again = await new_job(alice)
    for seq in range(10):
        await put_batch(alice, again, seq, conversations[seq * 100:(seq + 1) * 100])
        await put_batch(alice, again, seq, conversations[seq * 100:(seq + 1) * 100])  # same seq twice
    await alice.client.post(f"/api/migration/jobs/{again}/complete", headers=alice.headers)
    job = await wait_for(client, alice, again, "done", timeout_s=60)
    assert (job["imported"], job["skipped"]) == (0, 1000)
    assert len(await all_chats(alice)) == 1000


async def test_bad_batches_are_refused_and_write_nothing(make_client: MakeClient) -> None:
    client = await make_client(migration_enabled=True, migration_batch_conversations=5, rate_limits="migration=600/min/100")
    alice = await alpha_user(client)
    job_id = await new_job(alice)
    good = history(1, 2)[0]
    cases: list[tuple[Any, int]] = [
        ({"conversations": "nope"}, 400),
        ({"conversations": [good], "extra": 1}, 400),
        ({"conversations": [{**good, "messages": "nope"}]}, 400),
        ({"conversations": [{**good, "messages": [{"role": 5, "content": "x"}]}]}, 400),
        ({"conversations": [{**good, "messages": [{"role": "user", "content": 5}]}]}, 400),
        ({"conversations": [{**good, "createdAt": "last tuesday"}]}, 400),
        ({"conversations": [{**good, "createdAt": -1}]}, 400),
        ({"conversations": [{**good, "createdAt": 10**400}]}, 400),
        ({"conversations": [{**good, "messages": [{"role": "user", "content": "x", "createdAt": "2024-13-01"}]}]}, 400),
        ({"conversations": [{**good, "messages": [{"role": "user", "content": "x", "createdAt": True}]}]}, 400),
        ({"conversations": [{**good, "messages": [{"role": "user", "content": "x" * 40_000}]}]}, 413),
        ({"conversations": [good] * 6}, 413),
        ({"conversations": [good, {**good, "title": 7}]}, 400),  # one bad conversation: the whole batch is refused
    ]
    for body, status in cases:
        resp = await client.put(f"/api/migration/jobs/{job_id}/batches/0", json=body, headers=alice.headers)
        assert resp.status == status, (body, await resp.text())
    raw = await client.put(f"/api/migration/jobs/{job_id}/batches/0", data=b"{not json",
                           headers={**alice.headers, "Content-Type": "application/json"})
    assert raw.status == 400
    assert (await put_batch(alice, job_id, -1, [good])).status in (400, 404)
    assert (await put_batch(alice, "someone-elses", 0, [good])).status == 404
    assert await client.app[appkeys.STORE].pending_migration_batches(job_id) == 0
    assert await all_chats(alice) == []


async def test_fields_an_export_adds_are_ignored_not_refused(make_client: MakeClient) -> None:
    """Common chat apps' exports carry more than the import needs (updatedAt, model, ids, agent names)."""
    client = await make_client(migration_enabled=True, rate_limits="migration=600/min/100")
    alice = await alpha_user(client)
    job_id = await new_job(alice)
    good = history(1, 2)[0]
    rich = {**good, "id": "conv-1", "updatedAt": 1.5, "model": "gpt-4o", "pinned": True,
            "messages": [{**m, "id": f"m{i}", "agent": "writer", "model": "gpt-4o"} for i, m in enumerate(good["messages"])]}
    resp = await put_batch(alice, job_id, 0, [rich])
    assert resp.status == 202, await resp.text()
    assert await client.app[appkeys.STORE].pending_migration_batches(job_id) == 1


async def test_a_streaming_reply_pauses_the_lane_which_resumes_after(make_client: MakeClient) -> None:
    client = await make_client(migration_enabled=True, demo_tokens_per_s=200, demo_reply_words=150,
                               rate_limits="migration=600/min/100")
    alice = await alpha_user(client)
    job_id = await new_job(alice)
    reply = await client.post("/api/chat/stream", json={"content": "keep chatting"}, headers=alice.headers)
    await read_until(reply, lambda ev: len(ev) >= 2)
    await put_batch(alice, job_id, 0, history(10, 4))
    paused = await wait_for(client, alice, job_id, "paused")
    assert paused["pausedReason"] == "chat_streaming"
    resp = await client.get(f"/api/migration/jobs/{job_id}", headers=alice.headers)
    assert (await resp.json())["job"]["pollAfterMs"] >= 10_000  # told to come back later while chatting
    await reply.read()  # the reply ends
    job = await wait_for(client, alice, job_id, "queued")
    assert job["imported"] == 10


async def test_a_reply_pauses_a_running_import_between_batches_quickly(make_client: MakeClient) -> None:
    client = await make_client(migration_enabled=True, demo_tokens_per_s=100, demo_reply_words=100,
                               rate_limits="migration=600/min/100")
    alice = await alpha_user(client)
    job_id = await new_job(alice)
    for seq in range(40):
        await put_batch(alice, job_id, seq, history(100, 5, tag=f"b{seq}-"))
    await wait_for(client, alice, job_id, "running")
    started = time.monotonic()
    reply = await client.post("/api/chat/stream", json={"content": "I am back"}, headers=alice.headers)
    await wait_for(client, alice, job_id, "paused")
    paused_after_s = time.monotonic() - started
    job = await client.app[appkeys.STORE].get_migration_job(alice.user["id"], job_id)
    assert job is not None and 0 < job.imported < 4000
    print(f"import paused {paused_after_s * 1000:.0f} ms after the reply started")
    assert paused_after_s < 5  # at most one batch (100 conversations) in between
    reply.close()


async def test_load_pressure_and_a_closed_window_pause_the_lane(make_client: MakeClient) -> None:
    hour = time.gmtime().tm_hour
    closed = f"{(hour + 2) % 24:02d}:00-{(hour + 3) % 24:02d}:00"
    client = await make_client(migration_enabled=True, migration_window=closed, rate_limits="migration=600/min/100")
    alice = await alpha_user(client)
    job_id = await new_job(alice)
    await put_batch(alice, job_id, 0, history(3, 2))
    assert (await wait_for(client, alice, job_id, "paused"))["pausedReason"] == "window"

    busy = await make_client(migration_enabled=True, rate_limits="migration=600/min/100")
    busy.app[appkeys.LOAD]._lag_threshold_s = -1.0  # any lag at all counts as pressure
    bob = await alpha_user(busy, "bob@example.com")
    job_id = await new_job(bob)
    await put_batch(bob, job_id, 0, history(3, 2))
    assert (await wait_for(busy, bob, job_id, "paused"))["pausedReason"] == "load"
    busy.app[appkeys.LOAD]._lag_threshold_s = 10.0
    assert (await wait_for(busy, bob, job_id, "queued"))["imported"] == 3


class SlowStore(SqliteStore):
    async def import_migration_batch(self, *args: Any) -> tuple[int, int]:
        await asyncio.sleep(0.3)
        return await super().import_migration_batch(*args)


async def test_max_concurrent_migrations_is_respected(make_client: MakeClient, tmp_path: Path) -> None:
    client = await make_client(store=SlowStore(tmp_path / "slow.sqlite3"), migration_enabled=True,
                               max_concurrent_migrations=1, rate_limits="migration=600/min/100")
    users = [await alpha_user(client, f"a{i}@example.com") for i in range(2)]
    jobs = [await new_job(u) for u in users]
    for user, job_id in zip(users, jobs, strict=True):
        for seq in range(3):
            await put_batch(user, job_id, seq, history(2, 2, tag=f"{job_id}-{seq}-"))
    seen_capacity = False
    for _ in range(100):
        states = [await client.app[appkeys.STORE].get_migration_job(u.user["id"], j) for u, j in zip(users, jobs, strict=True)]
        assert sum(s is not None and s.status == "running" for s in states) <= 1
        seen_capacity |= any(s is not None and s.paused_reason == "capacity" for s in states)
        await asyncio.sleep(0.02)
    assert seen_capacity
    for user, job_id in zip(users, jobs, strict=True):
        assert (await wait_for(client, user, job_id, "queued"))["imported"] == 6


class BrokenStore(SqliteStore):
    async def import_migration_batch(self, *args: Any) -> tuple[int, int]:
        raise OSError("disk full")


async def test_a_failing_batch_fails_the_job_with_nothing_half_imported(make_client: MakeClient, tmp_path: Path) -> None:
    client = await make_client(store=BrokenStore(tmp_path / "broken.sqlite3"), migration_enabled=True,
                               rate_limits="migration=600/min/100")
    alice = await alpha_user(client)
    job_id = await new_job(alice)
    await put_batch(alice, job_id, 0, history(5, 2))
    job = await wait_for(client, alice, job_id, "failed")
    assert "batch 0" in job["error"] and job["imported"] == 0
    assert await all_chats(alice) == []


async def test_polling_sooner_than_poll_after_is_429_from_the_migration_bucket(make_client: MakeClient) -> None:
    client = await make_client(migration_enabled=True)
    alice = await alpha_user(client)
    job_id = await new_job(alice)
    first = await client.get(f"/api/migration/jobs/{job_id}", headers=alice.headers)
    assert first.status == 200
    wait_ms = (await first.json())["job"]["pollAfterMs"]
    early = await client.get(f"/api/migration/jobs/{job_id}", headers=alice.headers)
    assert early.status == 429 and 0 < float(early.headers["Retry-After"]) <= wait_ms / 1000 + 1
    assert early.headers["RateLimit-Policy"].startswith('"migration')
    chat = await client.post("/api/chat/stream", json={"content": "chat is not affected"}, headers=alice.headers)
    assert chat.status == 200
    await chat.read()


async def test_chat_during_an_import_sees_no_429(make_client: MakeClient) -> None:
    client = await make_client(migration_enabled=True, demo_reply_words=10, rate_limits="migration=600/min/100")
    alice = await alpha_user(client)
    job_id = await new_job(alice)
    for seq in range(20):
        await put_batch(alice, job_id, seq, history(100, 4, tag=f"x{seq}-"))
    others = [await quick_user(client, f"chatter{i}@example.com") for i in range(20)]
    results = await asyncio.gather(*(client.post("/api/chat/stream", json={"content": f"hi {i}"}, headers=o.headers)
                                     for i, o in enumerate(others)))
    assert {r.status for r in results} == {200}
    for r in results:
        await r.read()


def _export_shaped() -> list[dict[str, Any]]:
    """Conversations as browser apps export them: JSON.stringify'd Dates, Date.now(), Python's time.time(),
    zone-less ISO text, system prompts and tool calls (whose content is not text) among the messages."""
    return [
        {"id": "iso", "title": "ISO dates", "createdAt": "2024-05-01T12:34:56.789Z", "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "iso question", "createdAt": "2024-05-01T12:35:00.000Z"},
            {"role": "assistant", "content": "iso answer", "createdAt": "2024-05-01T14:35:01+02:00"},
        ]},
        {"id": "ms", "title": "Milliseconds", "createdAt": 1714566896789, "messages": [
            {"role": "user", "content": "ms question", "createdAt": 1714566900000},
            {"role": "tool", "content": [{"type": "text", "text": "weather: 12C"}], "tool_call_id": "t1"},
            {"role": "assistant", "content": "ms answer", "createdAt": 1714566901500},
        ]},
        {"id": "s", "title": "Seconds", "createdAt": 1714566896.5, "messages": [
            {"role": "user", "content": "seconds question", "createdAt": 1714566900},
            {"role": "assistant", "content": "seconds answer"},
        ]},
        {"id": "naive", "title": "No zone", "createdAt": "2024-05-01T12:34:56", "messages": [
            {"role": "user", "content": "naive question", "createdAt": "2024-05-01T12:35:00"},
        ]},
        {"id": "sys", "title": "Only a system prompt", "createdAt": "2024-05-02", "messages": [
            {"role": "system", "content": "set up but never used"},
        ]},
    ]


async def test_batches_shaped_like_real_exports_are_imported_with_their_times(make_client: MakeClient) -> None:
    client = await make_client(migration_enabled=True, rate_limits="migration=600/min/100")
    alice = await alpha_user(client)
    job_id = await new_job(alice, total=5)
    resp = await put_batch(alice, job_id, 0, _export_shaped())
    assert resp.status == 202, await resp.text()
    await alice.client.post(f"/api/migration/jobs/{job_id}/complete", headers=alice.headers)
    job = await wait_for(client, alice, job_id, "done")
    # the system-only conversation has nothing to import; three other-role messages were skipped
    assert (job["imported"], job["skipped"], job["failed"], job["skippedMessages"]) == (4, 1, 0, 3)
    polled = await (await client.get(f"/api/migration/jobs/{job_id}", headers=alice.headers)).json()
    assert polled["job"]["skippedMessages"] == 3
    chats = {c["title"]: c for c in await all_chats(alice)}
    assert set(chats) == {"ISO dates", "Milliseconds", "Seconds", "No zone"}
    expected_chat_times = {"ISO dates": 1714566896.789, "Milliseconds": 1714566896.789, "Seconds": 1714566896.5,
                           "No zone": 1714566896.0}
    for title, created in expected_chat_times.items():
        assert chats[title]["createdAt"] == pytest.approx(created, abs=1e-3), title
    iso = await alice.messages(chats["ISO dates"]["id"])
    assert [(m["role"], m["content"]) for m in iso] == [("user", "iso question"), ("assistant", "iso answer")]
    assert [m["createdAt"] for m in iso] == pytest.approx([1714566900.0, 1714566901.0], abs=1e-3)
    ms = await alice.messages(chats["Milliseconds"]["id"])
    assert [m["content"] for m in ms] == ["ms question", "ms answer"]
    assert [m["createdAt"] for m in ms] == pytest.approx([1714566900.0, 1714566901.5], abs=1e-3)
    naive = await alice.messages(chats["No zone"]["id"])
    assert naive[0]["createdAt"] == pytest.approx(1714566900.0, abs=1e-3)  # text without a zone is UTC
    seconds = await alice.messages(chats["Seconds"]["id"])
    assert [m["content"] for m in seconds] == ["seconds question", "seconds answer"]  # an untimed one keeps its place
    assert [m["createdAt"] for m in seconds] == pytest.approx([1714566900.0, 1714566900.000001], abs=1e-7)
    # the same export again: every conversation is skipped, the messages of other roles counted again
    again = await new_job(alice)
    await put_batch(alice, again, 0, _export_shaped())
    await alice.client.post(f"/api/migration/jobs/{again}/complete", headers=alice.headers)
    job = await wait_for(client, alice, again, "done")
    assert (job["imported"], job["skipped"], job["skippedMessages"]) == (0, 5, 3)
    assert len(await all_chats(alice)) == 4


class HeldStore(SqliteStore):
    """Holds the next count of pending batches after it was read, or the next batch insert before it is written."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.hold: dict[str, asyncio.Event] = {}
        self.held: dict[str, asyncio.Event] = {"count": asyncio.Event(), "insert": asyncio.Event()}

    async def _held(self, what: str) -> None:
        gate = self.hold.pop(what, None)
        if gate is not None:
            self.held[what].set()
            await gate.wait()

    async def pending_migration_batches(self, job_id: str) -> int:
        pending = await super().pending_migration_batches(job_id)
        await self._held("count")
        return pending

    async def add_migration_batch(self, job_id: str, seq: int, payload: str) -> bool:
        await self._held("insert")
        return await super().add_migration_batch(job_id, seq, payload)


async def _held_job(make_client: MakeClient, tmp_path: Path) -> tuple[HeldStore, TestClient, Api, str]:
    store = HeldStore(tmp_path / "held.sqlite3")
    client = await make_client(store=store, migration_enabled=True, rate_limits="migration=600/min/100")
    alice = await alpha_user(client)
    return store, client, alice, await new_job(alice)


async def test_a_batch_and_completion_arriving_while_the_lane_counts_are_both_imported(
    make_client: MakeClient, tmp_path: Path,
) -> None:
    """The lane counted no pending batch, the batch and the completion came in before that count returned:
    the job must not end done with the batch unimported (seen in CI: done with (0,0,0,0))."""
    store, client, alice, job_id = await _held_job(make_client, tmp_path)
    release = store.hold["count"] = asyncio.Event()
    await asyncio.wait_for(store.held["count"].wait(), 5)  # the lane read 0 pending and waits here
    assert (await put_batch(alice, job_id, 0, history(3, 2))).status == 202
    assert (await alice.client.post(f"/api/migration/jobs/{job_id}/complete", headers=alice.headers)).status == 202
    release.set()
    job = await wait_for(client, alice, job_id, "done")
    assert job["imported"] == 3
    assert len(await all_chats(alice)) == 3


async def test_completion_while_a_batch_is_still_being_stored_imports_that_batch(
    make_client: MakeClient, tmp_path: Path,
) -> None:
    """A client that sends its last batch and the completion together: the batch answered 202 is imported."""
    store, client, alice, job_id = await _held_job(make_client, tmp_path)
    release = store.hold["insert"] = asyncio.Event()
    putting = asyncio.create_task(put_batch(alice, job_id, 0, history(3, 2)))
    await asyncio.wait_for(store.held["insert"].wait(), 5)  # accepted, not yet stored
    assert (await alice.client.post(f"/api/migration/jobs/{job_id}/complete", headers=alice.headers)).status == 202
    await asyncio.sleep(0.6)  # several lane turns (tick 0.2 s) while the batch's request is still open
    release.set()
    assert (await putting).status == 202
    job = await wait_for(client, alice, job_id, "done")
    assert job["imported"] == 3
    assert len(await all_chats(alice)) == 3


async def test_a_job_fed_through_two_processes_ends_done_with_every_count_everywhere(
    make_client: MakeClient, redis_url: str,
) -> None:
    """No sticky sessions: batches and the completion reach either process, and each process's lane tracks the
    job. Whichever imports, the stored counts add up and every process answers the same finished job."""
    one = await make_client(migration_enabled=True, redis_url=redis_url, rate_limits="migration=600/min/100")
    two = await make_client(migration_enabled=True, redis_url=redis_url, rate_limits="migration=600/min/100")
    alice_one = await alpha_user(one)
    alice_two = await same_user_on(two, alice_one)
    job_id = await new_job(alice_one)
    for seq in range(6):
        api = alice_one if seq % 2 == 0 else alice_two
        assert (await put_batch(api, job_id, seq, history(3, 2, tag=f"b{seq}-"))).status == 202
        await asyncio.sleep(0.05 * (seq % 3))  # batches arrive while the lanes are importing, and between
    assert (await alice_two.client.post(f"/api/migration/jobs/{job_id}/complete", headers=alice_two.headers)).status == 202
    stored = await wait_for(one, alice_one, job_id, "done")
    assert (stored["imported"], stored["skipped"]) == (18, 0)
    await asyncio.sleep(0.6)  # a few more lane turns in both processes: nothing may write the job back
    for api in (alice_one, alice_two):
        job = (await (await api.client.get(f"/api/migration/jobs/{job_id}", headers=api.headers)).json())["job"]
        assert (job["status"], job["imported"], job["skipped"]) == ("done", 18, 0), api.client.port
    again = await one.app[appkeys.STORE].get_migration_job(alice_one.user["id"], job_id)
    assert again is not None and (again.status, again.imported) == ("done", 18)
    assert len(await all_chats(alice_one)) == 18


async def test_a_batch_stored_by_one_process_while_another_completes_the_job_is_imported_or_refused(
    make_client: MakeClient, redis_url: str, settings: Any,
) -> None:
    """The completion reaches one process while the other is still storing a batch it accepted: either the
    batch gets in first and is imported before the job ends, or the job ended first and the batch is refused
    (409, nothing stored) — never a 202 for a batch that is not imported."""
    one = await make_client(migration_enabled=True, redis_url=redis_url, rate_limits="migration=600/min/100")
    held = HeldStore(settings.sqlite_path)
    two = await make_client(store=held, migration_enabled=True, redis_url=redis_url,
                            rate_limits="migration=600/min/100")
    alice_one = await alpha_user(one)
    alice_two = await same_user_on(two, alice_one)
    job_id = await new_job(alice_one)
    release = held.hold["insert"] = asyncio.Event()
    putting = asyncio.create_task(put_batch(alice_two, job_id, 0, history(3, 2)))
    await asyncio.wait_for(held.held["insert"].wait(), 5)  # accepted by two, not yet stored
    assert (await alice_one.client.post(f"/api/migration/jobs/{job_id}/complete", headers=alice_one.headers)).status == 202
    await wait_for(one, alice_one, job_id, "done")
    release.set()
    answer = await putting
    await asyncio.sleep(0.6)  # lane turns in both processes
    job = await one.app[appkeys.STORE].get_migration_job(alice_one.user["id"], job_id)
    assert job is not None and job.status == "done"
    if answer.status == 202:
        assert job.imported == 3 and len(await all_chats(alice_one)) == 3
    else:
        assert answer.status == 409, await answer.text()
        assert job.imported == 0 and await all_chats(alice_one) == []
        assert await one.app[appkeys.STORE].pending_migration_batches(job_id) == 0


async def test_a_lane_waits_its_turn_while_another_process_imports_the_job(make_client: MakeClient) -> None:
    """Another process holds the job's lease (importing a batch): this lane tries again at its next tick, it
    does not spin on the lease and the store while that batch takes its time."""
    client = await make_client(migration_enabled=True, rate_limits="migration=600/min/100")
    lane = client.app[appkeys.MIGRATION]
    alice = await alpha_user(client)
    job_id = await new_job(alice)
    other = await lane._locks.try_acquire(f"migration:{job_id}", 120.0)  # as another process would
    assert other is not None
    tries = 0
    real_try = lane._locks.try_acquire

    async def counted(name: str, ttl_s: float) -> Any:
        nonlocal tries
        tries += 1
        return await real_try(name, ttl_s)

    lane._locks.try_acquire = counted
    await put_batch(alice, job_id, 0, history(2, 2))
    await asyncio.sleep(1.0)
    assert 1 <= tries <= 8, tries  # a tick is 0.2 s: about 5 in a second
    await lane._locks.release(other)
    assert (await wait_for(client, alice, job_id, "queued"))["imported"] == 2
