"""A Redis master, its replica and three sentinels, each a real redis-server on a free port, started by the tests
(and by bench/chaos.py): the Sentinel deployment of docs/operations.md, small enough to fail over in seconds."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from .redis_server import RedisServer, free_port

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
