"""The Store contract: every backend runs these same tests.

SQLite and PostgreSQL always run (PostgreSQL: a throwaway cluster the suite starts, or GIMA_TEST_POSTGRES_URL's
server; a database of its own per test). MongoDB joins when GIMA_TEST_MONGODB_URI points at a server.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import AsyncIterator

import pytest

from gima_server.apikeys.model import ApiKey
from gima_server.store.base import DuplicateError, Exchange, Receipt, Store
from gima_server.store.postgres import PostgresStore
from gima_server.store.sqlite import SqliteStore

from ..postgres_server import drop_database, fresh_database

MONGODB_URI = os.environ.get("GIMA_TEST_MONGODB_URI", "")


def _backends() -> list[str]:
    # Without a MongoDB server the MongoDB cases are not generated at all; one test below says so, once.
    return ["sqlite", "postgresql", "mongodb"] if MONGODB_URI else ["sqlite", "postgresql"]


@pytest.mark.skipif(not MONGODB_URI, reason="the MongoDB store is NOT tested in this run: set GIMA_TEST_MONGODB_URI="
                    "mongodb://HOST:PORT to run this whole contract suite against it too")
def test_the_mongodb_store_runs_this_contract_suite() -> None:
    assert "mongodb" in _backends()  # with a server configured, every case above and below ran against it too


@pytest.fixture(params=_backends())
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend: Store
    database = ""
    if request.param == "sqlite":
        backend = SqliteStore(tmp_path / "contract.sqlite3")
    elif request.param == "postgresql":
        database = await fresh_database(request.getfixturevalue("postgres_base_url"))
        backend = PostgresStore(database)
    else:
        from gima_server.store.mongo import MongoStore

        # One database per test, dropped after it.
        backend = MongoStore(MONGODB_URI, database=f"gima_contract_{uuid.uuid4().hex[:12]}")
    await backend.open()
    yield backend
    if request.param == "mongodb":
        await backend.drop_database()  # type: ignore[attr-defined]
    await backend.close()
    if database:
        await drop_database(database)


async def _user(store: Store, email: str = "u@example.com") -> str:
    return (await store.create_user(email, "hash", "U", ("user",))).id


def _exchange(user_id: str, chat_id: str, n: int, new: bool = False) -> Exchange:
    return Exchange(user_id, chat_id, "title" if new else None, f"u{n}-{chat_id}", f"a{n}-{chat_id}", f"question {n}", float(n))


async def test_users_are_unique_by_email(store: Store) -> None:
    user_id = await _user(store)
    with pytest.raises(DuplicateError):
        await _user(store)
    found = await store.get_user_by_email("u@example.com")
    assert found is not None and found.id == user_id and found.roles == ("user",)
    assert await store.get_user(user_id) == found
    assert await store.get_user("missing") is None


async def test_roles_can_be_changed(store: Store) -> None:
    user_id = await _user(store)
    updated = await store.set_roles(user_id, ["user", "alpha"])
    assert updated is not None and updated.roles == ("user", "alpha")


async def test_sessions_can_be_revoked(store: Store) -> None:
    user_id = await _user(store)
    session = await store.create_session(user_id, 60)
    loaded = await store.get_session(session.id)
    assert loaded is not None and not loaded.revoked and loaded.expires_at > loaded.created_at
    await store.revoke_session(session.id)
    revoked = await store.get_session(session.id)
    assert revoked is not None and revoked.revoked
    assert await store.get_session("missing") is None


async def test_a_users_sessions_are_listed_newest_first_and_no_one_elses(store: Store) -> None:
    alice, bob = await _user(store, "a@example.com"), await _user(store, "b@example.com")
    first = await store.create_session(alice, 60)
    await asyncio.sleep(0.01)
    second = await store.create_session(alice, 60)
    await store.create_session(bob, 60)
    await store.revoke_session(first.id)
    listed = await store.list_sessions(alice)
    assert [(s.id, s.revoked) for s in listed] == [(second.id, False), (first.id, True)]
    assert await store.list_sessions("nobody") == []


def _key(user_id: str, n: int, created_at: float) -> ApiKey:
    return ApiKey(f"k{n}-{user_id}", user_id, f"key {n}", f"hash-{n}-{user_id}", "gima_sk_abcd", created_at)


async def test_api_keys_are_found_by_hash_listed_by_owner_and_deleted_only_by_them(store: Store) -> None:
    alice, bob = await _user(store, "a@example.com"), await _user(store, "b@example.com")
    assert await store.create_api_key(_key(alice, 1, 1.0), max_per_user=2)
    assert await store.create_api_key(_key(alice, 2, 2.0), max_per_user=2)
    assert not await store.create_api_key(_key(alice, 3, 3.0), max_per_user=2)  # at the cap: nothing saved
    assert await store.create_api_key(_key(bob, 1, 1.0), max_per_user=2)
    assert [k.id for k in await store.list_api_keys(alice)] == [f"k2-{alice}", f"k1-{alice}"]
    found = await store.api_key_by_hash(f"hash-1-{alice}")
    assert found is not None and found.user_id == alice and found.name == "key 1" and found.last_used_at is None
    await store.touch_api_key(found.id, 9.0)
    touched = await store.api_key_by_hash(f"hash-1-{alice}")
    assert touched is not None and touched.last_used_at == 9.0
    assert await store.api_key_by_hash("hash-3-" + alice) is None
    assert await store.api_key_owner(f"k1-{bob}") == bob and await store.api_key_owner("k9") is None
    assert not await store.delete_api_key(bob, f"k1-{alice}")  # someone else's key: refused, kept
    assert await store.api_key_by_hash(f"hash-1-{alice}") is not None
    assert await store.delete_api_key(alice, f"k1-{alice}")
    assert await store.api_key_by_hash(f"hash-1-{alice}") is None
    assert not await store.delete_api_key(alice, f"k1-{alice}")


async def test_deleting_a_user_deletes_all_of_theirs_and_nothing_else(store: Store) -> None:
    alice, bob = await _user(store, "a@example.com"), await _user(store, "b@example.com")
    for user_id, chat in ((alice, "ca"), (bob, "cb")):
        await store.begin_exchange(_exchange(user_id, chat, 1, new=True))
        await store.create_session(user_id, 60)
        assert await store.create_api_key(_key(user_id, 1, 1.0), max_per_user=5)
    assert await store.delete_user(alice)
    assert await store.get_user(alice) is None and await store.list_chats(alice, None, 10) == []
    assert await store.list_sessions(alice) == [] and await store.list_api_keys(alice) == []
    assert await store.message_owner("a1-ca") is None and await store.api_key_by_hash(f"hash-1-{alice}") is None
    assert await store.get_user(bob) is not None and [c.id for c in await store.list_chats(bob, None, 10)] == ["cb"]
    assert len(await store.list_sessions(bob)) == 1 and await store.message_owner("a1-cb") == bob
    assert not await store.delete_user(alice)


async def test_chats_belong_to_their_owner(store: Store) -> None:
    alice, bob = await _user(store, "a@example.com"), await _user(store, "b@example.com")
    chat = await store.create_chat(alice, "hello")
    assert await store.get_chat(alice, chat.id) == chat
    assert await store.get_chat(bob, chat.id) is None
    assert await store.list_chats(bob, None, 10) == []
    assert not await store.delete_chat(bob, chat.id)
    assert await store.rename_chat(bob, chat.id, "bob's") is None
    assert await store.get_chat(alice, chat.id) == chat
    renamed = await store.rename_chat(alice, chat.id, "Tides, renamed")
    assert renamed is not None and renamed.id == chat.id and renamed.title == "Tides, renamed"
    assert renamed.created_at == chat.created_at and renamed.updated_at >= chat.updated_at
    assert await store.get_chat(alice, chat.id) == renamed
    assert await store.rename_chat(alice, "no-such-chat", "x") is None


async def test_chats_page_newest_first(store: Store) -> None:
    user_id = await _user(store)
    made = []
    for i in range(5):
        made.append(await store.create_chat(user_id, f"chat {i}"))
        await asyncio.sleep(0.002)
    first = await store.list_chats(user_id, None, 2)
    assert [c.title for c in first] == ["chat 4", "chat 3"]
    second = await store.list_chats(user_id, first[-1].id, 2)
    assert [c.title for c in second] == ["chat 2", "chat 1"]
    third = await store.list_chats(user_id, second[-1].id, 2)
    assert [c.title for c in third] == ["chat 0"]


async def test_exchange_writes_both_messages_and_the_new_chat(store: Store) -> None:
    user_id = await _user(store)
    await store.begin_exchange(_exchange(user_id, "c1", 1, new=True))
    chat = await store.get_chat(user_id, "c1")
    assert chat is not None and chat.title == "title"
    messages = await store.list_messages(user_id, "c1")
    assert [(m.role, m.status, m.content) for m in messages] == [
        ("user", "complete", "question 1"),
        ("assistant", "streaming", ""),
    ]
    assert await store.message_owner("a1-c1") == user_id


async def test_exchange_into_a_missing_or_foreign_chat_writes_nothing(store: Store) -> None:
    alice, bob = await _user(store, "a@example.com"), await _user(store, "b@example.com")
    await store.begin_exchange(_exchange(alice, "c1", 1, new=True))
    with pytest.raises(LookupError):
        await store.begin_exchange(_exchange(bob, "c1", 2))
    with pytest.raises(LookupError):
        await store.begin_exchange(_exchange(bob, "nochat", 3))
    assert len(await store.list_messages(alice, "c1")) == 2
    assert await store.message_owner("a2-c1") is None


async def test_duplicate_reply_id_writes_nothing(store: Store) -> None:
    user_id = await _user(store)
    await store.begin_exchange(_exchange(user_id, "c1", 1, new=True))
    duplicate = Exchange(user_id, "c1", None, "u-other", "a1-c1", "again", 5.0)
    with pytest.raises(DuplicateError):
        await store.begin_exchange(duplicate)
    assert len(await store.list_messages(user_id, "c1")) == 2


async def test_reply_checkpoints_then_finishes(store: Store) -> None:
    user_id = await _user(store)
    await store.begin_exchange(_exchange(user_id, "c1", 1, new=True))
    await store.checkpoint_reply("a1-c1", "partial")
    message = await store.get_message(user_id, "a1-c1")
    assert message is not None and (message.content, message.status) == ("partial", "streaming")
    await store.finish_reply("a1-c1", "partial and more", "complete", "stop", 42)
    await store.checkpoint_reply("a1-c1", "late checkpoint must not win")
    message = await store.get_message(user_id, "a1-c1")
    assert message is not None
    assert (message.content, message.status) == ("partial and more", "complete")
    assert (message.finish_reason, message.event_count) == ("stop", 42)


async def test_a_stopped_reply_keeps_its_receipt(store: Store) -> None:
    user_id = await _user(store)
    await store.begin_exchange(_exchange(user_id, "c1", 1, new=True))
    receipt = Receipt(upstream_closed=False, input_tokens=12, output_tokens=3, estimated=True)
    assert await store.finish_reply("a1-c1", "par", "cancelled", "cancelled", 5, receipt=receipt)
    message = await store.get_message(user_id, "a1-c1")
    assert message is not None and message.receipt == receipt and message.input_tokens is None
    assert message.public()["upstreamClosed"] is False


async def test_messages_are_in_order_and_private(store: Store) -> None:
    alice, bob = await _user(store, "a@example.com"), await _user(store, "b@example.com")
    await store.begin_exchange(_exchange(alice, "c1", 1, new=True))
    await store.begin_exchange(_exchange(alice, "c1", 2))
    assert [m.id for m in await store.list_messages(alice, "c1")] == ["u1-c1", "a1-c1", "u2-c1", "a2-c1"]
    assert await store.list_messages(bob, "c1") == []
    assert await store.get_message(bob, "a1-c1") is None


async def test_deleting_a_chat_deletes_its_messages(store: Store) -> None:
    user_id = await _user(store)
    await store.begin_exchange(_exchange(user_id, "c1", 1, new=True))
    assert await store.delete_chat(user_id, "c1")
    assert await store.get_chat(user_id, "c1") is None
    assert await store.get_message(user_id, "a1-c1") is None
    assert await store.message_owner("a1-c1") is None


async def test_ping(store: Store) -> None:
    await store.ping()


async def test_fencing_refuses_writes_from_an_older_producer(store: Store) -> None:
    user_id = await _user(store)
    await store.begin_exchange(_exchange(user_id, "c1", 1, new=True))
    assert await store.checkpoint_reply("a1-c1", "from producer 5", fence=5)
    assert not await store.checkpoint_reply("a1-c1", "stale producer 4", fence=4)
    assert not await store.finish_reply("a1-c1", "stale final", "complete", "stop", 9, fence=4)
    message = await store.get_message(user_id, "a1-c1")
    assert message is not None and (message.content, message.status) == ("from producer 5", "streaming")
    assert await store.finish_reply("a1-c1", "final from 6", "complete", "stop", 9, fence=6)
    message = await store.get_message(user_id, "a1-c1")
    assert message is not None and (message.content, message.status) == ("final from 6", "complete")


async def test_messages_follow_send_time_even_when_written_late(store: Store) -> None:
    user_id = await _user(store)
    await store.begin_exchange(_exchange(user_id, "c1", 3, new=True))
    await store.begin_exchange(_exchange(user_id, "c1", 2))  # sent earlier, stored later (it was superseded)
    assert [m.id for m in await store.list_messages(user_id, "c1")] == ["u2-c1", "a2-c1", "u3-c1", "a3-c1"]


async def test_migration_jobs_are_saved_and_listed_until_finished(store: Store) -> None:
    from gima_server.migration.model import MigrationJob

    user_id = await _user(store)
    job = MigrationJob("job1", user_id, "indexeddb", 10, created_at=1.0)
    await store.create_migration_job(job)
    assert await store.get_migration_job(user_id, "job1") == job
    assert await store.get_migration_job("someone-else", "job1") is None
    job.status, job.paused_reason = "paused", "load"
    assert await store.save_migration_state(job) == job
    assert (await store.get_migration_job(user_id, "job1")) == job
    assert [j.id for j in await store.unfinished_migration_jobs()] == ["job1"]
    job.status = "done"
    assert await store.save_migration_state(job) == job
    assert await store.unfinished_migration_jobs() == []


async def test_a_migration_job_state_leaves_its_counts_and_a_finished_job_stays_finished(store: Store) -> None:
    """Several processes' lanes hold copies of one job: a copy's state never writes back its stale counts, and
    a job finished by one process is not reopened by another's late decision."""
    import dataclasses

    from gima_server.migration.model import BatchLimits, MigrationJob, parse_batch

    user_id = await _user(store)
    job = MigrationJob("job1", user_id, "indexeddb", None, created_at=1.0)
    await store.create_migration_job(job)
    stale = dataclasses.replace(job)  # another process's copy, read before anything was imported
    batch = {"conversations": [{"title": "one", "messages": [{"role": "user", "content": "hi"}]}]}
    await store.add_migration_batch("job1", 0, "x")
    assert await store.import_migration_batch(job, 0, parse_batch(batch, BatchLimits())) == (1, 0)
    job.complete_requested = True
    assert await store.save_migration_state(job) is not None
    stale.status, stale.paused_reason = "paused", "capacity"  # the copy was read before the completion, too
    saved = await store.save_migration_state(stale)
    assert saved is not None and (saved.status, saved.paused_reason, saved.imported) == ("paused", "capacity", 1)
    assert saved.complete_requested  # not taken back by a copy that never saw it
    other = {"conversations": [{"title": "two", "messages": [{"role": "user", "content": "yo"}]}]}
    await store.add_migration_batch("job1", 1, "y")
    assert await store.import_migration_batch(stale, 1, parse_batch(other, BatchLimits())) == (1, 0)
    assert stale.imported == 2  # added to the stored count, not to the copy's 0
    stale.status, stale.paused_reason, stale.complete_requested = "done", None, True
    assert await store.save_migration_state(stale) is not None
    job.status, job.paused_reason = "queued", None  # a late decision from a lane that has not seen the end
    after = await store.save_migration_state(job)
    assert after is not None and (after.status, after.imported, after.complete_requested) == ("done", 2, True)
    assert await store.get_migration_job(user_id, "job1") == after
    assert await store.save_migration_state(MigrationJob("nope", user_id, "indexeddb", None)) is None
    assert not await store.add_migration_batch("job1", 2, "too late")  # the job is done: nothing queued
    assert await store.pending_migration_batches("job1") == 0


