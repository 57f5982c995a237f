"""The short chaos run (bench/chaos.py): two processes behind nginx with Redis and PostgreSQL, an upstream that
speaks OpenAI's wire format, clients streaming, cutting, resuming and cancelling while a process is SIGKILLed,
Redis is paused, killed and slowed, the upstream is slowed, PostgreSQL is stopped and connections are cut — no
event lost or repeated, every reply ended, and a new reply streams again after each fault."""

from __future__ import annotations

from pathlib import Path

from bench.chaos import failures, run


async def test_no_fault_loses_or_repeats_an_event_or_leaves_a_reply_unended(tmp_path: Path) -> None:
    rows = await run(tmp_path, processes=2, users=8, fault_s=2.5, store="postgres")
    assert [row["fault"] for row in rows] == [
        "none (baseline)", "a process SIGKILLed", "Redis paused (SIGSTOP)", "Redis killed, restarted empty",
        "Redis slowed (+100 ms a round trip)", "the upstream slowed (+600 ms a round trip)", "PostgreSQL stopped",
        "client connections cut mid-reply"]
    assert all(row["replies"] > 0 for row in rows), rows
    assert failures(rows) == [], rows
    killed = rows[1]
    assert sum(killed["ends"].values()) == killed["replies"]  # each reply on the killed process ended, somehow


async def test_with_sentinel_a_failover_loses_or_repeats_nothing(tmp_path: Path) -> None:
    rows = await run(tmp_path, processes=2, users=6, fault_s=2.5, store="sqlite", sentinel=True)
    assert "the Redis master SIGKILLed, a replica promoted" in [row["fault"] for row in rows]
    assert all(row["replies"] > 0 for row in rows), rows
    assert failures(rows) == [], rows
