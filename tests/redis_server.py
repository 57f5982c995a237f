"""A real redis-server on a free port, started by the tests (never the shared one on 6379)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Iterator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes] | None = None
    workdir: str = ""
    extra: tuple[str, ...] = ()  # more arguments: --replicaof HOST PORT, or a config file and --sentinel

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server; .ci/run does it)")
        self.workdir = self.workdir or tempfile.mkdtemp(prefix="gima-redis-")
        self.proc = subprocess.Popen(
            [binary, *self.extra, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.workdir, "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


def own_redis() -> Iterator[RedisServer]:
    """A redis-server of its own on a free port for as long as the generator runs (a fixture's body); its
    work dir is removed after it, so no empty `gima-redis-*` is left behind."""
    server = RedisServer(free_port())
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)