async def test_a_migration_job_does_not_end_while_a_batch_is_queued(store: Store) -> None:
    from gima_server.migration.model import MigrationJob

    user_id = await _user(store)
    job = MigrationJob("job1", user_id, "indexeddb", None, created_at=1.0, complete_requested=True)
    await store.create_migration_job(job)
    assert await store.add_migration_batch("job1", 0, "in before the end")
    job.status = "done"
    kept = await store.save_migration_state(job)
    assert kept is not None and kept.status == "queued" and not kept.finished
    assert [j.id for j in await store.unfinished_migration_jobs()] == ["job1"]


async def test_migration_batches_are_queued_once_and_imported_all_or_nothing(store: Store) -> None:
    from gima_server.migration.model import BatchLimits, MigrationJob, parse_batch

    user_id = await _user(store)
    job = MigrationJob("job1", user_id, "indexeddb", None, created_at=1.0)
    await store.create_migration_job(job)
    assert await store.add_migration_batch("job1", 1, "second")
    assert await store.add_migration_batch("job1", 0, "first")
    assert not await store.add_migration_batch("job1", 0, "again")  # same seq: no-op
    assert await store.pending_migration_batches("job1") == 2
    assert await store.next_migration_batch("job1") == (0, "first")
    batch = {"conversations": [
        {"title": "one", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"title": "two", "messages": [{"role": "user", "content": "yo"}]},
    ]}
    conversations = parse_batch(batch, BatchLimits())
    assert await store.import_migration_batch(job, 0, conversations) == (2, 0)
    assert (job.imported, job.skipped) == (2, 0)
    assert await store.import_migration_batch(job, 1, conversations) == (0, 2)  # same content: skipped
    assert await store.pending_migration_batches("job1") == 0
    saved = await store.get_migration_job(user_id, "job1")
    assert saved is not None and (saved.imported, saved.skipped) == (2, 2)
    chats = await store.list_chats(user_id, None, 10)
    assert sorted(c.title for c in chats) == ["one", "two"]
    one = next(c for c in chats if c.title == "one")
    assert [(m.role, m.content, m.status) for m in await store.list_messages(user_id, one.id)] == [
        ("user", "hi", "complete"), ("assistant", "hello", "complete")]



