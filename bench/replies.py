"""Throughput and memory of gima-server on the demo agent.

  python -m bench.replies [--replies 200] [--idle 1000]

1. N concurrent replies, demo agent as fast as possible: replies/s and deltas/s, checked for gaps and duplicates.
2. M idle subscribers (slow replies, heartbeats only): server RSS per open subscriber.
Only 127.0.0.1 is contacted; every phase is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp

from .common import rss_kib, running_server, sign_up_many


async def _one_reply(session: aiohttp.ClientSession, base: str, token: str, i: int) -> tuple[int, float]:
    headers = {"Authorization": f"Bearer {token}"}
    ids: list[int] = []
    deltas = 0
    started = time.perf_counter()
    first_event = 0.0
    async with session.post(f"{base}/api/chat/stream", json={"content": f"Benchmark question {i} about rivers"},
                            headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        async for line in resp.content:
            if line.startswith(b"id: "):
                ids.append(int(line[4:]))
                if not first_event:
                    first_event = time.perf_counter() - started
            elif line.startswith(b"event: delta"):
                deltas += 1
    if ids != list(range(1, len(ids) + 1)):
        raise AssertionError(f"reply {i}: gaps or duplicates in event ids")
    return deltas, first_event


async def throughput(replies: int, words: int) -> dict[str, float]:
    env = {"GIMA_DEMO_TOKENS_PER_S": "0", "GIMA_DEMO_FIRST_TOKEN_MS": "0", "GIMA_DEMO_REPLY_WORDS": str(words)}
    async with running_server(**env) as (base, proc):
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as session:
            tokens = await sign_up_many(session, base, replies)
            await _one_reply(session, base, tokens[0], -1)  # warm up
            started = time.perf_counter()
            results = await asyncio.gather(*(_one_reply(session, base, t, i) for i, t in enumerate(tokens)))
            elapsed = time.perf_counter() - started
    total_deltas = sum(d for d, _ in results)
    firsts = sorted(f for _, f in results)
    return {
        "replies": replies,
        "seconds": round(elapsed, 3),
        "replies_per_s": round(replies / elapsed, 1),
        "deltas_per_s": round(total_deltas / elapsed),
        "deltas_per_reply": total_deltas // replies,
        "first_event_p50_ms": round(firsts[len(firsts) // 2] * 1000, 1),
        "first_event_p99_ms": round(firsts[int(len(firsts) * 0.99) - 1] * 1000, 1),
    }


async def _hold(session: aiohttp.ClientSession, url: str, headers: dict[str, str], opened: asyncio.Event,
                counter: list[int], target: int) -> None:
    async with session.get(url, headers=headers) as resp:
        assert resp.status == 200
        await resp.content.readuntil(b"\n\n")  # the retry frame and first events have arrived: it is open
        counter[0] += 1
        if counter[0] == target:
            opened.set()
        await asyncio.sleep(3600)


async def idle_memory(subscribers: int, replies: int = 10) -> dict[str, float]:
    env = {"GIMA_DEMO_TOKENS_PER_S": "0.2", "GIMA_DEMO_FIRST_TOKEN_MS": "0", "GIMA_DEMO_REPLY_WORDS": "500"}
    async with running_server(**env) as (base, proc):
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
            tokens = await sign_up_many(session, base, replies)
            message_ids = []
            for token in tokens:  # each reply stays live for minutes at 0.2 tokens/s
                async with session.post(f"{base}/api/chat/stream", json={"content": "hold this open"},
                                        headers={"Authorization": f"Bearer {token}"}) as resp:
                    frame = await resp.content.readuntil(b"\n\n")
                    frame += await resp.content.readuntil(b"\n\n")
                    message_ids.append(json.loads(frame.split(b"data: ", 1)[1].split(b"\n", 1)[0])["messageId"])
            await asyncio.sleep(0.5)
            before = rss_kib(proc.pid)
            opened, counter = asyncio.Event(), [0]
            holders = [
                asyncio.create_task(_hold(session, f"{base}/api/chat/streams/{message_ids[i % replies]}/events",
                                          {"Authorization": f"Bearer {tokens[i % replies]}"}, opened, counter, subscribers))
                for i in range(subscribers)
            ]
            await asyncio.wait_for(opened.wait(), timeout=120)
            await asyncio.sleep(1.0)
            after = rss_kib(proc.pid)
            for task in holders:
                task.cancel()
            await asyncio.gather(*holders, return_exceptions=True)
    return {
        "subscribers": subscribers,
        "rss_before_mib": round(before / 1024, 1),
        "rss_after_mib": round(after / 1024, 1),
        "kib_per_subscriber": round((after - before) / subscribers, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=200)
    parser.add_argument("--words", type=int, default=120)
    parser.add_argument("--idle", type=int, default=1000)
    args = parser.parse_args()
    print(json.dumps({"throughput": asyncio.run(throughput(args.replies, args.words))}))
    print(json.dumps({"idle": asyncio.run(idle_memory(args.idle))}))


if __name__ == "__main__":
    main()
