"""Load benchmark: gima-server against a bare aiohttp SSE baseline, under the same load, in one run.

  python -m bench.load            # short version (about 1-2 minutes)
  python -m bench.load --full     # 1,000 concurrent replies, 10,000 idle subscribers

Scenarios (each bounded in time, 127.0.0.1 only): chat bursts, many users (ramp to N concurrent replies
at ~50 tokens/s), reconnect storm (drop mid-reply, resume with Last-Event-ID), idle holders (heartbeats
only). Also: throughput at full speed and the time to first event added on an idle server. Every client
checks that it saw ids 1..n with no gap or duplicate. Results are JSON lines; the last line compares
against the baseline and the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

import aiohttp

from .common import free_port, rss_kib

SECRET = "bench-secret-key-0123456789-0123456789-abcdef"


@dataclass
class Target:
    name: str
    base: str
    pid: int
    tokens: list[str] = field(default_factory=list)

    def stream_call(self, i: int, content: str) -> tuple[str, dict[str, str]]:
        if self.name == "baseline":
            return f"{self.base}/stream", {}
        return f"{self.base}/api/chat/stream", {"Authorization": f"Bearer {self.tokens[i % len(self.tokens)]}"}


async def _seed(data_dir: Path, users: int, alpha: int = 0, store_url: str = "") -> list[str]:
    """Users and login sessions written straight into the store, so the bench measures chat, not argon2."""
    from gima_server.auth.tokens import TokenIssuer
    from gima_server.store.base import Store
    from gima_server.store.sqlite import SqliteStore

    (data_dir / "secret_key").write_text(SECRET)
    store: Store
    if store_url:
        from gima_server.store.postgres import PostgresStore

        store = PostgresStore(store_url)
    else:
        store = SqliteStore(data_dir / "gima.sqlite3")
    await store.open()
    issuer, tokens = TokenIssuer((SECRET,), 86_400), []
    try:
        for i in range(users):
            roles = ("user", "alpha") if i < alpha else ("user",)
            user = await store.create_user(f"load{i}@example.com", "not-a-hash", f"load{i}", roles)
            session = await store.create_session(user.id, 86_400)
            tokens.append(issuer.issue(user.id, session.id))
    finally:
        await store.close()
    return tokens


async def _seed_api_key(data_dir: Path) -> str:
    """One user with one API key, written straight into the store: a program's calls, all over that key."""
    import time as clock

    from gima_server.apikeys.model import MAX_KEYS_PER_USER, ApiKey, key_hash, key_hint, new_key
    from gima_server.ids import new_id
    from gima_server.store.sqlite import SqliteStore

    (data_dir / "secret_key").write_text(SECRET)
    store = SqliteStore(data_dir / "gima.sqlite3")
    await store.open()
    try:
        user = await store.create_user("program@example.com", "not-a-hash", "program", ("user",))
        secret = new_key()
        key = ApiKey(new_id(), user.id, "bench", key_hash(secret), key_hint(secret), clock.time())
        assert await store.create_api_key(key, MAX_KEYS_PER_USER)
    finally:
        await store.close()
    return secret