async def test_interrupted_replies_are_found_and_ended_once(store: Store) -> None:
    user_id = await _user(store)
    await store.begin_exchange(_exchange(user_id, "c1", 1, new=True))
    await store.begin_exchange(_exchange(user_id, "c1", 2))
    assert await store.finish_reply("a2-c1", "whole", "complete", "stop", 9)
    assert await store.checkpoint_reply("a1-c1", "partial")
    assert [m.id for m in await store.list_streaming_replies(10)] == ["a1-c1"]
    assert await store.interrupt_reply("a1-c1", None, 20_001)
    assert not await store.interrupt_reply("a1-c1", "again", 20_001)  # no longer streaming: nothing written
    assert not await store.interrupt_reply("a2-c1", "not mine to end", 20_001)
    ended = await store.get_message(user_id, "a1-c1")
    assert ended is not None and (ended.status, ended.finish_reason, ended.content, ended.event_count) == (
        "error", "interrupted", "partial", 20_001)
    assert await store.list_streaming_replies(10) == []
    await store.begin_exchange(_exchange(user_id, "c1", 3))
    assert await store.interrupt_reply("a3-c1", "fuller text from the log", 57)
    fuller = await store.get_message(user_id, "a3-c1")
    assert fuller is not None and fuller.content == "fuller text from the log" and fuller.event_count == 57
    complete = await store.get_message(user_id, "a2-c1")
    assert complete is not None and complete.status == "complete" and complete.content == "whole"


