"""The files in deploy/ work as shipped: the systemd unit verifies, the compose file's nginx configuration is
the one the tests run, the container definition copies what exists and runs unprivileged, and the Caddy
example carries a reply (and its resume) across two real processes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest
import yaml

from ..cluster import Cluster, start_cluster
from ..redis_server import RedisServer, free_port, own_redis
from ..sse import parse_sse, read_until

pytestmark = pytest.mark.slow
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_the_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed (Debian's systemd package)"
    unit = (DEPLOY / "systemd" / "gima-server.service").read_text()
    for setting in ("DynamicUser=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/gima-server",
                    "NoNewPrivileges=yes", "KillSignal=SIGTERM"):
        assert setting in unit, setting
    installed = shutil.which("gima-server")
    assert installed
    (tmp_path / "gima-server.service").write_text(unit.replace("/opt/gima/bin/gima-server", installed))
    verified = subprocess.run([analyze, "verify", str(tmp_path / "gima-server.service")], capture_output=True, text=True,
                              timeout=60)
    assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr  # a bad value only warns


def test_the_compose_file_wires_two_processes_redis_nginx_and_a_volume(tmp_path: Path) -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"gima1", "gima2", "redis", "nginx"} <= set(services) and "gima-data" in compose["volumes"]
    for name in ("gima1", "gima2"):
        gima = services[name]
        assert gima["environment"]["GIMA_REDIS_URL"] == "redis://redis:6379/0" and "gima-data:/data" in gima["volumes"]
        assert (DEPLOY / "compose" / gima["build"]["context"] / gima["build"]["dockerfile"]).exists()
        drain = int(gima["environment"]["GIMA_DRAIN_S"])
        assert int(gima["stop_grace_period"].rstrip("s")) > drain  # the drain finishes before a kill
    mounts = [m.split(":")[0] for m in services["nginx"]["volumes"] if not m.startswith("/dev/null")]
    for mount in mounts:
        assert (DEPLOY / "compose" / mount).exists(), mount
    assert "../nginx/gima.conf" in mounts  # the very site config the multi-process tests run
    # The two files nginx gets, as nginx reads them (service names swapped for addresses it can resolve here).
    upstream = (DEPLOY / "compose" / "upstream.conf").read_text()
    upstream = re.sub(r"server gima\d:8080;", "server 127.0.0.1:1;", upstream)
    site = (DEPLOY / "nginx" / "gima.conf").read_text()
    conf = tmp_path / "nginx.conf"
    for sub in ("logs", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / sub).mkdir()
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(f"{user}pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\nevents {{}}\nhttp {{\n"
                    f"client_body_temp_path {tmp_path}/body; proxy_temp_path {tmp_path}/proxy;\n"
                    f"fastcgi_temp_path {tmp_path}/fastcgi; uwsgi_temp_path {tmp_path}/uwsgi; scgi_temp_path {tmp_path}/scgi;\n"
                    f"{upstream}\n{site}\n}}\n")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    checked = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr


def test_the_container_definition_copies_what_exists_and_runs_unprivileged() -> None:
    lines = [line.strip() for line in (DEPLOY / "Containerfile").read_text().splitlines()]
    root = DEPLOY.parent
    for line in lines:
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (root / source).exists(), source
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any(line.startswith("FROM ") and "slim" in line for line in lines)
    assert any("GIMA_DATA_DIR=/data" in line for line in lines) and "VOLUME /data" in lines


redis = pytest.fixture(own_redis)


def _caddy_config(ports: list[int], listen_port: int) -> str:
    """The shipped Caddyfile with this cluster's processes and a plain-HTTP local address (nothing else changed)."""
    text = (DEPLOY / "caddy" / "Caddyfile").read_text()
    text, sites = re.subn(r"^chat\.example\.com \{", f"http://127.0.0.1:{listen_port} {{", text, flags=re.M)
    upstreams = " ".join(f"127.0.0.1:{port}" for port in ports)
    text, proxies = re.subn(r"reverse_proxy [0-9.: ]+\{", f"reverse_proxy {upstreams} {{", text)
    assert sites == 1 and proxies == 1, "deploy/caddy/Caddyfile changed shape; update this test"
    return "{\n\tadmin off\n\tauto_https off\n}\n\n" + text


async def test_the_caddy_example_streams_and_resumes_across_processes(tmp_path: Path, redis: RedisServer) -> None:
    caddy = shutil.which("caddy")
    assert caddy, "caddy is needed (Debian's caddy package; .ci/run installs it)"
    cluster: Cluster = start_cluster(tmp_path / "cluster", redis, 2, nginx=False, demo_tokens_per_s="40",
                                     demo_reply_words="60")
    port = free_port()
    (tmp_path / "Caddyfile").write_text(_caddy_config(cluster.ports, port))
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg"), "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
           "HOME": str(tmp_path)}
    with open(tmp_path / "caddy.log", "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([caddy, "run", "--config", str(tmp_path / "Caddyfile"), "--adapter", "caddyfile"],
                                env=env, stdout=subprocess.DEVNULL, stderr=log)
    front = f"http://127.0.0.1:{port}"
    try:
        _wait_up(f"{front}/health", proc, tmp_path / "caddy.log")
        async with aiohttp.ClientSession() as http:
            signup = await http.post(f"{front}/api/auth/signup", headers={"Origin": front},
                                     json={"email": "caddy@example.com", "password": "correct horse battery"})
            assert signup.status == 201, await signup.text()
            auth = {"Authorization": f"Bearer {(await signup.json())['accessToken']}"}
            http.cookie_jar.clear()
            resp = await http.post(f"{front}/api/chat/stream", json={"content": "through caddy"}, headers=auth)
            seen = await read_until(resp, lambda ev: len(ev) >= 4)  # events arrive as written: not buffered
            resp.close()
            message_id = seen[0].data["messageId"]
            rest = await http.get(f"{front}/api/chat/streams/{message_id}/events",
                                  headers={**auth, "Last-Event-ID": str(seen[-1].id)})
            events = seen + parse_sse(await rest.read())[0]
        assert events[-1].name == "done" and [e.id for e in events] == list(range(1, len(events) + 1))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        cluster.stop()


def _wait_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(200):
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not answer: {log.read_text()}")