async def _wait_healthy(base: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(400):
            if proc.poll() is not None:
                raise RuntimeError(f"{base} exited with {proc.returncode}")
            try:
                async with session.get(f"{base}/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    raise RuntimeError(f"{base} did not start")


@asynccontextmanager
async def gima(users: int, tokens_per_s: float, words: int, alpha: int = 0, **env: str) -> AsyncIterator[Target]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        tokens = await _seed(Path(tmp), users, alpha)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("GIMA_")}
        full_env.update({
            "GIMA_DATA_DIR": tmp, "GIMA_LOG_LEVEL": "warning", "GIMA_DEMO_TOKENS_PER_S": str(tokens_per_s),
            "GIMA_DEMO_FIRST_TOKEN_MS": "0", "GIMA_DEMO_REPLY_WORDS": str(words), "GIMA_DRAIN_S": "1", **env,
        })
        proc = subprocess.Popen([sys.executable, "-m", "gima_server", "--port", str(port)], env=full_env,
                                stdout=subprocess.DEVNULL)
        try:
            await _wait_healthy(f"http://127.0.0.1:{port}", proc)
            yield Target("gima", f"http://127.0.0.1:{port}", proc.pid, tokens)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


@asynccontextmanager
async def baseline(tokens_per_s: float, words: int) -> AsyncIterator[Target]:
    from .bare import running_bare

    async with running_bare(tokens_per_s, words) as (port, pid):
        yield Target("baseline", f"http://127.0.0.1:{port}", pid)


@dataclass
class Seen:
    status: int = 0
    ttfe_s: float | None = None
    ids: list[int] = field(default_factory=list)
    end: str = ""  # "done", an error code, or "" if the stream ended without a last event
    message_id: str = ""


async def consume(session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str],
                  body: dict[str, object] | None = None, stop_after: int | None = None) -> Seen:
    """Read one stream, noting the time to its first event, every id, and how it ended."""
    seen, started, buffer = Seen(), time.perf_counter(), b""
    async with session.request(method, url, json=body, headers=headers) as resp:
        seen.status = resp.status
        if resp.status != 200:
            await resp.read()
            return seen
        async for chunk in resp.content.iter_any():
            frames = (buffer + chunk).split(b"\n\n")
            buffer = frames.pop()
            for frame in frames:
                _note(seen, frame, started)
                if seen.end or (stop_after is not None and len(seen.ids) >= stop_after):
                    return seen
    return seen


def _note(seen: Seen, frame: bytes, started: float) -> None:
    if not frame.startswith(b"id: ") and not frame.startswith(b"event: error"):
        return  # retry field, heartbeat comment
    lines = frame.split(b"\n")
    if lines[0].startswith(b"id: "):
        seen.ids.append(int(lines[0][4:]))
        if seen.ttfe_s is None:
            seen.ttfe_s = time.perf_counter() - started
        lines = lines[1:]
    name = lines[0][7:] if lines and lines[0].startswith(b"event: ") else b""
    if name == b"meta" and not seen.message_id:
        seen.message_id = json.loads(lines[1][6:])["messageId"]
    elif name == b"done":
        seen.end = "done"
    elif name == b"error":
        seen.end = json.loads(lines[1][6:])["code"]


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def _report(name: str, target: Target, results: list[Seen], elapsed: float, extra: dict[str, object]) -> dict[str, object]:
    ttfes = [r.ttfe_s for r in results if r.ttfe_s is not None]
    bad_ids = sum(1 for r in results if r.status == 200 and r.ids != list(range(1, len(r.ids) + 1)))
    row: dict[str, object] = {
        "scenario": name, "target": target.name, "streams": len(results), "seconds": round(elapsed, 2),
        "ttfe_ms": {"p50": _pct(ttfes, 0.5), "p90": _pct(ttfes, 0.9), "p99": _pct(ttfes, 0.99)},
        "events_per_s": round(sum(len(r.ids) for r in results) / elapsed),
        "completed": sum(r.end == "done" for r in results),
        "http_429": sum(r.status == 429 for r in results),
        "other_errors": sum((r.status not in (200, 429)) or (r.status == 200 and r.end != "done") for r in results),
        "missing_or_duplicate": bad_ids,
        **extra,
    }
    print(json.dumps(row), flush=True)
    return row


def _session(limit: int = 0) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit), timeout=aiohttp.ClientTimeout(total=600))


async def many_users(target: Target, concurrent: int, ramp_s: float, name: str = "many_users") -> dict[str, object]:
    rss_before = rss_kib(target.pid)
    peak = [rss_before]
    open_now, open_peak = 0, 0

    async def one(i: int) -> Seen:
        nonlocal open_now, open_peak
        await asyncio.sleep(ramp_s * i / concurrent)
        url, headers = target.stream_call(i, f"question {i} about rivers and tides")
        open_now += 1
        open_peak = max(open_peak, open_now)
        try:
            return await consume(session, "POST", url, headers, {"content": f"question {i} about rivers and tides"})
        finally:
            open_now -= 1

    async def sample_rss() -> None:
        while True:
            peak[0] = max(peak[0], rss_kib(target.pid))
            await asyncio.sleep(0.2)

    async with _session() as session:
        sampler = asyncio.create_task(sample_rss())
        started = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(concurrent)))
        elapsed = time.perf_counter() - started
        sampler.cancel()
    extra = {"peak_concurrent": open_peak, "rss_kib_per_stream": round((peak[0] - rss_before) / max(1, open_peak), 1)}
    return _report(name, target, results, elapsed, extra)