async def test_checkpoints_sent_together_each_get_their_own_answer(store: Store) -> None:
    """Many replies checkpoint at once (the SQLite store writes them in one transaction): each lands or is refused
    on its own fence, and a finished reply is never overwritten."""
    user_id = await _user(store)
    for n in range(1, 6):
        await store.begin_exchange(_exchange(user_id, f"c{n}", n, new=True))
    assert await store.checkpoint_reply("a2-c2", "producer 5", fence=5)
    await store.finish_reply("a3-c3", "finished", "complete", "stop", 7)
    answers = await asyncio.gather(*(store.checkpoint_reply(f"a{n}-c{n}", f"text {n}", fence=4) for n in range(1, 6)))
    assert answers == [True, False, False, True, True]
    contents = [(await store.get_message(user_id, f"a{n}-c{n}")).content for n in range(1, 6)]  # type: ignore[union-attr]
    assert contents == ["text 1", "producer 5", "finished", "text 4", "text 5"]


async def test_a_refused_exchange_among_others_at_once_refuses_only_itself(store: Store) -> None:
    """Exchanges written together (one SQLite transaction for all): the duplicate is refused, the others land."""
    user_id = await _user(store)
    await store.begin_exchange(_exchange(user_id, "c1", 1, new=True))
    duplicate = Exchange(user_id, "c1", None, "u-other", "a1-c1", "again", 5.0)
    outcomes = await asyncio.gather(store.begin_exchange(_exchange(user_id, "c2", 2, new=True)),
                                    store.begin_exchange(duplicate),
                                    store.begin_exchange(_exchange(user_id, "c3", 3, new=True)),
                                    return_exceptions=True)
    assert outcomes[0] is None and isinstance(outcomes[1], DuplicateError) and outcomes[2] is None
    assert [len(await store.list_messages(user_id, chat)) for chat in ("c1", "c2", "c3")] == [2, 2, 2]



