"""A thousand live replies on one core: gima-server against bare aiohttp (bench/bare.py), one run, ratios.

  python -m bench.paced                  # every scenario (about 2 minutes)
  python -m bench.paced --replies 300    # a smaller paced phase
  python -m bench.paced --holders 0 --runs 3   # three runs, then each target's count of passes

Each server is pinned to core 0 and this load generator to core 1 (`taskset`). The client is raw asyncio
(no HTTP library on the hot path), so the generator is not what is measured. Scenarios, each against both
servers with the same demo-agent pace and the same client:
- paced: N replies (default 1,000) at 50 tokens/s, started over 1 s; events/s, time to first event
  p50/p90/p99, starvation (the slowest reply's event rate against the median's);
- burst: 100 replies as fast as possible; events/s;
- idle: 10,000 open streams; RSS per stream and CPU while idle;
- unloaded: time to first event of one unpaced request at a time (added ms);
- paced with Redis configured (gima only, against the same bare run);
- with --webhooks: paced with a webhook endpoint receiving every reply's end (against the plain run);
- with --otel: paced with OpenTelemetry exporting every span (against the plain run);
- with --stores: paced on PostgreSQL (against the SQLite run) and with Redis Sentinel (against single Redis);
  PostgreSQL and Redis run on the load generator's core.
Every stream checks ids 1..n (no gap, no duplicate). The last lines print PASS/FAIL per target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Callable

from .common import Verdict, free_port, print_pass_counts, print_verdicts, rss_kib
from .load import _seed, _seed_api_key, _wait_healthy

_TASKSET = shutil.which("taskset")
_ID = re.compile(rb"(?m)^id: (\d+)$")
_END = re.compile(rb"(?m)^event: (done|error)$")
_MESSAGE_ID = re.compile(rb'"messageId":"([^"]+)"')
WORDS = 200


def _pinned(core: int, argv: list[str]) -> list[str]:
    return [_TASKSET, "-c", str(core), *argv] if _TASKSET else argv


@dataclass
class Server:
    name: str
    port: int
    pid: int
    path: str
    tokens: list[str] = field(default_factory=list)

    def headers(self, i: int) -> str:
        return f"Authorization: Bearer {self.tokens[i % len(self.tokens)]}\r\n" if self.tokens else ""


@dataclass
class Stream:
    status: int = 0
    started: float = 0.0
    first: float | None = None
    last: float = 0.0
    ids: list[int] = field(default_factory=list)
    ended: bool = False
    message_id: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.ended and self.ids == list(range(1, len(self.ids) + 1))

    @property
    def rate(self) -> float | None:
        if self.first is None or self.last <= self.first or len(self.ids) < 3:
            return None
        return (len(self.ids) - 1) / (self.last - self.first)


async def sse_frames(reader: asyncio.StreamReader, clock: Callable[[], float] = time.perf_counter
                     ) -> AsyncIterator[tuple[float, bytes]]:
    """Whole SSE frames as they arrive (a frame split across reads waits for its end), each batch with the time its
    read came back; until the server closes."""
    carry = b""
    while chunk := await reader.read(262_144):
        now = clock()
        data = carry + chunk
        cut = data.rfind(b"\n\n")
        if cut < 0:
            carry = data
            continue
        complete, carry = data[: cut + 2], data[cut + 2:]
        yield now, complete


async def read_stream(server: Server, i: int, method: str, path: str, body: bytes, stop_after: int = 0) -> Stream:
    seen = Stream(started=time.perf_counter())
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{server.headers(i)}Connection: close\r\n\r\n".encode() + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        seen.status = int(head.split(b" ", 2)[1])
        if seen.status == 200:
            async for now, complete in sse_frames(reader):
                ids = _ID.findall(complete)
                if not seen.message_id and (found := _MESSAGE_ID.search(complete)):
                    seen.message_id = found.group(1).decode()
                if ids:
                    seen.ids.extend(int(x) for x in ids)
                    seen.first = seen.first or now
                    seen.last = now
                if _END.search(complete) or (stop_after and len(seen.ids) >= stop_after):
                    seen.ended = True
                    break
    finally:
        writer.close()
    return seen


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def _summary(streams: list[Stream]) -> dict[str, object]:
    t0 = min(s.started for s in streams)
    t1 = max(s.last for s in streams if s.first is not None)
    ttfe = [s.first - s.started for s in streams if s.first is not None]
    rates = sorted(r for s in streams if (r := s.rate) is not None)
    median = rates[len(rates) // 2] if rates else 0.0
    return {
        "streams": len(streams), "ok": sum(s.ok for s in streams),
        "events_per_s": round(sum(len(s.ids) for s in streams) / (t1 - t0)),
        "ttfe_ms": {"p50": _pct(ttfe, 0.5), "p90": _pct(ttfe, 0.9), "p99": _pct(ttfe, 0.99)},
        # The median of each tenth of the streams in the order they started: where in a ramp a server fell behind
        # (a p50 decided by whether that happened before the middle stream or after it)
        "ttfe_p50_ms_by_tenth": _by_tenth([s.first - s.started if s.first is not None else None
                                           for s in sorted(streams, key=lambda s: s.started)]),
        "slowest_rate_vs_median": round(rates[0] / median, 3) if rates and median else None,
    }


def _by_tenth(ttfe_in_start_order: list[float | None]) -> list[float | None]:
    size = max(1, len(ttfe_in_start_order) // 10)
    tenths = [ttfe_in_start_order[i:i + size] for i in range(0, size * 10, size)]
    return [_pct([t for t in tenth if t is not None], 0.5) for tenth in tenths if tenth]


async def replies(server: Server, count: int, ramp_s: float) -> dict[str, object]:
    async def one(i: int) -> Stream:
        await asyncio.sleep(ramp_s * i / count)
        return await read_stream(server, i, "POST", server.path, json.dumps({"content": f"question {i}"}).encode())

    summary = _summary(list(await asyncio.gather(*(one(i) for i in range(count)))))
    if server.name == "gima":
        summary["events_per_write"] = await _events_per_write(server)
    return summary


async def _events_per_write(server: Server) -> float | None:
    """From the server's own counters: how many events one socket write carried, on average (since start)."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{server.port}/metrics") as resp:
        text = await resp.text()
    found = dict(re.findall(r"(?m)^(gima_sse_(?:events_sent|writes)_total) ([0-9.e+]+)$", text))
    writes = float(found.get("gima_sse_writes_total", 0))
    return round(float(found["gima_sse_events_sent_total"]) / writes, 2) if writes else None


