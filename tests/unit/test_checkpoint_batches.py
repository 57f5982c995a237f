"""PostgreSQL's checkpoint batches (store/postgres_batch.py): what waits together goes in one statement, a newer
checkpoint of a reply replaces its older one, a newer producer's text is never replaced by an older's, and a
failed statement fails exactly the callers in it."""

from __future__ import annotations

import asyncio

import pytest

from gima_server.store.postgres_batch import CheckpointBatcher


class Recorder:
    def __init__(self, fail_first: bool = False) -> None:
        self.batches: list[list[tuple[str, str, int]]] = []
        self.fail_first = fail_first

    async def write(self, rows: list[tuple[str, str, int]]) -> set[str]:
        self.batches.append(rows)
        await asyncio.sleep(0.01)
        if self.fail_first and len(self.batches) == 1:
            raise ConnectionError("lost")
        return {message_id for message_id, _, _ in rows if message_id != "ended"}


async def test_checkpoints_waiting_together_go_in_one_statement_and_each_gets_its_answer() -> None:
    recorder = Recorder()
    batcher = CheckpointBatcher(recorder.write)
    first = batcher.submit("a", "a1", 0)  # starts a batch of its own
    await asyncio.sleep(0)
    later = [batcher.submit(m, f"{m}1", 0) for m in ("b", "c", "ended")]  # wait while it is written
    assert await first is True
    assert [await f for f in later] == [True, True, False]  # "ended": the statement updated no row for it
    assert [len(b) for b in recorder.batches] == [1, 3]


async def test_a_newer_checkpoint_replaces_the_older_and_an_older_producer_never_wins() -> None:
    recorder = Recorder()
    batcher = CheckpointBatcher(recorder.write)
    blocker = batcher.submit("x", "x", 0)
    await asyncio.sleep(0)
    older, newer = batcher.submit("a", "a short", 1), batcher.submit("a", "a short and longer", 1)
    stale = batcher.submit("b", "new producer", 5)
    stale_older = batcher.submit("b", "old producer", 3)
    assert await blocker and await older and await newer and await stale and await stale_older
    assert sorted(recorder.batches[1]) == [("a", "a short and longer", 1), ("b", "new producer", 5)]


async def test_a_failed_statement_fails_its_callers_and_the_next_batch_goes_on() -> None:
    recorder = Recorder(fail_first=True)
    batcher = CheckpointBatcher(recorder.write)
    failing = batcher.submit("a", "a1", 0)
    await asyncio.sleep(0)
    after = batcher.submit("b", "b1", 0)
    with pytest.raises(ConnectionError):
        await failing
    assert await after is True
    await batcher.close()


async def test_lookups_asked_while_one_is_on_its_way_are_answered_by_one_read() -> None:
    from gima_server.store.postgres_batch import LookupBatcher

    reads: list[list[str]] = []

    async def fetch(keys: list[str]) -> dict[str, str]:
        reads.append(keys)
        await asyncio.sleep(0.01)
        return {key: key.upper() for key in keys if key != "gone"}

    lookups: LookupBatcher[str] = LookupBatcher(fetch)
    first = lookups.get("a")
    await asyncio.sleep(0)
    rest = [lookups.get(k) for k in ("b", "c", "b", "gone")]
    assert await first == "A"
    assert [await f for f in rest] == ["B", "C", "B", None]
    assert reads == [["a"], ["b", "c", "gone"]]