async def chat_bursts(target: Target, users: int, burst: int) -> dict[str, object]:
    async def user(i: int) -> list[Seen]:
        url, headers = target.stream_call(i, "")
        return [await consume(session, "POST", url, headers, {"content": f"burst {b} from user {i}"}) for b in range(burst)]

    async with _session() as session:
        started = time.perf_counter()
        results = [s for seen in await asyncio.gather(*(user(i) for i in range(users))) for s in seen]
        elapsed = time.perf_counter() - started
    return _report("chat_bursts", target, results, elapsed, {})


async def reconnect_storm(target: Target, clients: int) -> dict[str, object]:
    rng = random.Random(7)

    async def one(i: int) -> Seen:
        url, headers = target.stream_call(i, "")
        first = await consume(session, "POST", url, headers, {"content": f"storm {i}"}, stop_after=rng.randint(3, 40))
        if first.end or first.status != 200:
            return first
        resumed = await consume(session, "GET", f"{target.base}/api/chat/streams/{first.message_id}/events",
                                {**headers, "Last-Event-ID": str(first.ids[-1])})
        resumed.ids = first.ids + resumed.ids
        resumed.ttfe_s = first.ttfe_s
        return resumed

    async with _session() as session:
        started = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    return _report("reconnect_storm", target, results, elapsed, {})


async def idle_holders(target: Target, holders: int, hold_url: str, headers_for: list[dict[str, str]]) -> dict[str, object]:
    before = rss_kib(target.pid)
    opened = 0

    async def hold(i: int) -> None:
        nonlocal opened
        async with session.get(hold_url, headers=headers_for[i % len(headers_for)]) as resp:
            assert resp.status == 200, resp.status
            await resp.content.readuntil(b"\n\n")
            opened += 1
            await asyncio.sleep(3600)

    async with _session() as session:
        tasks = [asyncio.create_task(hold(i)) for i in range(holders)]
        deadline = time.monotonic() + 120
        while opened < holders and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        after = rss_kib(target.pid)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    row = {"scenario": "idle_holders", "target": target.name, "holders": opened,
           "rss_kib_per_holder": round((after - before) / max(1, opened), 2)}
    print(json.dumps(row), flush=True)
    return row


async def idle_ttfe(target: Target, requests: int) -> list[float]:
    async with _session() as session:
        results = []
        for i in range(requests):
            url, headers = target.stream_call(i, "")
            # The whole reply is read, so each request meets an idle server (nothing still streaming).
            results.append(await consume(session, "POST", url, headers, {"content": "ping"}))
    return [r.ttfe_s for r in results if r.ttfe_s is not None]


async def _gima_idle_holders(holders: int) -> dict[str, object]:
    async with gima(10, 0.2, 500) as target:
        async with _session() as session:  # ten replies that stay live for minutes, to hold subscribers on
            urls = []
            for i in range(10):
                url, headers = target.stream_call(i, "")
                seen = await consume(session, "POST", url, headers, {"content": "hold this open"}, stop_after=2)
                urls.append((f"{target.base}/api/chat/streams/{seen.message_id}/events", headers))
        await asyncio.sleep(0.5)
        return await idle_holders(target, holders, urls[0][0], [urls[0][1]])