async def unloaded_ttfe(server: Server, count: int) -> list[float]:
    out = []
    for i in range(count):
        seen = await read_stream(server, i, "POST", server.path, json.dumps({"content": "one at a time"}).encode())
        if seen.first is not None:
            out.append(seen.first - seen.started)
    return out


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle(server: Server, holders: int, path: str, body: bytes) -> dict[str, object]:
    before = rss_kib(server.pid)
    streams = [asyncio.create_task(read_stream(server, i, "GET" if not body else "POST", path, body, stop_after=10**9))
               for i in range(holders)]
    await asyncio.sleep(max(3.0, holders / 2000))
    for _ in range(60):  # until the server has taken every connection (CPU under 5 % for a second)
        cpu = _cpu_s(server.pid)
        await asyncio.sleep(1.0)
        if _cpu_s(server.pid) - cpu < 0.05:
            break
    after = rss_kib(server.pid)
    cpu_before = _cpu_s(server.pid)
    await asyncio.sleep(5.0)
    cpu_idle = (_cpu_s(server.pid) - cpu_before) / 5.0
    for task in streams:
        task.cancel()
    await asyncio.gather(*streams, return_exceptions=True)
    return {"holders": holders, "rss_kib_per_stream": round((after - before) / holders, 2),
            "idle_cpu_fraction": round(cpu_idle, 4)}


@asynccontextmanager
async def bare(tokens_per_s: float, words: int = WORDS, chat: bool = False) -> AsyncIterator[Server]:
    """bench/bare.py; chat: as the chat baseline (an API key, checks, the SQLite exchange and final write)."""
    from .bare import running_bare

    with tempfile.TemporaryDirectory(prefix="bench-bare-") as tmp:
        key = "bench-chat-" + secrets.token_urlsafe(24)
        as_chat = (f"{tmp}/chat.sqlite3", key) if chat else None
        async with running_bare(tokens_per_s, words, _pinned(0, []), as_chat) as (port, pid):
            yield Server("bare --chat" if chat else "bare", port, pid, "/stream", [key] if chat else [])


