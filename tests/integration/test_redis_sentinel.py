"""GIMA_REDIS_MODE=sentinel against a real master, replica and three sentinels started here: replies use the master
the sentinels name, and after the master is killed and a replica promoted, new replies use the new master."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Iterator

import pytest
import redis

from gima_server import redis_keys
from gima_server.redis_client import sentinel_addresses

from ..conftest import MakeClient, sign_up
from ..redis_server import RedisServer, free_port

MASTER_NAME = "gima"


class SentinelSet:
    def __init__(self, workdir: Path) -> None:
        self.master = RedisServer(free_port(), workdir=str(workdir / "master"))
        self.replica = RedisServer(free_port(), workdir=str(workdir / "replica"))
        self.sentinels: list[RedisServer] = []
        self._workdir = workdir

    def start(self) -> None:
        for server in (self.master, self.replica):
            Path(server.workdir).mkdir(parents=True)
        self.master.start()
        self.replica.extra = ("--replicaof", "127.0.0.1", str(self.master.port))
        self.replica.start()
        for i in range(3):
            workdir = self._workdir / f"sentinel{i}"
            workdir.mkdir()
            conf = workdir / "sentinel.conf"  # a sentinel rewrites its own file as it learns the topology
            conf.write_text(f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2\n"
                            f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                            f"sentinel failover-timeout {MASTER_NAME} 5000\n")
            sentinel = RedisServer(free_port(), workdir=str(workdir), extra=(str(conf), "--sentinel"))
            sentinel.start()
            self.sentinels.append(sentinel)
        self._wait(lambda info: info["num-slaves"] >= 1 and info["num-other-sentinels"] >= 2, "the topology")

    @property
    def url(self) -> str:
        return "redis://" + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels) + "/0"

    def master_port(self) -> int:
        client = redis.Redis(port=self.sentinels[0].port, socket_timeout=1)
        try:
            host, port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            return int(port)
        finally:
            client.close()

    def _wait(self, ready: object, what: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            infos = []
            for sentinel in self.sentinels:
                client = redis.Redis(port=sentinel.port, socket_timeout=1, decode_responses=True)
                try:
                    infos.append(client.sentinel_master(MASTER_NAME))
                except redis.RedisError:
                    break
                finally:
                    client.close()
            if len(infos) == len(self.sentinels) and all(ready(info) for info in infos):  # type: ignore[operator]
                return
            time.sleep(0.2)
        raise AssertionError(f"the sentinels never agreed on {what}")

    def kill_master_and_wait_for_promotion(self) -> None:
        self.master.stop()  # SIGKILL
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.master_port() == self.replica.port:
                return
            time.sleep(0.2)
        raise AssertionError("no replica was promoted")

    def stop(self) -> None:
        for server in (*self.sentinels, self.replica, self.master):
            server.stop()


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    servers = SentinelSet(tmp_path / "redis")
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()
        shutil.rmtree(tmp_path / "redis", ignore_errors=True)


def test_sentinel_urls_name_every_sentinel_the_database_and_the_password() -> None:
    assert sentinel_addresses("redis://:s3cret@h1:26379,h2:26380/2") == ([("h1", 26379), ("h2", 26380)], 2, "s3cret")
    assert sentinel_addresses("redis://h1,h2:1/") == ([("h1", 26379), ("h2", 1)], 0, None)


def _has_log(port: int, message_id: str) -> bool:
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        return bool(client.exists(redis_keys.reply_log(message_id)))
    finally:
        client.close()


@pytest.mark.slow
async def test_replies_follow_the_master_the_sentinels_name_through_a_failover(
        make_client: MakeClient, sentinel_set: SentinelSet) -> None:
    client = await make_client(redis_mode="sentinel", redis_url=sentinel_set.url, redis_sentinel_master=MASTER_NAME,
                               redis_timeout_s=1.0, demo_reply_words=10)
    alice = await sign_up(client, "alice@example.com")
    events, _ = await alice.stream("before the failover")
    first = events[0].data["messageId"]
    assert events[-1].name == "done"
    assert _has_log(sentinel_set.master.port, first)  # written to the master the sentinels named
    await asyncio.to_thread(sentinel_set.kill_master_and_wait_for_promotion)
    deadline = time.monotonic() + 30
    while True:  # the first commands after the failover may still meet the dead master's connections
        events, _ = await alice.stream(f"after the failover {time.monotonic()}")
        second = events[0].data["messageId"]
        assert events[-1].name == "done"  # a reply never depends on Redis answering
        if await asyncio.to_thread(_has_log, sentinel_set.replica.port, second):
            break
        assert time.monotonic() < deadline, "replies never reached the promoted master"
        await asyncio.sleep(0.5)
    while True:  # limits fell back to local buckets during the failover ("fail open briefly"); they come back
        ready = await client.get("/ready")
        if ready.status == 200:
            break
        assert time.monotonic() < deadline + 30, await ready.text()
        await asyncio.sleep(0.5)