async def main_async(full: bool) -> None:
    # Replies of ~700 tokens at 50 tokens/s last ~14 s: arrivals spread over the ramp all overlap at its end.
    concurrent, holders, users, ramp_s, words = (1000, 10_000, 100, 8.0, 500) if full else (300, 2000, 50, 2.0, 150)
    rows: dict[str, dict[str, object]] = {}
    async with gima(max(concurrent, users), 50, words) as g:
        rows["gima_bursts"] = await chat_bursts(g, users, 3)
        rows["gima_many"] = await many_users(g, concurrent, ramp_s=ramp_s)
        rows["gima_storm"] = await reconnect_storm(g, concurrent // 3)
    async with baseline(50, words) as b:
        rows["base_many"] = await many_users(b, concurrent, ramp_s=ramp_s)
    async with gima(200, 0, 150) as g:
        rows["gima_fast"] = await many_users(g, 200, ramp_s=0.0, name="throughput")
        gima_ttfe = await idle_ttfe(g, 200)
    async with baseline(0, 150) as b:
        rows["base_fast"] = await many_users(b, 200, ramp_s=0.0, name="throughput")
        base_ttfe = await idle_ttfe(b, 200)
    rows["gima_idle"] = await _gima_idle_holders(holders)
    async with baseline(0.2, 500) as b:
        rows["base_idle"] = await idle_holders(b, holders, f"{b.base}/hold", [{}])
    added = {q: round((_pct(gima_ttfe, p) or 0) - (_pct(base_ttfe, p) or 0), 2) for q, p in (("p50", 0.5), ("p99", 0.99))}
    summary = {
        "summary": "gima vs bare aiohttp baseline (same load, same run)",
        "events_per_s_ratio_at_full_speed": _ratio(rows["gima_fast"]["events_per_s"], rows["base_fast"]["events_per_s"]),
        "target_events_per_s_ratio": ">= 0.7 (aim >= 1.0)",
        "ttfe_ms_many_users": {"gima": rows["gima_many"]["ttfe_ms"], "baseline": rows["base_many"]["ttfe_ms"],
                               "peak_concurrent": rows["gima_many"]["peak_concurrent"]},
        "target_ttfe_p99_ms": "< 2000",
        "rss_per_idle_holder_ratio": _ratio(rows["gima_idle"]["rss_kib_per_holder"], rows["base_idle"]["rss_kib_per_holder"]),
        "target_rss_ratio": "< 1.5",
        "added_ttfe_ms_idle_server": added,
        "target_added_ttfe_ms": "p50 < 2, p99 < 10",
        "429s_in_normal_use": int(rows["gima_bursts"]["http_429"]) + int(rows["gima_many"]["http_429"]),
        "missing_or_duplicate": sum(int(r.get("missing_or_duplicate", 0)) for r in rows.values()),  # type: ignore[call-overload]
    }
    print(json.dumps(summary), flush=True)
    ttfe = rows["gima_many"]["ttfe_ms"]
    many_p99 = ttfe.get("p99") if isinstance(ttfe, dict) else None
    speed, rss = float(str(summary["events_per_s_ratio_at_full_speed"])), float(str(summary["rss_per_idle_holder_ratio"]))
    verdicts = [
        ("events/s at full speed vs bare", speed, ">= 0.7", speed >= 0.7),
        ("time to first event p99, many users (ms)", many_p99, "< 2000", many_p99 is not None and many_p99 < 2000),
        ("RSS per idle stream vs bare", rss, "< 1.5", rss < 1.5),
        ("added time to first event, idle server (ms)", added, "p50 < 2, p99 < 10", added["p50"] < 2 and added["p99"] < 10),
        ("429s in normal use", summary["429s_in_normal_use"], "0", summary["429s_in_normal_use"] == 0),
        ("events missing or repeated", summary["missing_or_duplicate"], "0", summary["missing_or_duplicate"] == 0),
    ]
    for what, value, target, ok in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {what}: {value}  (target {target})", flush=True)
    print(f"took {time.monotonic() - STARTED:.0f} s", flush=True)


def _ratio(ours: object, theirs: object) -> float:
    return round(float(str(ours)) / max(0.01, float(str(theirs))), 3)


STARTED = time.monotonic()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="1,000 concurrent replies and 10,000 idle holders")
    args = parser.parse_args()
    asyncio.run(main_async(args.full))


if __name__ == "__main__":
    main()