@asynccontextmanager
async def gima(tokens_per_s: float, users: int, redis_url: str = "", first_token_ms: int = 0, store_url: str = "",
               sentinel: bool = False, extra_env: dict[str, str] | None = None, words: int = WORDS,
               api_key: bool = False) -> AsyncIterator[Server]:
    """api_key: every request over one API key (users is ignored), as one program's calls; else a user each."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-paced-") as tmp:
        # sign-in cost stays out of the measured window
        tokens = [await _seed_api_key(Path(tmp))] if api_key else await _seed(Path(tmp), users, store_url=store_url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIMA_")}
        env.update({"GIMA_DATA_DIR": tmp, "GIMA_LOG_LEVEL": "warning", "GIMA_RATE_LIMITS": "off",
                    "GIMA_DEMO_TOKENS_PER_S": str(tokens_per_s), "GIMA_DEMO_FIRST_TOKEN_MS": str(first_token_ms),
                    "GIMA_DEMO_REPLY_WORDS": str(words), "GIMA_DRAIN_S": "1", "GIMA_MAX_ACTIVE_REPLIES": "20000",
                    "GIMA_ADMISSION_QUEUE": "20000"})
        if redis_url:
            env["GIMA_REDIS_URL"] = redis_url
        if sentinel:
            env.update({"GIMA_REDIS_MODE": "sentinel", "GIMA_REDIS_SENTINEL_MASTER": "gima"})
        if store_url:
            env["GIMA_STORE_URL"] = store_url
        env = {k: v for k, v in env.items() if not k.startswith("OTEL_")}
        env.update(extra_env or {})
        proc = subprocess.Popen(_pinned(0, [sys.executable, "-m", "gima_server", "--port", str(port)]), env=env,
                                stdout=subprocess.DEVNULL)
        try:
            await _wait_healthy(f"http://127.0.0.1:{port}", proc)
            yield Server("gima", port, proc.pid, "/api/chat/stream", tokens)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


@asynccontextmanager
async def redis_server() -> AsyncIterator[str]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        proc = subprocess.Popen(_pinned(1, [shutil.which("redis-server") or "redis-server", "--port", str(port),
                                            "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp]),
                                stdout=subprocess.DEVNULL)
        try:
            await asyncio.sleep(0.3)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


async def gima_idle(holders: int) -> dict[str, object]:
    # One reply whose first token is ten minutes away: every holder follows it, and nothing is sent but pings,
    # like the bare server's idle streams.
    async with gima(50, 1, first_token_ms=600_000) as server:
        first = await read_stream(server, 0, "POST", server.path, b'{"content":"hold this open"}', stop_after=1)
        assert first.status == 200 and first.message_id
        return await idle(server, holders, f"/api/chat/streams/{first.message_id}/events", b"")


@asynccontextmanager
async def otlp_sink() -> AsyncIterator[str]:
    """bench/otlp_sink.py on the load generator's core: where a traced server exports its spans."""
    port = free_port()
    proc = subprocess.Popen(_pinned(1, [sys.executable, "-m", "bench.otlp_sink", str(port)]), stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


WEBHOOK_SECRET = "whsec_" + "YmVuY2gtd2ViaG9vay1zZWNyZXQtMDEyMzQ1Njc4OQ=="


async def _sink_stats(sink: str) -> dict[str, int]:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"{sink}/stats") as resp:
        return dict(await resp.json())


async def webhooks_paced(count: int) -> dict[str, object]:
    """Paced with a webhook endpoint configured: every reply's end is an outbox row, signed and POSTed to the sink
    (on the load generator's core) by the server's delivery loop while the other replies stream."""
    async with otlp_sink() as sink, gima(50, count, extra_env={
            "GIMA_WEBHOOK_URL": f"{sink}/webhooks", "GIMA_WEBHOOK_SECRET": WEBHOOK_SECRET}) as g:
        row = await replies(g, count, 1.0)
        for _ in range(300):  # the deliveries still in the outbox go out after the last reply
            delivered = (await _sink_stats(sink))["webhooks"]
            if delivered >= count:
                break
            await asyncio.sleep(0.1)
        row["webhooks_delivered"] = delivered
        return row


