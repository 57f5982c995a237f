"""The real gima-server command, run as a subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from ..processes import wait_healthy
from ..secrets_watch import remember
from ..sse import parse_sse

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIMA_")}
    env.update({"GIMA_DATA_DIR": str(tmp_path), "GIMA_LOG_FORMAT": "json", **extra})
    return env


def _cli(tmp_path: Path, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gima_server", *args],
        env=_env(tmp_path, **env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _serve(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], str]:
    """`gima-server` on a free port with these settings; (the process, its base URL)."""
    port = _free_port()
    proc = subprocess.Popen(["gima-server", "--port", str(port)], env=_env(tmp_path, **env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc, f"http://127.0.0.1:{port}"


async def _sign_up(session: aiohttp.ClientSession, base: str, email: str) -> str:
    async with session.post(f"{base}/api/auth/signup", json={"email": email, "password": "a good password"}) as resp:
        assert resp.status == 201
        return str((await resp.json())["accessToken"])


async def test_server_command_serves_a_streamed_reply(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        ["gima-server", "serve", "--port", str(port), "--data-dir", str(tmp_path)],
        env=_env(tmp_path, GIMA_DEMO_TOKENS_PER_S="0", GIMA_DEMO_FIRST_TOKEN_MS="0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, base, proc)
            token = await _sign_up(session, base, "cli@example.com")
            async with session.post(
                f"{base}/api/chat/stream", json={"content": "Hello from a subprocess test"},
                headers={"Authorization": f"Bearer {token}"},
            ) as resp:
                events, _ = parse_sse(await resp.read())
            assert events[0].name == "meta" and events[-1].name == "done" and "subprocess" in events[-1].data["content"]
            async with session.get(f"{base}/") as resp:
                assert resp.status == 200 and "text/html" in resp.headers["Content-Type"]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{port}/" in out
    assert (tmp_path / "gima.sqlite3").exists()
    assert "a good password" not in err and token not in err


def test_bad_configuration_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    result = _cli(tmp_path, "serve", GIMA_PORT="eighty")
    assert result.returncode == 2
    assert "GIMA_PORT" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _cli(tmp_path, "check-config").returncode == 0


@pytest.mark.parametrize(("env", "named"), [
    ({"GIMA_AGENT": "pipeline", "GIMA_PIPELINE_FILE": "/no/such/pipeline.json"}, "GIMA_PIPELINE_FILE"),
    ({"GIMA_AGENT": "openai"}, "GIMA_OPENAI_API_KEY"),
    ({"GIMA_AGENT": "anthropic", "GIMA_ANTHROPIC_API_KEY": ""}, "GIMA_ANTHROPIC_API_KEY"),
])
def test_check_config_refuses_what_serve_would_refuse(tmp_path: Path, env: dict[str, str], named: str) -> None:
    """One set of checks for both: check-config never passes a configuration that serve then rejects."""
    checked = _cli(tmp_path, "check-config", **env)
    served = _cli(tmp_path, "--port", str(_free_port()), **env)
    for result in (checked, served):
        assert result.returncode == 2 and named in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_a_keyless_local_upstream_is_valid(tmp_path: Path) -> None:
    checked = _cli(tmp_path, "check-config", GIMA_AGENT="openai", GIMA_OPENAI_BASE_URL="http://127.0.0.1:9")
    assert checked.returncode == 0, checked.stderr


def test_a_misspelt_variable_is_named_with_the_closest_setting(tmp_path: Path) -> None:
    checked = _cli(tmp_path, "check-config", GIMA_REDIS_ULR="redis://127.0.0.1:6390")
    assert checked.returncode == 0
    assert "GIMA_REDIS_ULR is not a setting and is ignored (did you mean GIMA_REDIS_URL?)" in checked.stderr


def test_user_add_and_role(tmp_path: Path) -> None:
    added = _cli(tmp_path, "user", "add", "Ops@Example.com", "--role", "alpha", "--password-stdin", stdin="a secret pw\n")
    assert added.returncode == 0, added.stderr
    assert "ops@example.com" in added.stdout and "alpha" in added.stdout and "a secret pw" not in added.stdout
    granted = _cli(tmp_path, "user", "role", "ops@example.com", "admin")
    assert granted.returncode == 0 and "user, alpha, admin" in granted.stdout
    revoked = _cli(tmp_path, "user", "role", "ops@example.com", "alpha", "--revoke")
    assert revoked.returncode == 0 and "user, admin" in revoked.stdout
    assert _cli(tmp_path, "user", "add", "ops@example.com").returncode == 1
    assert _cli(tmp_path, "user", "role", "ghost@example.com", "admin").returncode == 1
    generated = _cli(tmp_path, "user", "add", "gen@example.com")
    assert generated.returncode == 0 and "password: " in generated.stdout


async def _stream_until(
    session: aiohttp.ClientSession, base: str, token: str, content: str, frames: int
) -> aiohttp.ClientResponse:
    headers = {"Authorization": f"Bearer {token}"}
    resp = await session.post(f"{base}/api/chat/stream", json={"content": content}, headers=headers)
    for _ in range(frames):
        await resp.content.readuntil(b"\n\n")
    return resp


async def test_sigterm_drains_then_ends_the_rest_and_loses_nothing(tmp_path: Path) -> None:
    import sqlite3

    port = _free_port()
    proc = subprocess.Popen(
        ["gima-server", "--port", str(port), "--drain-s", "2"],
        env=_env(tmp_path, GIMA_DEMO_TOKENS_PER_S="20", GIMA_DEMO_REPLY_WORDS="10", GIMA_RATE_LIMITS="auth=1000/min/1000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    signalled = False
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, base, proc)
            tokens = [await _sign_up(session, base, f"term{i}@example.com") for i in range(3)]
            # Replies take ~3.5 s: one nearly done when the signal comes (it finishes within the 2 s drain),
            # two just started (they do not).
            short = await _stream_until(session, base, tokens[0], "nearly done", 60)
            longs = [await _stream_until(session, base, t, "just started", 3) for t in tokens[1:]]
            proc.send_signal(signal.SIGTERM)
            signalled = True
            await asyncio.sleep(0.3)
            async with session.get(f"{base}/ready") as ready:
                assert ready.status == 503 and (await ready.json())["status"] == "draining"
            async with session.post(f"{base}/api/chat/stream", json={"content": "too late"},
                                    headers={"Authorization": f"Bearer {tokens[0]}"}) as late:
                body = await late.json()
                assert late.status == 503 and body["error"]["code"] == "shutting_down" and late.headers["Retry-After"]
            ends = [parse_sse(await resp.read())[0][-1] for resp in (short, *longs)]
    finally:
        if not signalled:
            proc.kill()  # failed before SIGTERM (a second SIGTERM would cut the drain short, so never send two)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "drain over: 2 replies still running; they end with shutting_down" in err  # English, and counted
    assert ends[0].name == "done"
    assert [e.data["code"] for e in ends[1:]] == ["shutting_down", "shutting_down"]
    with sqlite3.connect(tmp_path / "gima.sqlite3") as db:
        rows = db.execute("SELECT status, finish_reason, length(content) FROM messages WHERE role = 'assistant'").fetchall()
    assert sorted(r[:2] for r in rows) == [("cancelled", "shutting_down"), ("cancelled", "shutting_down"), ("complete", "stop")]
    assert all(r[2] > 0 for r in rows)  # every partial text was stored


async def _read_to_end(resp: aiohttp.ClientResponse, within_s: float) -> None:
    """Read until the server ends the stream (cut mid-chunk counts); fail if it is still open after within_s."""
    async with asyncio.timeout(within_s):
        try:
            while await resp.content.readany():
                pass
        except aiohttp.ClientPayloadError:
            pass
    resp.close()


async def test_user_sessions_lists_and_revokes_and_the_running_server_obeys(tmp_path: Path, redis_url: str) -> None:
    proc, base = _serve(tmp_path, GIMA_REDIS_URL=redis_url, GIMA_SESSION_CACHE_S="0.2", GIMA_DEMO_TOKENS_PER_S="20",
                        GIMA_DEMO_REPLY_WORDS="400", GIMA_RATE_LIMITS="auth=1000/min/1000", GIMA_DRAIN_S="0")
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, base, proc)
            token = await _sign_up(session, base, "owner@example.com")
            bystander = await _sign_up(session, base, "bystander@example.com")
            stream = await _stream_until(session, base, token, "a long answer", 2)
            listed = _cli(tmp_path, "user", "sessions", "Owner@Example.com", GIMA_REDIS_URL=redis_url)
            assert listed.returncode == 0 and "1 open of 1 sessions of owner@example.com" in listed.stdout, listed.stderr
            revoked = _cli(tmp_path, "user", "sessions", "owner@example.com", "--revoke", GIMA_REDIS_URL=redis_url)
            assert revoked.returncode == 0 and "revoked 1 open session of owner@example.com" in revoked.stdout
            await _read_to_end(stream, 3)  # the open stream ends, told through Redis
            await asyncio.sleep(0.3)  # past the session cache
            async with session.get(f"{base}/api/auth/me", headers={"Authorization": f"Bearer {token}"}) as me:
                assert me.status == 401
            bystander_stream = await _stream_until(session, base, bystander, "another long one", 2)
            changed = _cli(tmp_path, "user", "role", "bystander@example.com", "alpha", GIMA_REDIS_URL=redis_url)
            assert changed.returncode == 0, changed.stderr
            await _read_to_end(bystander_stream, 3)  # a role change ends open streams too (they reconnect, re-checked)
            await asyncio.sleep(0.3)
            async with session.get(f"{base}/api/auth/me", headers={"Authorization": f"Bearer {bystander}"}) as me:
                assert me.status == 200 and "alpha" in (await me.json())["user"]["roles"]  # still signed in
            after = _cli(tmp_path, "user", "sessions", "owner@example.com")
            assert "0 open of 1 sessions" in after.stdout and "revoked" in after.stdout
            assert _cli(tmp_path, "user", "sessions", "ghost@example.com").returncode == 1
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def _kid(token: str) -> str:
    import jwt

    return str(jwt.get_unverified_header(token)["kid"])


async def test_keys_rotate_then_retire_on_a_running_server(tmp_path: Path) -> None:
    port = _free_port()
    ring = {"GIMA_KEY_RING_RELOAD_S": "0.2", "GIMA_KEY_ACTIVATION_DELAY_S": "0.6"}
    proc = subprocess.Popen(["gima-server", "--port", str(port)],
                            env=_env(tmp_path, GIMA_RATE_LIMITS="auth=1000/min/1000", **ring),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"

    async def me(session: aiohttp.ClientSession, token: str) -> int:
        async with session.get(f"{base}/api/auth/me", headers={"Authorization": f"Bearer {token}"}) as resp:
            return resp.status

    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, base, proc)
            old = await _sign_up(session, base, "before@example.com")
            rotated = _cli(tmp_path, "keys", "rotate", **ring)
            assert rotated.returncode == 0, rotated.stderr
            new_kid = rotated.stdout.split()[2].rstrip(";")
            assert _kid(await _sign_up(session, base, "during@example.com")) == _kid(old)  # not signing yet
            await asyncio.sleep(1.2)  # past the activation delay and a reload
            new = await _sign_up(session, base, "after@example.com")
            assert _kid(new) == new_kid and await me(session, old) == 200 and await me(session, new) == 200
            listed = _cli(tmp_path, "keys", "list", **ring).stdout
            assert f"{new_kid}  signs" in listed and f"{_kid(old)}  verifies" in listed
            assert _cli(tmp_path, "keys", "retire", new_kid, **ring).returncode == 1  # the signing key stays
            assert _cli(tmp_path, "keys", "retire", _kid(old), **ring).returncode == 0
            await asyncio.sleep(0.5)
            assert await me(session, old) == 401 and await me(session, new) == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    refused = _cli(tmp_path, "keys", "rotate", GIMA_SECRET_KEY="k" * 40)
    assert refused.returncode == 2 and "GIMA_SECRET_KEY is set" in refused.stderr


async def _acli(tmp_path: Path, *args: str, **env: str) -> tuple[int, str]:
    """The command, run without blocking this loop (a server in this test must keep answering meanwhile)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gima_server", *args, env=_env(tmp_path, **env),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_check_config_probe_tries_every_backend_once(tmp_path: Path, redis_url: str) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    async def models(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer sk-right":
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        return web.json_response({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    upstream = TestServer(app)
    await upstream.start_server()
    try:
        base = str(upstream.make_url("")).rstrip("/")
        rc, out = await _acli(tmp_path, "check-config", "--probe", GIMA_REDIS_URL=redis_url, GIMA_AGENT="openai",
                              GIMA_OPENAI_BASE_URL=base, GIMA_OPENAI_API_KEY="sk-right")
        assert rc == 0 and "store: ok" in out and "redis: ok" in out and "openai: ok" in out, out
        rc, out = await _acli(tmp_path, "check-config", "--probe", GIMA_REDIS_URL="redis://127.0.0.1:1",
                              GIMA_AGENT="openai", GIMA_OPENAI_BASE_URL=base, GIMA_OPENAI_API_KEY="sk-wrong")
        assert rc == 1 and "redis: FAILED" in out and "refused the API key (401)" in out and "sk-wrong" not in out, out
        rc, out = await _acli(tmp_path, "check-config", "--probe", GIMA_AGENT="openai", GIMA_OPENAI_BASE_URL=base + "/v1",
                              GIMA_OPENAI_API_KEY="sk-right")
        assert rc == 0 and "openai: ok" in out, out  # the /v1 form of the base is the same server
        rc, out = await _acli(tmp_path, "check-config", "--probe", GIMA_AGENT="openai", GIMA_OPENAI_BASE_URL=base + "/api",
                              GIMA_OPENAI_API_KEY="sk-right")
        assert rc == 1 and "/api/v1/models does not exist (404)" in out and "GIMA_OPENAI_BASE_URL" in out, out
        rc, out = await _acli(tmp_path, "check-config", "--probe", GIMA_AGENT="openai", GIMA_OPENAI_BASE_URL=base,
                              GIMA_OPENAI_API_KEY="sk-right", GIMA_OPENAI_MODEL="gpt-9-turbo")
        assert rc == 1 and "does not offer model 'gpt-9-turbo'" in out, out
        agents = tmp_path / "agents.toml"
        agents.write_text(f'[agents.good]\nkind = "openai"\nbase_url = "{base}/v1"\nmodel = "gpt-4o-mini"\n'
                          f'api_key_env = "TEST_PROBE_KEY"\n[agents.stale]\nkind = "openai"\nbase_url = "{base}"\n'
                          'model = "gpt-3"\napi_key_env = "TEST_PROBE_KEY"\n[agents.local]\nkind = "demo"\n')
        rc, out = await _acli(tmp_path, "check-config", "--probe", GIMA_AGENTS_FILE=str(agents),
                              TEST_PROBE_KEY="sk-right")
        assert rc == 1 and "good: ok" in out and "stale: FAILED" in out and "'gpt-3'" in out, out
        assert "local" not in out and "sk-right" not in out  # the demo calls nothing; the key is never shown
    finally:
        await upstream.close()


async def test_keys_create_list_revoke_for_an_admin_and_the_running_server_obeys(tmp_path: Path, redis_url: str) -> None:
    proc, base = _serve(tmp_path, GIMA_REDIS_URL=redis_url, GIMA_SESSION_CACHE_S="60", GIMA_DEMO_TOKENS_PER_S="0",
                        GIMA_DEMO_FIRST_TOKEN_MS="0", GIMA_DRAIN_S="0")
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, base, proc)
            await _sign_up(session, base, "robot-owner@example.com")
            made = _cli(tmp_path, "keys", "create", "Robot-Owner@example.com", "nightly job")
            assert made.returncode == 0, made.stderr
            key = made.stdout.strip().splitlines()[-1]
            remember(key)
            assert key.startswith("gima_sk_")
            key_id = made.stdout.split()[3]
            listed = _cli(tmp_path, "keys", "list", "--user", "robot-owner@example.com")
            assert listed.returncode == 0 and key_id in listed.stdout and "'nightly job'" in listed.stdout
            assert key not in listed.stdout and "1 API key of robot-owner@example.com" in listed.stdout
            headers = {"Authorization": f"Bearer {key}"}
            async with session.get(f"{base}/api/chats", headers=headers) as resp:
                assert resp.status == 200  # the server knows the key now (and caches it for 60 s)
            revoked = _cli(tmp_path, "keys", "revoke", key_id, GIMA_REDIS_URL=redis_url)
            assert revoked.returncode == 0, revoked.stderr
            for _ in range(50):  # told through Redis: well before the cache's 60 s
                async with session.get(f"{base}/api/chats", headers=headers) as resp:
                    if resp.status == 401:
                        break
                await asyncio.sleep(0.1)
            assert resp.status == 401
            assert _cli(tmp_path, "keys", "revoke", key_id).returncode == 1
            assert _cli(tmp_path, "keys", "create", "ghost@example.com", "x").returncode == 1
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


async def test_backup_while_serving_then_restore_brings_that_moment_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    backup_file = tmp_path / "backups" / "gima-1.sqlite3"
    env = {"GIMA_DATA_DIR": str(data), "GIMA_DEMO_TOKENS_PER_S": "0", "GIMA_DEMO_FIRST_TOKEN_MS": "0",
           "GIMA_RATE_LIMITS": "off", "GIMA_DRAIN_S": "0"}
    proc, base = _serve(tmp_path, **env)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, base, proc)
            token = await _sign_up(session, base, "kept@example.com")
            remember(token)
            auth = {"Authorization": f"Bearer {token}"}
            async with session.post(f"{base}/api/chat/stream", json={"content": "before the backup"}, headers=auth) as r:
                await r.read()
            made = _cli(tmp_path, "backup", str(backup_file), GIMA_DATA_DIR=str(data))  # while the server runs
            assert made.returncode == 0 and backup_file.exists(), made.stderr
            assert _cli(tmp_path, "backup", str(backup_file), GIMA_DATA_DIR=str(data)).returncode == 1  # never overwrites
            async with session.post(f"{base}/api/chat/stream", json={"content": "after the backup"}, headers=auth) as r:
                await r.read()
            busy = _cli(tmp_path, "restore", str(backup_file), "--yes", GIMA_DATA_DIR=str(data))
            assert busy.returncode == 1 and "in use" in busy.stderr  # refused while a server has the file open
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert _cli(tmp_path, "restore", str(backup_file), GIMA_DATA_DIR=str(data)).returncode == 2  # needs --yes
    not_a_db = tmp_path / "junk.sqlite3"
    not_a_db.write_bytes(b"not sqlite at all" * 100)
    assert _cli(tmp_path, "restore", str(not_a_db), "--yes", GIMA_DATA_DIR=str(data)).returncode == 1
    restored = _cli(tmp_path, "restore", str(backup_file), "--yes", GIMA_DATA_DIR=str(data))
    assert restored.returncode == 0, restored.stderr
    proc, base = _serve(tmp_path, **env)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, base, proc)
            async with session.get(f"{base}/api/chats", headers=auth) as resp:
                titles = [c["title"] for c in (await resp.json())["chats"]]
            assert titles == ["before the backup"]  # that moment, and nothing after it
            async with session.get(f"{base}/api/search", params={"q": "before"}, headers=auth) as resp:
                assert len((await resp.json())["results"]) >= 1  # the search index came back with it
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