async def test_the_schema_is_at_this_codes_version_and_a_newer_one_is_refused(store: Store, tmp_path: Path) -> None:
    """Numbered schema steps on every backend: open records the latest version; a database marked newer than the
    code is refused by the next open (the SQLite case in depth: tests/integration/test_schema_steps.py)."""
    from gima_server.store.base import SchemaError

    if isinstance(store, SqliteStore):
        import sqlite3

        from gima_server.store import sqlite_schema

        with sqlite3.connect(tmp_path / "contract.sqlite3") as conn:
            assert sqlite_schema.version(conn) == sqlite_schema.LATEST
            conn.execute(f"PRAGMA user_version = {sqlite_schema.LATEST + 1}")
        newer: Store = SqliteStore(tmp_path / "contract.sqlite3")
    elif isinstance(store, PostgresStore):
        from gima_server.store import postgres_schema

        assert await store.schema_version() == postgres_schema.LATEST and await store.pending_steps() == []
        async with store._conn() as conn:
            await conn.execute("UPDATE gima_schema SET version = $1", postgres_schema.LATEST + 1)
        newer = PostgresStore(store._url)
    else:
        from gima_server.store.mongo import MONGO_LATEST, MongoStore

        assert isinstance(store, MongoStore)
        assert await store.schema_version() == MONGO_LATEST and await store.pending_steps() == []
        await store._db.schema.update_one({"_id": "version"}, {"$set": {"version": MONGO_LATEST + 1}})
        newer = MongoStore(MONGODB_URI, database=store._db.name)
    with pytest.raises(SchemaError, match="newer than this gima-server's"):
        await newer.open()
    await newer.close()


async def _finished_exchange(store: Store, user_id: str, chat_id: str, n: int, question: str, answer: str) -> None:
    ex = Exchange(user_id, chat_id, "title" if n == 1 else None, f"u{n}-{chat_id}", f"a{n}-{chat_id}", question, float(n))
    await store.begin_exchange(ex)
    assert await store.finish_reply(ex.reply_message_id, answer, "complete", "stop", 3)


async def test_search_takes_every_word_literally_and_finds_only_the_callers_finished_messages(store: Store) -> None:
    alice, bob = await _user(store, "a@example.com"), await _user(store, "b@example.com")
    await _finished_exchange(store, alice, "c1", 1, "How do lighthouses work in fog?", "Lighthouses use a lens.")
    await _finished_exchange(store, alice, "c1", 2, "Tell me about the Café Zoë", "It serves crème brûlée.")
    await _finished_exchange(store, bob, "c2", 1, "bob's lighthouses are secret", "ok")
    await store.begin_exchange(Exchange(alice, "c1", None, "u3", "a3", "one more", 3.0))
    assert await store.checkpoint_reply("a3", "streaming lighthouses text")  # not finished: not searchable

    hits = await store.search_messages(alice, ["lighthouses"], 10, 0)
    assert {h.message_id for h in hits} == {"u1-c1", "a1-c1"}
    assert all(h.chat_title == "title" and "\x02" in h.snippet and "\x03" in h.snippet for h in hits)
    assert [h.message_id for h in await store.search_messages(alice, ["lighthouses", "fog"], 10, 0)] == ["u1-c1"]
    assert await store.search_messages(alice, ["lighthouses", "harbour"], 10, 0) == []  # every word is required
    assert {h.message_id for h in await store.search_messages(alice, ["cafe", "zoe"], 10, 0)} == {"u2-c1"}  # diacritics
    assert {h.message_id for h in await store.search_messages(alice, ["CRÈME"], 10, 0)} == {"a2-c1"}
    for syntax in (["NEAR"], ["a", "OR", "b"], ["lighthouse", "s"], ["col"], ["AND"]):
        assert isinstance(await store.search_messages(alice, syntax, 10, 0), list)  # operators are plain words
    assert await store.search_messages(alice, ["secret"], 10, 0) == []  # never another user's
    page = await store.search_messages(alice, ["lighthouses"], 1, 1)
    assert len(page) == 1 and page[0].message_id in {"u1-c1", "a1-c1"}


