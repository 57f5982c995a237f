"""A background loop of Redis writes always stops at shutdown, whatever instant the cancel lands.

On Python 3.11 redis-py's socket write goes through asyncio.wait_for, which can return normally and drop a
cancel (CPython gh-86296); a single cancel-then-await then waits forever, as a CI run once did at teardown."""

from __future__ import annotations

import asyncio
import random

from redis.asyncio import Redis

from gima_server.background import stop_tasks


async def test_a_pipeline_loop_stops_whenever_it_is_cancelled(redis_url: str) -> None:
    redis = Redis.from_url(redis_url, socket_timeout=2.0)

    async def publish_forever() -> None:
        while True:
            pipe = redis.pipeline(transaction=False)
            pipe.xadd("k", {"e": "1"}, maxlen=10, approximate=True)
            pipe.pexpire("k", 1000)
            await pipe.execute(raise_on_error=False)

    rng = random.Random(7)
    try:
        for _ in range(200):
            task = asyncio.create_task(publish_forever())
            await asyncio.sleep(rng.random() * 0.002)
            await asyncio.wait_for(stop_tasks([task], patience_s=0.01), 5)
            assert task.done()
        assert await redis.ping()  # the connections are still good for the next caller
    finally:
        await redis.aclose()