async def main_async(count: int, holders: int, with_redis: bool, stores: bool = False,
                     otel: bool = False, webhooks: bool = False) -> dict[str, dict[str, object]]:
    rows: dict[str, dict[str, object]] = {}
    async with bare(50) as b:
        rows["bare_paced"] = await replies(b, count, 1.0)
    async with gima(50, count) as g:
        rows["gima_paced"] = await replies(g, count, 1.0)
    async with bare(0) as b:  # unpaced: each one-at-a-time reply ends in milliseconds
        rows["bare_burst"] = await replies(b, 100, 0.0)
        rows["bare_unloaded"] = {"ttfe": await unloaded_ttfe(b, 200)}
    async with gima(0, 100) as g:
        rows["gima_burst"] = await replies(g, 100, 0.0)
        rows["gima_unloaded"] = {"ttfe": await unloaded_ttfe(g, 200)}
    if with_redis:
        async with redis_server() as url, gima(50, count, url) as g:
            rows["gima_redis_paced"] = await replies(g, count, 1.0)
    if stores:  # the deployments that outgrow one box, against their one-box twins above
        from .services import postgres, sentinel

        async with postgres() as store_url, gima(50, count, store_url=store_url) as g:
            rows["gima_postgres_paced"] = await replies(g, count, 1.0)
        async with sentinel() as url, gima(50, count, url, sentinel=True) as g:
            rows["gima_sentinel_paced"] = await replies(g, count, 1.0)
    if otel:  # tracing on and exporting every span, against the plain run above
        async with otlp_sink() as sink, gima(50, count, extra_env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink, "OTEL_SERVICE_NAME": "gima-bench"}) as g:
            rows["gima_otel_paced"] = await replies(g, count, 1.0)
    if webhooks:
        rows["gima_webhooks_paced"] = await webhooks_paced(count)
    if holders:
        async with bare(0.2) as b:
            rows["bare_idle"] = await idle(b, holders, "/hold", b"")
        rows["gima_idle"] = await gima_idle(holders)
    return rows


