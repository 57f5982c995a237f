"""The short chaos run (bench/chaos.py), in a process of its own as an operator runs it: two processes behind nginx
with Redis and PostgreSQL, an upstream that speaks OpenAI's wire format, clients streaming, cutting, resuming and
cancelling while a process is SIGKILLed, Redis is paused, killed and slowed (or, with Sentinel, its master killed
and a replica promoted), the upstream is slowed, PostgreSQL is stopped and connections are cut — no event lost or
repeated, every reply ended, and a new reply streams again after each fault."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _chaos(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    done = subprocess.run([sys.executable, "-m", "bench.chaos", "--short", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, rows, done.stdout + done.stderr[-3000:]


def test_no_fault_loses_or_repeats_an_event_or_leaves_a_reply_unended() -> None:
    code, rows, output = _chaos("--store", "postgres")
    assert [row["fault"] for row in rows] == [
        "none (baseline)", "a process SIGKILLed", "Redis paused (SIGSTOP)", "Redis killed, restarted empty",
        "Redis slowed (+100 ms a round trip)", "the upstream slowed (+600 ms a round trip)", "PostgreSQL stopped",
        "client connections cut mid-reply"], output
    assert all(row["replies"] > 0 for row in rows), output
    assert all(row["lost"] == row["repeated"] == row["not_ended"] == 0 for row in rows), output
    assert code == 0 and "PASS: no event lost or repeated" in output, output
    killed = rows[1]
    assert sum(killed["ends"].values()) == killed["replies"]  # each reply on the killed process ended, somehow


def test_with_sentinel_a_failover_loses_or_repeats_nothing() -> None:
    code, rows, output = _chaos("--store", "sqlite", "--sentinel")
    assert "the Redis master SIGKILLed, a replica promoted" in [row["fault"] for row in rows], output
    assert all(row["replies"] > 0 for row in rows), output
    assert code == 0 and all(row["lost"] == row["repeated"] == 0 for row in rows), output