async def test_the_search_index_follows_a_finished_reply_and_deletes(store: Store) -> None:
    alice = await _user(store)
    await store.begin_exchange(Exchange(alice, "c1", "title", "u1", "a1", "question", 1.0))
    assert await store.search_messages(alice, ["zeppelins"], 10, 0) == []
    assert await store.finish_reply("a1", "zeppelins over the sea", "complete", "stop", 4)
    assert [h.message_id for h in await store.search_messages(alice, ["zeppelins"], 10, 0)] == ["a1"]
    assert await store.delete_chat(alice, "c1")
    assert await store.search_messages(alice, ["zeppelins"], 10, 0) == []


async def test_an_upstreams_nul_character_is_stored_as_a_replacement_not_a_fault(store: Store) -> None:
    alice = await _user(store)
    await store.begin_exchange(Exchange(alice, "c1", "title", "u1", "a1", "question", 1.0))
    assert await store.checkpoint_reply("a1", "half\x00way")
    assert await store.finish_reply("a1", "all\x00done", "complete", "stop", 2)
    reply = await store.get_message(alice, "a1")
    assert reply is not None and reply.content.replace("\ufffd", "\x00") == "all\x00done"


async def test_a_session_is_found_with_its_user_and_not_once_either_is_gone(store: Store) -> None:
    user_id = await _user(store)
    session = await store.create_session(user_id, 60)
    found = await store.get_session_user(session.id)
    assert found is not None and found[0] == await store.get_session(session.id) and found[1].id == user_id
    assert await store.get_session_user("missing") is None
    assert await store.delete_user(user_id)
    assert await store.get_session_user(session.id) is None


async def test_the_reply_records_the_model_asked_and_the_one_that_answered(store: Store) -> None:
    user_id = await _user(store)
    asked = Exchange(user_id, "c1", "t", "u1", "a1", "q", 1.0, model="fast")
    await store.begin_exchange(asked)
    assert (await store.get_message(user_id, "a1")).model == "fast"  # type: ignore[union-attr]
    assert (await store.get_message(user_id, "u1")).model is None  # type: ignore[union-attr]
    await store.finish_reply("a1", "text", "complete", "stop", 5)  # no fallback: the model stays
    assert (await store.get_message(user_id, "a1")).model == "fast"  # type: ignore[union-attr]
    await store.begin_exchange(Exchange(user_id, "c1", None, "u2", "a2", "q", 2.0, model="fast"))
    await store.finish_reply("a2", "text", "complete", "stop", 5, model="careful")  # a fallback answered
    message = await store.get_message(user_id, "a2")
    assert message is not None and message.model == "careful" and message.public()["model"] == "careful"


async def test_vectors_wait_for_finished_messages_and_stay_private(store: Store) -> None:
    from gima_server.semantic.vectors import pack

    alice, bob = await _user(store, "a@example.com"), await _user(store, "b@example.com")
    await store.begin_exchange(_exchange(alice, "c1", 1, new=True))  # u1-c1 finished, a1-c1 still streaming
    await store.begin_exchange(_exchange(bob, "c2", 1, new=True))
    waiting = await store.messages_to_embed("m", 10)
    assert sorted(row[0] for row in waiting) == ["u1-c1", "u1-c2"]  # streaming and empty messages wait
    assert [row[0] for row in await store.messages_to_embed("m", 10, alice)] == ["u1-c1"]
    assert await store.save_vectors("m", [("u1-c1", pack([1.0, 0.0])), ("gone", pack([0.0, 1.0]))]) == 1
    assert await store.save_vectors("m", [("u1-c1", pack([0.0, 1.0]))]) == 0  # kept once per model
    assert [row[0] for row in await store.messages_to_embed("m", 10)] == ["u1-c2"]
    assert [row[0] for row in await store.messages_to_embed("other-model", 10, alice)] == ["u1-c1"]
    assert [key for key, _ in await store.user_vectors(alice, "m")] == ["u1-c1"]
    assert await store.user_vectors(bob, "m") == []
    hits = await store.search_hits(alice, ["u1-c2", "u1-c1"])  # bob's id is not alice's to see
    assert [(h.message_id, h.chat_title, h.snippet) for h in hits] == [("u1-c1", "title", "question 1")]
    await store.finish_reply("a1-c1", "an answer", "complete", "stop", 3)
    assert [row[0] for row in await store.messages_to_embed("m", 10, alice)] == ["a1-c1"]


async def test_a_users_vectors_go_with_their_messages(store: Store) -> None:
    from gima_server.semantic.vectors import pack

    alice = await _user(store, "a@example.com")
    await store.begin_exchange(_exchange(alice, "c1", 1, new=True))
    await store.begin_exchange(_exchange(alice, "c2", 1, new=True))
    await store.save_vectors("m", [("u1-c1", pack([1.0, 0.0])), ("u1-c2", pack([0.0, 1.0]))])
    assert await store.delete_chat(alice, "c1")
    assert [key for key, _ in await store.user_vectors(alice, "m")] == ["u1-c2"]
    assert await store.delete_user(alice)
    assert await store.user_vectors(alice, "m") == []


