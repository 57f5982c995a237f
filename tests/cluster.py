"""N real gima-server processes on one Redis, behind a real nginx using deploy/nginx/gima.conf: on one data dir
(SQLite, as on one box), or each with a data dir of its own on PostgreSQL (as on separate hosts: nothing on a
shared disk, the signing key given as configuration)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .redis_server import RedisServer, free_port

SITE_CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "nginx" / "gima.conf"
SHARED_SECRET = "shared-secret-for-every-process-0123456789"


def nginx_site(ports: list[int], listen_port: int) -> str:
    """This cluster's upstream block, then the shipped site config with only its listen port changed."""
    servers = "".join(f"    server 127.0.0.1:{port};\n" for port in ports)
    upstream = f"upstream gima {{\n{servers}    keepalive 64;\n}}\n"
    text, listens = re.subn(r"listen \d+;", f"listen 127.0.0.1:{listen_port};", SITE_CONFIG.read_text())
    shape_ok = listens == 1 and not re.search(r"^upstream ", text, re.M)
    assert shape_ok, "deploy/nginx/gima.conf changed shape; update tests/cluster.py"
    return upstream + text


@dataclass
class Cluster:
    data_dir: Path
    env: dict[str, str]
    ports: list[int]
    procs: list[subprocess.Popen[bytes] | None] = field(default_factory=list)
    nginx: subprocess.Popen[bytes] | None = None
    front_port: int = 0
    workdir: Path | None = None
    host_dirs: list[Path] = field(default_factory=list)  # each process's own data dir, when they share none

    def base(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    @property
    def front(self) -> str:
        return f"http://127.0.0.1:{self.front_port}"

    def start_process(self, i: int) -> None:
        log = open(self.data_dir / f"server-{i}.log", "ab")  # noqa: SIM115 - closed with the process
        env = {**self.env, "GIMA_DATA_DIR": str(self.host_dirs[i])} if self.host_dirs else self.env
        proc = subprocess.Popen([sys.executable, "-m", "gima_server", "--port", str(self.ports[i])], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if i < len(self.procs):
            self.procs[i] = proc
        else:
            self.procs.append(proc)

    def wait_healthy(self, i: int, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            proc = self.procs[i]
            assert proc is not None and proc.poll() is None, f"process {i} exited: {self.log(i)[-2000:]}"
            try:
                with urllib.request.urlopen(f"{self.base(i)}/health", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        raise AssertionError(f"process {i} did not become healthy")

    def log(self, i: int) -> str:
        return (self.data_dir / f"server-{i}.log").read_text(errors="replace")

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def restart(self, i: int) -> None:
        self.kill(i)
        self.start_process(i)
        self.wait_healthy(i)

    def start_nginx(self) -> None:
        binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        if binary is None:
            raise RuntimeError("nginx is not installed (apt-get install nginx; .ci/run does it)")
        work = self.workdir = self.data_dir / "nginx"
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        self.front_port = free_port()
        (work / "gima.conf").write_text(nginx_site(self.ports, self.front_port))
        user = "user root;\n" if os.geteuid() == 0 else ""
        (work / "nginx.conf").write_text(
            f"{user}worker_processes 1;\ndaemon off;\npid {work}/nginx.pid;\nerror_log {work}/logs/error.log warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            "  log_format upstream '$request_method $uri $status $upstream_addr';\n"
            f"  access_log {work}/logs/access.log upstream;\n"
            f"  client_body_temp_path {work}/body;\n  proxy_temp_path {work}/proxy;\n"
            f"  fastcgi_temp_path {work}/fastcgi;\n  uwsgi_temp_path {work}/uwsgi;\n  scgi_temp_path {work}/scgi;\n"
            f"  include {work}/gima.conf;\n"
            "}\n"
        )
        with open(work / "logs" / "stderr.log", "wb") as stderr:
            self.nginx = subprocess.Popen([binary, "-p", str(work), "-c", str(work / "nginx.conf")],
                                          stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.nginx.poll() is None, f"nginx exited: {(work / 'logs' / 'stderr.log').read_text()}"
            try:
                with urllib.request.urlopen(f"{self.front}/health", timeout=1):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        raise AssertionError("nginx did not start")

    def _access_lines(self) -> list[str]:
        assert self.workdir is not None
        path = self.workdir / "logs" / "access.log"
        return path.read_text().splitlines() if path.exists() else []

    def access_mark(self) -> int:
        return len(self._access_lines())

    def upstreams_served(self, path_part: str, since: int = 0) -> list[str]:
        """Which process (upstream address) nginx sent each request whose path contains path_part to, in the
        order the requests ended (nginx logs a stream when it closes)."""
        return [line.split()[-1] for line in self._access_lines()[since:] if path_part in line.split()[1]]

    def stop(self) -> None:
        for i in range(len(self.procs)):
            self.kill(i)
        if self.nginx is not None:
            self.nginx.terminate()  # SIGTERM: the master takes its workers with it (SIGKILL left them orphaned)
            try:
                self.nginx.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait(timeout=10)


def start_cluster(data_dir: Path, redis: RedisServer | None, processes: int, nginx: bool = True,
                  postgres_url: str = "", **env: str) -> Cluster:
    """With postgres_url, every process has a data dir of its own (nothing shared but PostgreSQL and Redis)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if not postgres_url:
        (data_dir / "secret_key").write_text(SHARED_SECRET)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("GIMA_")}
    base_env.update({
        "GIMA_DATA_DIR": str(data_dir), "GIMA_RATE_LIMITS": "off", "GIMA_LOG_FORMAT": "text",
        "GIMA_REDIS_TIMEOUT_S": "1", "GIMA_REPLY_OWNER_TIMEOUT_S": "3",
        "GIMA_DEMO_TOKENS_PER_S": "60", "GIMA_DEMO_FIRST_TOKEN_MS": "20", "GIMA_DEMO_REPLY_WORDS": "30",
    })
    if redis is not None:
        base_env["GIMA_REDIS_URL"] = redis.url
    if postgres_url:
        base_env.update({"GIMA_STORE_URL": postgres_url, "GIMA_SECRET_KEY": SHARED_SECRET})
    base_env.update({f"GIMA_{k.upper()}": v for k, v in env.items()})
    cluster = Cluster(data_dir, base_env, [free_port() for _ in range(processes)])
    if postgres_url:
        cluster.host_dirs = [data_dir / f"host{i}" for i in range(processes)]
    try:
        cluster.start_process(0)  # first alone: it creates the SQLite file the others open
        cluster.wait_healthy(0)
        for i in range(1, processes):
            cluster.start_process(i)
        for i in range(1, processes):
            cluster.wait_healthy(i)
        if nginx:
            cluster.start_nginx()
    except BaseException:
        cluster.stop()
        raise
    return cluster
