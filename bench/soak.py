"""Memory under sustained load: replies started and finished as fast as possible, round after round, and the
server's RSS after each round. A server that keeps anything per finished reply beyond its replay budget climbs.

  python -m bench.soak                              # 40,000 replies: 10 rounds of 4,000, 100 at a time
  python -m bench.soak --rounds 4 --per-round 2000  # shorter
  python -m bench.soak --tracemalloc                # also: where the growth is (top allocation sites)
  python -m bench.soak --env GIMA_REPLAY_RETENTION_S=5

The server is pinned to core 0 and this load generator to core 1 (taskset / sched_setaffinity). Each of the
concurrent clients is its own user (one reply per session runs at a time) on a keep-alive connection, as a
browser's or an SDK's pool would be. After each round the server is given a moment to settle (its replay
window keeps the newest finished replies on purpose: GIMA_REPLAY_RETENTION_S / _MB), then its RSS is read.
PASS: the slope over the last half of the rounds is under 1 KiB per reply, and the peak stays under the
RSS at start + GIMA_REPLAY_RETENTION_MB + 200 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import aiohttp

from .common import free_port, rss_kib
from .idle_memory import _serve_with_snapshots, _snapshot, snapshot_written
from .load import _seed, _wait_healthy
from .paced import _pinned

DEFAULT_RETENTION_MB = 256


async def _client(base: str, token: str, replies: int, session: aiohttp.ClientSession) -> tuple[int, int]:
    """Send `replies` messages one after another, each read to its last event; (complete, failed)."""
    complete = failed = 0
    headers = {"Authorization": f"Bearer {token}"}
    for i in range(replies):
        try:
            async with session.post(f"{base}/api/chat/stream", json={"content": f"soak message {i}"},
                                    headers=headers) as resp:
                body = await resp.read()
            if resp.status == 200 and b"event: done" in body:
                complete += 1
            else:
                failed += 1
        except aiohttp.ClientError:
            failed += 1
    return complete, failed


async def _round(base: str, tokens: list[str], per_round: int) -> tuple[int, int, float]:
    concurrency = len(tokens)
    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        shares = [per_round // concurrency + (1 if i < per_round % concurrency else 0) for i in range(concurrency)]
        results = await asyncio.gather(*(_client(base, t, n, session) for t, n in zip(tokens, shares, strict=True)))
    return sum(c for c, _ in results), sum(f for _, f in results), time.perf_counter() - started


async def _healthy(base: str, proc: subprocess.Popen[bytes]) -> None:
    """Up to three minutes: importing the server under tracemalloc takes a minute on this machine."""
    deadline = time.monotonic() + 180
    while True:
        try:
            await _wait_healthy(base, proc)
            return
        except RuntimeError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise


def _top(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, top: int, replies: int) -> list[str]:
    """The allocation sites that grew most between two snapshots, per reply."""
    stats = after.compare_to(before, "traceback")
    lines = []
    for stat in stats[:top]:
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in list(stat.traceback)[::-1][:4])
        lines.append(f"{stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+8d} blocks "
                     f"({stat.size_diff / max(replies, 1):+7.1f} B/reply)  {where}")
    return lines


async def soak(rounds: int, per_round: int, concurrency: int, settle_s: float, words: int, env: dict[str, str],
               trace: bool, top: int) -> dict[str, object]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        tokens = await _seed(Path(tmp), concurrency)
        snaps = Path(tmp) / "snaps"
        snaps.mkdir()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("GIMA_")}
        full_env.update({"GIMA_DATA_DIR": tmp, "GIMA_LOG_LEVEL": "warning", "GIMA_RATE_LIMITS": "off",
                         "GIMA_DEMO_TOKENS_PER_S": "0", "GIMA_DEMO_FIRST_TOKEN_MS": "0",
                         "GIMA_DEMO_REPLY_WORDS": str(words), "GIMA_DRAIN_S": "1", **env})
        python = [sys.executable, "-X", "tracemalloc=6"] if trace else [sys.executable]
        argv = [*python, "-m", "bench.soak", "--serve", str(snaps), "serve", "--port", str(port)]
        proc = subprocess.Popen(_pinned(0, argv), env=full_env, stdout=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        rows: list[dict[str, object]] = []
        first_snapshot: tracemalloc.Snapshot | None = None
        growth: list[str] = []
        try:
            await _healthy(base, proc)
            start_kib = rss_kib(proc.pid)
            for n in range(1, rounds + 1):
                complete, failed, elapsed = await _round(base, tokens, per_round)
                await asyncio.sleep(settle_s)
                row = {"round": n, "replies": n * per_round, "complete": complete, "failed": failed,
                       "replies_per_s": round(complete / elapsed), "rss_mib": round(rss_kib(proc.pid) / 1024, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
                if trace and n == 1:
                    first_snapshot = await _snapshot(proc.pid, snaps, 1)
            if trace and first_snapshot is not None and rounds > 1:
                replies = (rounds - 1) * per_round
                last = await _snapshot(proc.pid, snaps, 2)
                growth = ["growth from round 1 to the end, as the server holds it:", *_top(first_snapshot, last, top, replies)]
                os.kill(proc.pid, signal.SIGUSR2)  # a full collection, then snapshot 3
                collected = await snapshot_written(snaps, 3)
                growth += [f"after gc.collect() ({(snaps / 'collected').read_text()} objects only the cycle collector "
                           "could free):", *_top(first_snapshot, collected, top, replies)]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
    half = rows[len(rows) // 2:] if len(rows) > 1 else rows
    slope_kib = ((float(half[-1]["rss_mib"]) - float(half[0]["rss_mib"])) * 1024  # type: ignore[arg-type]
                 / max(int(half[-1]["replies"]) - int(half[0]["replies"]), 1))  # type: ignore[call-overload]
    peak_mib = max(float(r["rss_mib"]) for r in rows)  # type: ignore[arg-type]
    retention_mb = float(env.get("GIMA_REPLAY_RETENTION_MB", DEFAULT_RETENTION_MB))
    ceiling_mib = start_kib / 1024 + retention_mb + 200
    summary = {
        "start_rss_mib": round(start_kib / 1024, 1), "peak_rss_mib": peak_mib, "ceiling_mib": round(ceiling_mib, 1),
        "slope_last_half_bytes_per_reply": round(slope_kib * 1024),
        "failed": sum(int(r["failed"]) for r in rows),  # type: ignore[call-overload]
        "slope": "PASS" if slope_kib < 1 else "FAIL", "peak": "PASS" if peak_mib < ceiling_mib else "FAIL",
    }
    print(json.dumps(summary), flush=True)
    for line in growth:
        print(line)
    return summary


def _serve(snapshot_dir: str, argv: list[str]) -> None:
    """In the server process: idle_memory's snapshot on SIGUSR1; on SIGUSR2 a full garbage collection first, and
    its count written next to the snapshot (what only the cycle collector would have freed)."""
    import gc

    def collect_then_dump(*_: object) -> None:
        found = gc.collect()
        (Path(snapshot_dir) / "collected").write_text(str(found))
        os.kill(os.getpid(), signal.SIGUSR1)

    signal.signal(signal.SIGUSR2, collect_then_dump)
    _serve_with_snapshots(snapshot_dir, argv)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":  # inside the server process (see idle_memory)
        _serve(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--settle-s", type=float, default=8.0, help="pause after each round before RSS is read")
    parser.add_argument("--words", type=int, default=40, help="demo reply length (about 4 events per word)")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server (repeatable)")
    parser.add_argument("--tracemalloc", action="store_true", help="run the server under tracemalloc; print growth")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the load generator on the other core
    env = dict(item.split("=", 1) for item in args.env)
    started = time.perf_counter()
    asyncio.run(soak(args.rounds, args.per_round, args.concurrency, args.settle_s, args.words, env, args.tracemalloc,
                     args.top))
    print(f"took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