async def test_recent_messages_page_newest_first_in_send_order_and_stay_private(store: Store) -> None:
    alice, bob = await _user(store, "a@example.com"), await _user(store, "b@example.com")
    await store.begin_exchange(_exchange(alice, "c1", 1, new=True))
    await store.begin_exchange(_exchange(alice, "c1", 3))
    await store.begin_exchange(_exchange(alice, "c1", 2))  # sent before 3, stored after it
    await store.begin_exchange(_exchange(alice, "c2", 4, new=True))  # another chat: never in c1's pages
    newest = ["a3-c1", "u3-c1", "a2-c1", "u2-c1", "a1-c1", "u1-c1"]
    assert [m.id for m in await store.recent_messages(alice, "c1", 10)] == newest
    first = await store.recent_messages(alice, "c1", 4)
    assert [m.id for m in first] == newest[:4]
    assert [m.id for m in await store.recent_messages(alice, "c1", 4, first[-1].id)] == newest[4:]
    assert await store.recent_messages(alice, "c1", 4, "u1-c1") == []
    assert await store.recent_messages(bob, "c1", 10) == []
    assert await store.recent_messages(alice, "c1", 10, "u4-c2") == []  # a cursor from another chat finds nothing


async def test_the_reply_records_how_many_earlier_messages_its_request_carried(store: Store) -> None:
    user_id = await _user(store)
    await store.begin_exchange(Exchange(user_id, "c1", "t", "u1", "a1", "q", 1.0, context_messages=12))
    reply = await store.get_message(user_id, "a1")
    assert reply is not None and reply.context_messages == 12 and reply.public()["contextMessages"] == 12
    question = await store.get_message(user_id, "u1")
    assert question is not None and question.context_messages is None and "contextMessages" not in question.public()
    await store.finish_reply("a1", "text", "complete", "stop", 5)
    assert (await store.recent_messages(user_id, "c1", 1))[0].context_messages == 12


async def test_a_finished_reply_queues_a_delivery_for_each_endpoint_that_takes_its_type(store: Store) -> None:
    from gima_server.webhooks.model import Endpoint, reply_event

    now = time.time()
    await store.save_webhook_endpoint(Endpoint("all", "http://a.example/hook", "whsec_" + "A" * 32, created_at=now))
    await store.save_webhook_endpoint(Endpoint("failures", "http://b.example/hook", "whsec_" + "B" * 32,
                                               ("reply.failed",), created_at=now + 1))
    assert [e.id for e in await store.list_webhook_endpoints()] == ["all", "failures"]
    user_id = await _user(store)  # user.created: to "all" only
    await store.begin_exchange(_exchange(user_id, "c1", 1, new=True))
    hook = reply_event("a1-c1", "c1", user_id, "m", "complete", "stop", None, now)
    assert await store.finish_reply("a1-c1", "text", "complete", "stop", 5, webhook=hook)
    assert not await store.finish_reply("a1-c1", "late", "complete", "stop", 5, fence=-1, webhook=hook)  # refused
    queued = await store.list_webhook_deliveries("all", 10)
    assert sorted(d.type for d in queued) == ["reply.completed", "user.created"]
    assert await store.list_webhook_deliveries("failures", 10) == []
    completed = next(d for d in queued if d.type == "reply.completed")
    assert completed.body == hook[1] and completed.id.startswith("msg_") and completed.status == "pending"
    await store.begin_exchange(_exchange(user_id, "c1", 2))
    assert await store.interrupt_reply("a2-c1", None, 9)  # a reply whose process died: reply.failed to both
    failed = await store.list_webhook_deliveries("failures", 10)
    assert [d.type for d in failed] == ["reply.failed"]
    assert json.loads(failed[0].body)["data"]["finishReason"] == "interrupted"
    assert await store.delete_user(user_id)
    assert [d.type for d in await store.list_webhook_deliveries("all", 10)].count("user.deleted") == 1


async def test_deliveries_are_claimed_once_per_lease_and_record_each_try(store: Store) -> None:
    from gima_server.webhooks.model import Endpoint

    now = time.time()
    await store.save_webhook_endpoint(Endpoint("e1", "http://a.example/hook", "whsec_" + "A" * 32, created_at=now))
    await _user(store, "a@example.com")
    await _user(store, "b@example.com")
    claimed = await store.claim_webhook_deliveries(time.time(), 30, 10)
    assert len(claimed) == 2 and {d.url for d in claimed} == {"http://a.example/hook"}
    assert claimed[0].secret.startswith("whsec_")
    assert await store.claim_webhook_deliveries(time.time(), 30, 10) == []  # held by the lease
    first, second = claimed
    await store.record_webhook_try(first.id, True, None, 200, None)
    await store.record_webhook_try(second.id, False, time.time() - 1, 500, "HTTP 500")
    again = await store.claim_webhook_deliveries(time.time(), 30, 10)
    assert [d.id for d in again] == [second.id] and again[0].attempts == 1  # due again, the same id
    await store.record_webhook_try(second.id, False, None, None, "timeout")  # given up
    assert await store.claim_webhook_deliveries(time.time() + 3600, 30, 10) == []
    states = {d.id: (d.status, d.attempts, d.last_status, d.last_error)
              for d in await store.list_webhook_deliveries("e1", 10)}
    assert states == {first.id: ("delivered", 1, 200, None), second.id: ("failed", 2, None, "timeout")}
    assert await store.remove_webhook_endpoint("e1") and not await store.remove_webhook_endpoint("e1")
    assert await store.list_webhook_deliveries("e1", 10) == []


