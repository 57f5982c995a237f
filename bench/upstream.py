"""What gima-server adds between an upstream's tokens and the client's events.

  python -m bench.upstream [--streams 50] [--tokens 60] [--interval-ms 20]

A fake OpenAI-compatible upstream (its own process) stamps each token with the time it sent it. The same
load is read twice: straight from the upstream, and through gima-server (GIMA_AGENT=openai). For every
event the client computes arrival minus send time; the report gives p50/p99 per-event latency and time to
first token both ways, the difference, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import subprocess
import sys
import time

import aiohttp

from .common import free_port
from .load import gima

_STAMP = re.compile(rb"<(\d+\.\d+)>")


async def _read(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: dict[str, object]
) -> tuple[float, list[float]]:
    started = time.time()
    first, latencies, buffer = 0.0, [], b""
    async with session.post(url, json=body, headers=headers) as resp:
        assert resp.status == 200, resp.status
        async for chunk in resp.content.iter_any():
            now = time.time()
            frames = (buffer + chunk).split(b"\n\n")
            buffer = frames.pop()
            for frame in frames:
                if b"event: done" in frame:
                    continue  # the final event repeats every stamp in its whole text
                for stamp in _STAMP.findall(frame):
                    latencies.append(now - float(stamp))
                    if not first:
                        first = now - started
    return first, latencies


async def _run(url: str, headers_for: list[dict[str, str]], body: dict[str, object], streams: int) -> dict[str, float | None]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        results = await asyncio.gather(*(_read(session, url, headers_for[i % len(headers_for)], body) for i in range(streams)))
    firsts = sorted(r[0] for r in results)
    latencies = sorted(x for r in results for x in r[1])

    def pct(values: list[float], q: float) -> float | None:
        return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 3) if values else None

    return {"first_token_p50_ms": pct(firsts, 0.5), "first_token_p99_ms": pct(firsts, 0.99),
            "event_latency_p50_ms": pct(latencies, 0.5), "event_latency_p99_ms": pct(latencies, 0.99),
            "events": len(latencies)}


async def main_async(streams: int, tokens: int, interval_ms: float) -> None:
    port = free_port()
    fake = subprocess.Popen([sys.executable, "-m", "bench.fake_upstream", "--port", str(port), "--tokens", str(tokens),
                             "--interval-ms", str(interval_ms)], stdout=subprocess.DEVNULL)
    try:
        await asyncio.sleep(0.3)
        await _wait_healthy_post(f"http://127.0.0.1:{port}")
        direct = await _run(f"http://127.0.0.1:{port}/v1/chat/completions", [{}],
                            {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}, streams)
        print(json.dumps({"path": "direct", **direct}), flush=True)
        async with gima(streams, 0, 10, GIMA_AGENT="openai", GIMA_OPENAI_BASE_URL=f"http://127.0.0.1:{port}",
                        GIMA_RATE_LIMITS="off") as target:
            headers = [{"Authorization": f"Bearer {t}"} for t in target.tokens]
            through = await _run(f"{target.base}/api/chat/stream", headers, {"content": "hi"}, streams)
        print(json.dumps({"path": "through gima-server", **through}), flush=True)
    finally:
        fake.send_signal(signal.SIGINT)
        fake.wait(timeout=30)
    summary: dict[str, object] = {"summary": "overhead of gima-server between upstream tokens and client events"}
    for key in ("first_token_p50_ms", "event_latency_p50_ms", "event_latency_p99_ms"):
        ours, theirs = through[key], direct[key]
        if ours is not None and theirs is not None:
            summary[key.replace("_ms", "_added_ms")] = round(ours - theirs, 3)
            summary[key.replace("_ms", "_ratio")] = round(ours / max(theirs, 0.001), 2)
    print(json.dumps(summary), flush=True)


async def _wait_healthy_post(base: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.post(f"{base}/v1/chat/completions", json={}) as resp:
                    await resp.read()
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    raise RuntimeError("fake upstream did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--interval-ms", type=float, default=20)
    args = parser.parse_args()
    asyncio.run(main_async(args.streams, args.tokens, args.interval_ms))


if __name__ == "__main__":
    main()
