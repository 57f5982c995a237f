"""A real Redis Cluster of three masters on free ports (`redis-cli --cluster create`), started by the tests."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

from .redis_server import RedisServer


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too, and below 65536."""
    import socket

    for _ in range(200):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            if port + 10000 > 65535:
                continue
            try:
                b.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
            return port
    raise RuntimeError("no free pair of ports for a cluster node")


class RedisClusterSet:
    def __init__(self, masters: int = 3) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="gima-cluster-"))
        self.nodes: list[RedisServer] = []
        for i in range(masters):
            workdir = self.workdir / f"node{i}"
            workdir.mkdir()
            self.nodes.append(RedisServer(_cluster_port(), workdir=str(workdir),
                                          extra=("--cluster-enabled", "yes", "--cluster-config-file",
                                                 str(workdir / "nodes.conf"), "--cluster-node-timeout", "2000")))

    @property
    def url(self) -> str:
        """What GIMA_REDIS_URL names in cluster mode: one or more nodes."""
        return "redis://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes) + "/0"

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (it comes with redis-server; .ci/run installs it)")
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [subprocess.run([cli, "-p", str(n.port), "cluster", "info"], capture_output=True, text=True,
                                     timeout=5).stdout for n in self.nodes]
            if all("cluster_state:ok" in state for state in states):
                return
            time.sleep(0.1)
        raise RuntimeError("the cluster never reached cluster_state:ok")

    def flush(self) -> None:
        cli = shutil.which("redis-cli") or "redis-cli"
        for node in self.nodes:
            subprocess.run([cli, "-p", str(node.port), "flushall"], check=True, stdout=subprocess.DEVNULL, timeout=5)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def own_cluster() -> Iterator[RedisClusterSet]:
    cluster = RedisClusterSet()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
