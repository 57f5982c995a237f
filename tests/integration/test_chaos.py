"""The short chaos run (bench/chaos.py): two processes behind nginx with Redis, clients streaming, cutting,
resuming and cancelling while a process is SIGKILLed, Redis is paused and killed, and connections are cut —
no event lost or repeated, every reply ended, and a new reply streams again after each fault."""

from __future__ import annotations

from pathlib import Path

from bench.chaos import failures, run


async def test_no_fault_loses_or_repeats_an_event_or_leaves_a_reply_unended(tmp_path: Path) -> None:
    rows = await run(tmp_path, processes=2, users=8, fault_s=2.5)
    assert [row["fault"] for row in rows] == ["none (baseline)", "a process SIGKILLed", "Redis paused (SIGSTOP)",
                                              "Redis killed, restarted empty", "client connections cut mid-reply"]
    assert all(row["replies"] > 0 for row in rows), rows
    assert failures(rows) == [], rows
    killed = rows[1]
    assert sum(killed["ends"].values()) == killed["replies"]  # each reply on the killed process ended, somehow
