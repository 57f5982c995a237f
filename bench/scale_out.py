"""Two gima-server processes on one Redis: a subscriber on the producing process vs one on the other process.

  python -m bench.scale_out                 # 200 concurrent replies at 50 tokens/s
  python -m bench.scale_out --replies 500

Process A runs every reply (each POSTed by its own user); as soon as a reply's `meta` arrives, a second
subscriber reads the same reply through process B, which has it only through Redis Streams. Reported:
events/s and time to first event for both subscribers, how far B's events lag A's (same event ids), the Redis
round trips per event (publish, heartbeat, read and owner checks, from both processes' /metrics), and the Redis
memory a finished reply takes while it is retained. Servers and redis-server are pinned to core 0 and this load
generator to core 1 when `taskset` exists. Every client checks ids 1..n (no gap, no duplicate).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from .common import free_port
from .load import _seed, _wait_healthy

_TASKSET = shutil.which("taskset")


def _pinned(core: int, argv: list[str]) -> list[str]:
    return [_TASKSET, "-c", str(core), *argv] if _TASKSET else argv


@dataclass
class Seen:
    started: float = 0.0
    arrivals: dict[int, float] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)
    message_id: str = ""

    @property
    def ttfe(self) -> float | None:
        return min(self.arrivals.values()) - self.started if self.arrivals else None

    @property
    def complete(self) -> bool:
        return self.ids == list(range(1, len(self.ids) + 1)) and bool(self.ids)


_ID = re.compile(rb"(?m)^id: (\d+)$")
_MESSAGE_ID = re.compile(rb'"messageId":"([^"]+)"')


async def _read(resp: aiohttp.ClientResponse, seen: Seen, on_first: asyncio.Event | None = None) -> None:
    """Note each event id's arrival time; complete frames are scanned in one regex pass per chunk (cheap, so
    that the load generator is not what the bench measures)."""
    buffer = b""
    async for chunk in resp.content.iter_any():
        now = time.perf_counter()
        buffer += chunk
        cut = buffer.rfind(b"\n\n")
        if cut < 0:
            continue
        complete, buffer = buffer[: cut + 2], buffer[cut + 2:]
        if not seen.message_id:
            found = _MESSAGE_ID.search(complete)
            seen.message_id = found.group(1).decode() if found else ""
        for match in _ID.finditer(complete):
            event_id = int(match.group(1))
            seen.ids.append(event_id)
            seen.arrivals[event_id] = now
        if on_first is not None and seen.ids:
            on_first.set()


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


async def _metrics(session: aiohttp.ClientSession, base: str) -> dict[str, float]:
    async with session.get(f"{base}/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("gima_log_redis_round_trips_total", "gima_log_events_published_total",
                            "gima_log_events_read_total")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


async def _redis_memory(port: int, message_ids: list[str]) -> dict[str, float]:
    from redis.asyncio import Redis

    from gima_server import redis_keys

    client = Redis.from_url(f"redis://127.0.0.1:{port}/0")
    try:
        sizes, events = [], []
        for message_id in message_ids:
            keys = redis_keys.reply_keys(message_id)[:3]
            sizes.append(sum([(await client.memory_usage(k)) or 0 for k in keys]))
            events.append(await client.xlen(keys[0]))
    finally:
        await client.aclose()
    per_reply = sum(sizes) / len(sizes)
    return {"bytes_per_reply": round(per_reply), "bytes_per_event": round(per_reply / (sum(events) / len(events)), 1)}


async def run(replies: int, tokens_per_s: float, words: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        redis_port = free_port()
        redis = subprocess.Popen(_pinned(0, [shutil.which("redis-server") or "redis-server", "--port", str(redis_port),
                                             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp]),
                                 stdout=subprocess.DEVNULL)
        tokens = await _seed(Path(tmp), replies)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIMA_")}
        env.update({"GIMA_DATA_DIR": tmp, "GIMA_LOG_LEVEL": "warning", "GIMA_RATE_LIMITS": "off",
                    "GIMA_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "GIMA_DEMO_TOKENS_PER_S": str(tokens_per_s),
                    "GIMA_DEMO_FIRST_TOKEN_MS": "0", "GIMA_DEMO_REPLY_WORDS": str(words), "GIMA_DRAIN_S": "1",
                    "GIMA_MAX_ACTIVE_REPLIES": str(replies * 2), "GIMA_MAX_REPLIES_PER_USER": "4"})
        ports = [free_port(), free_port()]
        procs = []
        try:
            for port in ports:
                procs.append(subprocess.Popen(_pinned(0, [sys.executable, "-m", "gima_server", "--port", str(port)]),
                                              env=env, stdout=subprocess.DEVNULL))
                await _wait_healthy(f"http://127.0.0.1:{port}", procs[-1])
            a, b = (f"http://127.0.0.1:{port}" for port in ports)
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as session:
                before = {base: await _metrics(session, base) for base in (a, b)}
                local, remote, message_ids = [Seen() for _ in range(replies)], [Seen() for _ in range(replies)], []

                async def one(i: int) -> None:
                    await asyncio.sleep(i / replies)  # a one-second ramp
                    headers = {"Authorization": f"Bearer {tokens[i]}"}
                    first = asyncio.Event()
                    local[i].started = time.perf_counter()
                    resp = await session.post(f"{a}/api/chat/stream", json={"content": f"reply number {i}"},
                                              headers=headers)
                    producer = asyncio.create_task(_read(resp, local[i], first))
                    await first.wait()
                    message_ids.append(local[i].message_id)
                    remote[i].started = time.perf_counter()
                    url = f"{b}/api/chat/streams/{local[i].message_id}/events"
                    async with session.get(url, headers=headers) as other:
                        await _read(other, remote[i])
                    await producer

                started = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(replies)))
                elapsed = time.perf_counter() - started
                after = {base: await _metrics(session, base) for base in (a, b)}
            trips = {k: v for base in (a, b) for k, v in _delta(after[base], before[base]).items()}
            published = sum(v for k, v in _delta(after[a], before[a]).items() if "published" in k)
            round_trips = sum(v for base in (a, b) for k, v in _delta(after[base], before[base]).items()
                              if k.startswith("gima_log_redis_round_trips_total"))
            memory = await _redis_memory(redis_port, message_ids[:20])
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=60)
            redis.terminate()
            redis.wait(timeout=10)
    lags = [there.arrivals[e] - here.arrivals[e] for here, there in zip(local, remote, strict=True) for e in there.arrivals
            if e in here.arrivals]
    total_local, total_remote = sum(len(s.ids) for s in local), sum(len(s.ids) for s in remote)
    ttfe_local = [s.ttfe for s in local if s.ttfe is not None]
    ttfe_remote = [s.ttfe for s in remote if s.ttfe is not None]
    return {
        "replies": replies, "tokens_per_s": tokens_per_s, "elapsed_s": round(elapsed, 2), "pinned": bool(_TASKSET),
        "events_per_s": {"producing_process": round(total_local / elapsed), "other_process": round(total_remote / elapsed)},
        "ttfe_ms": {
            "producing_process": {"p50": _pct(ttfe_local, 0.5), "p99": _pct(ttfe_local, 0.99)},
            "other_process": {"p50": _pct(ttfe_remote, 0.5), "p99": _pct(ttfe_remote, 0.99)},
        },
        "other_process_lag_ms": {"p50": _pct(lags, 0.5), "p90": _pct(lags, 0.9), "p99": _pct(lags, 0.99)},
        "complete": {"producing_process": sum(s.complete for s in local), "other_process": sum(s.complete for s in remote)},
        "redis_round_trips_per_event": round(round_trips / published, 4) if published else None,
        "round_trips_by_op": {k.split('op="')[1].rstrip('"}'): v for k, v in trips.items() if 'op="' in k},
        "events_published": published,
        "redis_memory_finished_reply": memory,
    }


async def reference(replies: int, tokens_per_s: float, words: int) -> dict[str, object]:
    """The same replies on one process without Redis, read only by their POST: what publishing costs."""
    with tempfile.TemporaryDirectory(prefix="bench-ref-") as tmp:
        tokens = await _seed(Path(tmp), replies)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIMA_")}
        env.update({"GIMA_DATA_DIR": tmp, "GIMA_LOG_LEVEL": "warning", "GIMA_RATE_LIMITS": "off",
                    "GIMA_DEMO_TOKENS_PER_S": str(tokens_per_s), "GIMA_DEMO_FIRST_TOKEN_MS": "0",
                    "GIMA_DEMO_REPLY_WORDS": str(words), "GIMA_DRAIN_S": "1",
                    "GIMA_MAX_ACTIVE_REPLIES": str(replies * 2)})
        port = free_port()
        proc = subprocess.Popen(_pinned(0, [sys.executable, "-m", "gima_server", "--port", str(port)]), env=env,
                                stdout=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            await _wait_healthy(base, proc)
            seen = [Seen() for _ in range(replies)]
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                             timeout=aiohttp.ClientTimeout(total=300)) as session:
                async def one(i: int) -> None:
                    await asyncio.sleep(i / replies)
                    seen[i].started = time.perf_counter()
                    async with session.post(f"{base}/api/chat/stream", json={"content": f"reply number {i}"},
                                            headers={"Authorization": f"Bearer {tokens[i]}"}) as resp:
                        await _read(resp, seen[i])

                started = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(replies)))
                elapsed = time.perf_counter() - started
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    ttfe = [s.ttfe for s in seen if s.ttfe is not None]
    return {"events_per_s": round(sum(len(s.ids) for s in seen) / elapsed),
            "ttfe_ms": {"p50": _pct(ttfe, 0.5), "p99": _pct(ttfe, 0.99)}, "complete": sum(s.complete for s in seen)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=200)
    parser.add_argument("--tokens-per-s", type=float, default=50.0)
    parser.add_argument("--words", type=int, default=100)
    args = parser.parse_args()
    if _TASKSET and os.environ.get("GIMA_BENCH_PINNED") != "1":  # the load generator itself on core 1
        os.environ["GIMA_BENCH_PINNED"] = "1"
        os.execv(_TASKSET, [_TASKSET, "-c", "1", sys.executable, "-m", "bench.scale_out", *sys.argv[1:]])
    result = asyncio.run(run(args.replies, args.tokens_per_s, args.words))
    result["one_process_without_redis"] = asyncio.run(reference(args.replies, args.tokens_per_s, args.words))
    print(json.dumps(result, indent=2))
    rt = result["redis_round_trips_per_event"]
    print(f"{'PASS' if isinstance(rt, float) and rt < 0.2 else 'FAIL'}: Redis round trips per event {rt} (target < 0.2)")


if __name__ == "__main__":
    main()