async def test_old_deliveries_are_pruned_once_delivered_or_given_up_and_pending_ones_never(store: Store) -> None:
    from gima_server.webhooks.model import Endpoint

    await store.save_webhook_endpoint(Endpoint("e1", "http://a.example/hook", "whsec_" + "A" * 32, created_at=1.0))
    for n in range(5):
        await _user(store, f"u{n}@example.com")  # a user.created delivery each
    delivered, failed, *pending = await store.claim_webhook_deliveries(time.time(), 30, 10)
    await store.record_webhook_try(delivered.id, True, None, 200, None)
    await store.record_webhook_try(failed.id, False, None, None, "timeout")  # given up
    await store.record_webhook_try(pending[0].id, False, time.time() + 60, 500, "HTTP 500")  # to be tried again
    made_at = max(d.created_at for d in await store.list_webhook_deliveries("e1", 10))
    assert await store.prune_webhook_deliveries(made_at - 3600, 100) == 0  # none is that old
    assert await store.prune_webhook_deliveries(made_at + 1, 1) == 1  # at most the limit
    assert await store.prune_webhook_deliveries(made_at + 1, 100) == 1
    assert await store.prune_webhook_deliveries(made_at + 1, 100) == 0
    left = {d.id: d.status for d in await store.list_webhook_deliveries("e1", 10)}
    assert left == {d.id: "pending" for d in pending}  # the backlog is kept, however old
    assert await store.count_pending_webhook_deliveries() == 3


async def test_a_claim_leaves_out_the_endpoints_it_is_told_to_skip(store: Store) -> None:
    from gima_server.webhooks.model import Endpoint

    for endpoint_id in ("busy", "idle"):
        await store.save_webhook_endpoint(Endpoint(endpoint_id, f"http://{endpoint_id}.example/hook", "whsec_" + "A" * 32,
                                                   created_at=1.0))
    for n in range(3):
        await _user(store, f"skip{n}@example.com")  # a user.created delivery for each endpoint
    now = time.time()
    claimed = await store.claim_webhook_deliveries(now, 30, 10, skip_endpoints=["busy"])
    assert sorted(d.endpoint_id for d in claimed) == ["idle"] * 3
    assert sorted(d.endpoint_id for d in await store.claim_webhook_deliveries(now, 30, 10)) == ["busy"] * 3


async def test_an_expired_lease_lets_another_process_claim_the_delivery(store: Store) -> None:
    from gima_server.webhooks.model import Endpoint

    await store.save_webhook_endpoint(Endpoint("e1", "http://a.example/hook", "whsec_" + "A" * 32, created_at=1.0))
    await _user(store)
    now = time.time()
    held = await store.claim_webhook_deliveries(now, 5, 10)
    assert len(held) == 1
    assert await store.claim_webhook_deliveries(now + 4, 5, 10) == []
    assert [d.id for d in await store.claim_webhook_deliveries(now + 6, 5, 10)] == [held[0].id]


async def test_a_plan_set_later_wins_over_one_set_earlier_whatever_the_order_they_arrive_in(store: Store) -> None:
    user_id = await _user(store)
    assert (await store.get_user(user_id)).plan is None  # type: ignore[union-attr]
    assert await store.set_plan(user_id, "pro", 200.0)
    assert not await store.set_plan(user_id, "free", 100.0)  # an older change, arriving late
    assert (await store.get_user(user_id)).plan == "pro"  # type: ignore[union-attr]
    assert await store.set_plan(user_id, None, 300.0)
    assert (await store.get_user(user_id)).plan is None  # type: ignore[union-attr]
    assert not await store.set_plan("no-such-user", "pro", 400.0)
    session = await store.create_session(user_id, 60)
    await store.set_plan(user_id, "pro", 500.0)
    found = await store.get_session_user(session.id)
    assert found is not None and found[1].plan == "pro"  # what every request's sign-in sees


async def test_expired_guests_each_queue_a_user_deleted_webhook(store: Store) -> None:
    from gima_server.webhooks.model import Endpoint

    await store.save_webhook_endpoint(Endpoint("e1", "http://a.example/hook", "whsec_" + "A" * 32,
                                               ("user.deleted",), created_at=1.0))
    guests = [(await store.create_user(f"g{n}@guest.invalid", "", "guest", ("guest",))).id for n in range(2)]
    await _user(store)  # a user who is not a guest stays
    assert await store.delete_guests(time.time() + 1) == 2
    deleted = await store.list_webhook_deliveries("e1", 10)
    assert sorted(json.loads(d.body)["data"]["userId"] for d in deleted) == sorted(guests)