def _verdicts(rows: dict[str, dict[str, object]]) -> list[Verdict]:
    def ratio(a: str, b: str, key: str = "events_per_s") -> float:
        return round(float(rows[a][key]) / max(1.0, float(rows[b][key])), 3)  # type: ignore[arg-type]

    gp, out = rows["gima_paced"], []
    ttfe = gp["ttfe_ms"]
    assert isinstance(ttfe, dict)
    out.append((f"paced events/s ratio {ratio('gima_paced', 'bare_paced')}", ">= 1.0",
                ratio("gima_paced", "bare_paced") >= 1.0))
    out.append((f"paced TTFE p99 {ttfe['p99']} ms", "< 2000 ms", (ttfe["p99"] or 1e9) < 2000))
    out.append((f"paced TTFE p50 {ttfe['p50']} ms", "< 100 ms", (ttfe["p50"] or 1e9) < 100))
    bare_ttfe = rows["bare_paced"]["ttfe_ms"]
    assert isinstance(bare_ttfe, dict)
    out.append((f"paced TTFE p50 {ttfe['p50']} ms vs bare {bare_ttfe['p50']} ms", "<= bare's (issue 26)",
                (ttfe["p50"] or 1e9) <= (bare_ttfe["p50"] or 0)))
    out.append((f"paced TTFE p99 {ttfe['p99']} ms", "< 1000 ms (issue 26)", (ttfe["p99"] or 1e9) < 1000))
    starve = gp["slowest_rate_vs_median"]
    out.append((f"slowest reply's rate / median {starve}", ">= 0.8", isinstance(starve, float) and starve >= 0.8))
    out.append((f"burst events/s ratio {ratio('gima_burst', 'bare_burst')}", ">= 1.2",
                ratio("gima_burst", "bare_burst") >= 1.2))
    gima_t, bare_t = rows["gima_unloaded"]["ttfe"], rows["bare_unloaded"]["ttfe"]
    assert isinstance(gima_t, list) and isinstance(bare_t, list)
    added = round((_pct(gima_t, 0.5) or 0) - (_pct(bare_t, 0.5) or 0), 2)
    out.append((f"unloaded TTFE p50 added {added} ms", "< 2 ms", added < 2))
    if "gima_idle" in rows:
        rss = ratio("gima_idle", "bare_idle", "rss_kib_per_stream")
        out.append((f"idle RSS per stream ratio {rss}", "<= 1.2", rss <= 1.2))
        cpu = rows["gima_idle"]["idle_cpu_fraction"]
        out.append((f"idle CPU {cpu} of a core", "~0 (< 0.02)", float(cpu) < 0.02))  # type: ignore[arg-type]
    if "gima_redis_paced" in rows:
        redis_ratio = ratio("gima_redis_paced", "bare_paced")
        out.append((f"paced with Redis events/s ratio {redis_ratio}", ">= 0.8", redis_ratio >= 0.8))
    if "gima_postgres_paced" in rows:
        pg = ratio("gima_postgres_paced", "gima_paced")
        out.append((f"paced on PostgreSQL / on SQLite events/s ratio {pg}", ">= 0.9", pg >= 0.9))
        pg_ttfe, sqlite_ttfe = rows["gima_postgres_paced"]["ttfe_ms"], gp["ttfe_ms"]
        assert isinstance(pg_ttfe, dict) and isinstance(sqlite_ttfe, dict)
        out.append((f"paced on PostgreSQL TTFE p50/p99 {pg_ttfe['p50']}/{pg_ttfe['p99']} ms (SQLite "
                    f"{sqlite_ttfe['p50']}/{sqlite_ttfe['p99']})", "p99 < 2000 ms", (pg_ttfe["p99"] or 1e9) < 2000))
    if "gima_sentinel_paced" in rows and "gima_redis_paced" in rows:
        sentinel_ratio = ratio("gima_sentinel_paced", "gima_redis_paced")
        out.append((f"paced with Sentinel / single Redis events/s ratio {sentinel_ratio}", ">= 0.9",
                    sentinel_ratio >= 0.9))
    if "gima_otel_paced" in rows:
        traced = ratio("gima_otel_paced", "gima_paced")
        out.append((f"paced with OpenTelemetry exporting / off events/s ratio {traced}", ">= 0.95", traced >= 0.95))
        traced_ttfe = rows["gima_otel_paced"]["ttfe_ms"]
        assert isinstance(traced_ttfe, dict)
        out.append((f"paced with OpenTelemetry TTFE p50/p99 {traced_ttfe['p50']}/{traced_ttfe['p99']} ms (off "
                    f"{ttfe['p50']}/{ttfe['p99']})", "p99 < 2000 ms", (traced_ttfe["p99"] or 1e9) < 2000))
    if "gima_webhooks_paced" in rows:
        hooked = ratio("gima_webhooks_paced", "gima_paced")
        out.append((f"paced with webhooks / without events/s ratio {hooked}", ">= 0.95", hooked >= 0.95))
        delivered, wanted = rows["gima_webhooks_paced"]["webhooks_delivered"], rows["gima_webhooks_paced"]["streams"]
        out.append((f"webhooks delivered {delivered} of {wanted} replies", "all", delivered == wanted))
    bad = sum(int(r["streams"]) - int(r["ok"]) for r in rows.values() if "ok" in r)  # type: ignore[call-overload]
    out.append((f"streams with a gap, duplicate or no end: {bad}", "0", bad == 0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=1000)
    parser.add_argument("--holders", type=int, default=10_000, help="idle streams (0 skips the phase)")
    parser.add_argument("--no-redis", action="store_true", help="skip the paced phase with Redis configured")
    parser.add_argument("--otel", action="store_true",
                        help="also paced with OpenTelemetry on, exporting every span to bench/otlp_sink.py")
    parser.add_argument("--webhooks", action="store_true",
                        help="also paced with a webhook endpoint (bench/otlp_sink.py) receiving every reply's end")
    parser.add_argument("--stores", action="store_true",
                        help="also paced on PostgreSQL (vs SQLite) and with Redis Sentinel (vs single Redis)")
    parser.add_argument("--runs", type=int, default=1,
                        help="repeat every scenario; each target's verdict in each run, then how many passed")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, min(hard, args.holders * 2 + 4096)) if hard != resource.RLIM_INFINITY else args.holders * 2 + 4096
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want) if hard != resource.RLIM_INFINITY else hard))
    if _TASKSET and os.environ.get("GIMA_BENCH_PINNED") != "1":  # this load generator on core 1
        os.environ["GIMA_BENCH_PINNED"] = "1"
        os.execv(_TASKSET, [_TASKSET, "-c", "1", sys.executable, "-m", "bench.paced", *sys.argv[1:]])
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    tallies: list[list[Verdict]] = []
    for run in range(1, args.runs + 1):
        rows = asyncio.run(main_async(args.replies, args.holders, not args.no_redis, args.stores, args.otel,
                                      args.webhooks))
        for name, row in rows.items():
            printable = {k: v for k, v in row.items() if k != "ttfe"}
            if "ttfe" in row:
                samples = row["ttfe"]
                assert isinstance(samples, list)
                printable["ttfe_ms"] = {"p50": _pct(samples, 0.5), "p99": _pct(samples, 0.99)}
            print(json.dumps({"run": run, "scenario": name, **printable}))
        print(f"pinned: {'server core 0, load generator core 1' if _TASKSET else 'NO (taskset missing)'}")
        tallies.append(_verdicts(rows))
        print_verdicts(tallies[-1])
    print_pass_counts(tallies)


if __name__ == "__main__":
    main()
