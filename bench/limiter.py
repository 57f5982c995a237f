"""Cost of the rate limiter per request: limits off vs memory vs Redis, on a small authenticated JSON request.

  python -m bench.limiter [--requests 4000] [--concurrency 20]

Each variant runs in its own gima-server process under the same load; figures are server CPU per request
(read from /proc, less noisy than wall time on a shared machine) and requests/s, with ratios against the
run with limits off. For Redis it also counts the script calls Redis saw: one round trip per check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time

import aiohttp

from .common import free_port, running_server, sign_up_many

HIGH = "default=10000000/min/10000000,auth=100000/min/100000"


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _load(base: str, token: str, requests: int, concurrency: int) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    remaining = requests

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                async with session.get(f"{base}/api/chats", headers=headers) as resp:
                    assert resp.status == 200, resp.status
                    await resp.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


async def run_variant(name: str, requests: int, concurrency: int, **env: str) -> dict[str, float | str]:
    async with running_server(**env) as (base, proc):
        async with aiohttp.ClientSession() as session:
            [token] = await sign_up_many(session, base, 1)
        await _load(base, token, requests // 10, concurrency)  # warm up
        cpu_before = cpu_seconds(proc.pid)
        elapsed = await _load(base, token, requests, concurrency)
        cpu = cpu_seconds(proc.pid) - cpu_before
    per_request_us = round(cpu / requests * 1e6, 1)
    return {"variant": name, "requests_per_s": round(requests / elapsed), "server_cpu_us_per_request": per_request_us}


async def redis_script_calls(port: int) -> int:
    from redis.asyncio import Redis

    client = Redis(port=port)
    try:
        stats = await client.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0)) + int(stats.get("cmdstat_eval", {}).get("calls", 0))
    finally:
        await client.aclose()


async def main_async(requests: int, concurrency: int) -> None:
    off = await run_variant("off", requests, concurrency, GIMA_RATE_LIMITS="off")
    memory = await run_variant("memory", requests, concurrency, GIMA_RATE_LIMITS=HIGH)
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    redis = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir], stdout=subprocess.DEVNULL,
    )
    try:
        await asyncio.sleep(0.5)
        redis_run = await run_variant("redis", requests, concurrency, GIMA_RATE_LIMITS=HIGH,
                                      GIMA_REDIS_URL=f"redis://127.0.0.1:{port}/0")
        calls = await redis_script_calls(port)
    finally:
        redis.terminate()
        redis.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    base_cpu = float(off["server_cpu_us_per_request"])
    for row in (off, memory, redis_run):
        row["cpu_ratio_vs_off"] = round(float(row["server_cpu_us_per_request"]) / base_cpu, 3)
        row["throughput_ratio_vs_off"] = round(float(row["requests_per_s"]) / float(off["requests_per_s"]), 3)
    warm = requests // 10
    redis_run["script_calls_per_request"] = round(calls / (requests + warm + 1), 3)  # +1: the sign-up
    for row in (off, memory, redis_run):
        print(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main_async(args.requests, args.concurrency))


if __name__ == "__main__":
    main()
