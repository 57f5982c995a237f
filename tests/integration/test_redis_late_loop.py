"""A stall of this process's event loop is not Redis failing (late_loop.py, redis_client.py).

Redis answers within the socket timeout, but the loop is blocked (time.sleep: a burst of starts, a collector pass)
past it: before, the timer ran before the waiting answer was read and the read failed with TimeoutError — locks
and limits fell back to this process, the reply log resent every running reply. A Redis that is really slow
still times out, on a free loop and on a stalled one. Against real redis-servers (one, and a cluster), through the
clients the server itself makes.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from gima_server.config import Settings
from gima_server.late_loop import responsive_timeout
from gima_server.redis_client import connect

from ..redis_server import RedisServer, free_port

TIMEOUT_S = 0.25
KEY = "gima:test:empty"


@pytest.fixture
def unix_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of its own that also listens on a Unix socket: its url."""
    path = tmp_path / "redis.sock"
    server = RedisServer(free_port(), extra=("--unixsocket", str(path), "--unixsocketperm", "700"))
    server.start()
    yield f"unix://{path}"
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


def _client(request: pytest.FixtureRequest, mode: str) -> Any:
    if mode == "unix":  # another connection class (and no host or port to name in an error)
        return connect(Settings(redis_url=request.getfixturevalue("unix_redis"), redis_timeout_s=TIMEOUT_S),
                       TIMEOUT_S, blocking_pool=True)
    if mode == "cluster":
        settings = Settings(redis_mode="cluster", redis_url=request.getfixturevalue("redis_cluster_url"),
                            redis_timeout_s=TIMEOUT_S)
    else:
        server = request.getfixturevalue("redis_server")
        if server.proc is None or server.proc.poll() is not None:
            server.start()  # a test before this one may have killed it
        settings = Settings(redis_url=server.url, redis_timeout_s=TIMEOUT_S)
    return connect(settings, TIMEOUT_S, blocking_pool=mode == "single")


async def _stalled_while_answered(client: Any, answer_after_s: float, stall_s: float) -> Any:
    """BLPOP on an empty list: Redis answers nil after answer_after_s. The loop is blocked from before that answer
    until well past the socket timeout."""
    call = asyncio.create_task(client.blpop([KEY], timeout=answer_after_s))
    await asyncio.sleep(0.02)  # the command is on its way and the read is waiting
    time.sleep(stall_s)  # noqa: ASYNC251 (the point: the loop stalls, the answer waits in the socket)
    return await asyncio.wait_for(call, 20)


async def _blpops_run(client: Any, mode: str) -> int:
    """How many BLPOPs the Redis holding KEY has run (the cluster client sends a command again after a timeout)."""
    target = {"target_nodes": client.get_node_from_key(KEY)} if mode == "cluster" else {}  # type: dict[str, Any]
    stats = await client.info("commandstats", **target)
    return int(stats.get("cmdstat_blpop", {}).get("calls", 0))


@pytest.mark.parametrize("mode", ["single", "cluster", "unix"])
async def test_an_answer_that_came_during_a_stall_of_the_loop_is_read_not_timed_out(
        request: pytest.FixtureRequest, mode: str) -> None:
    client = _client(request, mode)
    try:
        assert await client.ping()
        before = await _blpops_run(client, mode)
        for _ in range(3):
            assert await _stalled_while_answered(client, answer_after_s=0.1, stall_s=0.6) is None
        assert await _blpops_run(client, mode) - before == 3  # each answered once, none sent again
        assert await client.set("gima:test:after", "1") and await client.get("gima:test:after") == b"1"
    finally:
        await client.aclose()


@pytest.mark.parametrize("mode", ["single", "cluster", "unix"])
async def test_a_redis_that_does_not_answer_still_times_out_on_a_free_loop_and_after_a_stall(
        request: pytest.FixtureRequest, mode: str) -> None:
    client = _client(request, mode)
    try:
        assert await client.ping()
        # Redis answers only after 5 s: the timeout ends the read first (the cluster client tries again a few times
        # before it gives up: seconds, with or without a stall)
        with pytest.raises(RedisTimeoutError):
            await asyncio.wait_for(client.blpop([KEY], timeout=5), 20)
        with pytest.raises(RedisTimeoutError):
            await _stalled_while_answered(client, answer_after_s=5, stall_s=0.6)
        assert await client.ping()  # a new connection for the next command
    finally:
        await client.aclose()


async def test_the_deadline_gives_back_the_time_the_loop_was_late_and_no_more() -> None:
    loop = asyncio.get_running_loop()
    answer = loop.create_future()
    loop.call_later(0.1, answer.set_result, "answered")
    loop.call_soon(time.sleep, 0.4)  # a stall from before the answer until past the deadline
    async with responsive_timeout(0.2, 2.0):
        assert await answer == "answered"

    never = loop.create_future()
    loop.call_soon(time.sleep, 0.4)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with responsive_timeout(0.2, 2.0):
            await never
    assert time.monotonic() - started < 1.9  # the late check gave back the stall's overrun once, then expired

    loop.call_soon(time.sleep, 0.4)
    with pytest.raises(TimeoutError):
        async with responsive_timeout(0.05, 0.3):  # past at_most_s: expired however late the check
            await loop.create_future()
