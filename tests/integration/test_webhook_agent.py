"""A webhook agent (`kind = "webhook"`): the turn goes to a backend (an aiohttp app here), signed; the backend posts
the reply's events back, signed, to the callback URL of any process; they stream, resume and are stored like any
agent's. Bad signatures are 401, events after the end 409; silence ends the reply upstream_timeout; a stop
reaches the backend as a signed cancel call."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from gima_server.webhooks.model import new_secret

from ..processes import wait_healthy
from ..redis_server import free_port
from ..sse import parse_sse

SECRET = new_secret()


class Backend:
    """An agent backend that works asynchronously: it takes the turn at once and posts the reply's events later."""

    def __init__(self, script: list[list[dict[str, Any]]], pause_s: float = 0.05) -> None:
        self.script = script  # batches of events to post back, in order
        self.pause_s = pause_s
        self.turns: list[dict[str, Any]] = []
        self.cancels: list[dict[str, Any]] = []
        self.callback_answers: list[int] = []
        self.callback_base: str | None = None  # post to this process instead of the callbackUrl's (another one)
        self.verifier = Webhook(SECRET)
        self.app = web.Application()
        self.app.router.add_post("/agent", self.take)
        self._tasks: set[asyncio.Task[None]] = set()

    async def take(self, request: web.Request) -> web.Response:
        body = self.verifier.verify(await request.text(), dict(request.headers))  # raises on a bad signature
        if body["type"] == "reply.cancelled":
            self.cancels.append(body)
        else:
            self.turns.append(body)
            task = asyncio.create_task(self.answer(body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.Response(status=202)

    async def answer(self, turn: dict[str, Any]) -> None:
        url = turn["callbackUrl"]
        if self.callback_base is not None:
            url = self.callback_base + url[url.index("/api/hooks/"):]
        async with aiohttp.ClientSession() as session:
            for batch in self.script:
                await asyncio.sleep(self.pause_s)
                self.callback_answers.append(await post_signed(session, url, {"events": batch}))


async def post_signed(session: aiohttp.ClientSession, url: str, body: dict[str, Any], secret: str = SECRET,
                      delivery_id: str | None = None, at: datetime | None = None) -> int:
    payload = json.dumps(body)
    msg_id = delivery_id or f"msg_{uuid.uuid4().hex}"
    when = at or datetime.now(tz=UTC)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())),
               "webhook-signature": Webhook(secret).sign(msg_id, when, payload), "Content-Type": "application/json"}
    async with session.post(url, data=payload, headers=headers) as resp:
        await resp.read()
        return resp.status


SCRIPT = [
    [{"type": "agent", "agent": "researcher", "phase": "start"}, {"type": "delta", "agent": "researcher",
                                                                   "text": "Tides follow "}],
    [{"type": "delta", "agent": "researcher", "text": "the moon."}, {"type": "agent", "agent": "researcher",
                                                                     "phase": "end"}],
    [{"type": "done", "usage": {"inputTokens": 12, "outputTokens": 4}}],
]


def _agents_file(tmp_path: Path, backend_port: int, callback_base: str, timeout_s: float = 5) -> str:
    path = tmp_path / "agents.toml"
    path.write_text(f"""
[agents.async]
kind = "webhook"
url = "http://127.0.0.1:{backend_port}/agent"
secret_env = "ASYNC_AGENT_SECRET"
timeout_s = {timeout_s}
callback_base_url = "{callback_base}"
default = true
""")
    return str(path)


def _start(tmp_path: Path, port: int, agents: str, **env: str) -> subprocess.Popen[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GIMA_")}
    clean.update({"GIMA_DATA_DIR": str(tmp_path / "data"), "GIMA_AGENTS_FILE": agents, "ASYNC_AGENT_SECRET": SECRET,
                  **env})
    return subprocess.Popen([sys.executable, "-m", "gima_server", "--port", str(port)], env=clean,
                            stdout=subprocess.DEVNULL)


def _stop(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(timeout=30)


async def _sign_up(session: aiohttp.ClientSession, base: str) -> dict[str, str]:
    async with session.post(f"{base}/api/auth/signup",
                            json={"email": "async@example.com", "password": "a good password"}) as resp:
        token = (await resp.json())["accessToken"]
    return {"Authorization": f"Bearer {token}"}


async def test_the_backends_events_stream_and_are_stored_and_bad_or_late_callbacks_change_nothing(
    tmp_path: Path, aiohttp_server: Any,
) -> None:
    backend = Backend(SCRIPT)
    backend_server = await aiohttp_server(backend.app)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(tmp_path, port, _agents_file(tmp_path, backend_server.port, base))
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, base, proc)
            auth = await _sign_up(session, base)
            async with session.post(f"{base}/api/chat/stream", json={"content": "Why are there tides?"},
                                    headers=auth) as resp:
                events, _ = parse_sse(await resp.read())
            names = [e.name for e in events]
            assert names == ["meta", "agent", "delta", "delta", "agent", "done"]
            assert [e.id for e in events] == list(range(1, 7))
            done = events[-1].data
            assert done["content"] == "Tides follow the moon." and done["usage"]["inputTokens"] == 12
            turn = backend.turns[0]
            assert turn["type"] == "reply.requested" and turn["replyId"] == done["messageId"]
            assert turn["messages"][-1] == {"role": "user", "content": "Why are there tides?"}
            assert turn["callbackUrl"] == f"{base}/api/hooks/replies/{done['messageId']}/events"
            assert backend.callback_answers == [202, 202, 202] and backend.cancels == []

            hook = turn["callbackUrl"]
            late = {"events": [{"type": "delta", "text": "more"}]}
            assert await post_signed(session, hook, late) == 409  # the reply has ended
            assert await post_signed(session, hook, late, secret=new_secret()) == 401
            stale = datetime.fromtimestamp(datetime.now(tz=UTC).timestamp() - 600, tz=UTC)
            assert await post_signed(session, hook, late, at=stale) == 401
            assert await post_signed(session, f"{base}/api/hooks/replies/nope/events", late) == 404
            async with session.get(f"{base}/api/chats/{events[0].data['chatId']}/messages", headers=auth) as resp:
                stored = (await resp.json())["messages"][-1]
            assert stored["content"] == "Tides follow the moon." and stored["status"] == "complete"
    finally:
        _stop(proc)


async def test_a_silent_backend_ends_the_reply_upstream_timeout_and_a_stop_reaches_the_backend(
    tmp_path: Path, aiohttp_server: Any,
) -> None:
    backend = Backend([[{"type": "delta", "text": "thinking"}]], pause_s=0.05)
    backend_server = await aiohttp_server(backend.app)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(tmp_path, port, _agents_file(tmp_path, backend_server.port, base, timeout_s=1))
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, base, proc)
            auth = await _sign_up(session, base)
            async with session.post(f"{base}/api/chat/stream", json={"content": "take your time"},
                                    headers=auth) as resp:
                events, _ = parse_sse(await resp.read())
            assert [e.name for e in events] == ["meta", "delta", "error"]
            assert events[-1].data["code"] == "upstream_timeout"
            await asyncio.sleep(0.3)
            assert [c["replyId"] for c in backend.cancels] == [events[0].data["messageId"]]

            backend.script = []  # says nothing: the client stops the reply
            async with session.post(f"{base}/api/chat/stream", json={"content": "never mind"}, headers=auth) as resp:
                first = await resp.content.readuntil(b"\n\n")
                while b"messageId" not in first:
                    first = await resp.content.readuntil(b"\n\n")
                message_id = json.loads(first.split(b"data: ", 1)[1])["messageId"]
                async with session.post(f"{base}/api/chat/streams/{message_id}/cancel", headers=auth) as stop:
                    assert stop.status == 202
            for _ in range(40):
                if message_id in [c["replyId"] for c in backend.cancels]:
                    break
                await asyncio.sleep(0.05)
            assert message_id in [c["replyId"] for c in backend.cancels]
    finally:
        _stop(proc)


async def test_callbacks_to_another_process_reach_the_reply_which_resumes_there_whole(
    tmp_path: Path, aiohttp_server: Any, redis_url: str,
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "secret_key").write_text("shared-secret-for-both-processes-0123456789")
    script = [[{"type": "delta", "text": f"part {n} "}] for n in range(12)] + [[{"type": "done"}]]
    backend = Backend(script, pause_s=0.1)
    backend_server = await aiohttp_server(backend.app)
    ports = [free_port(), free_port()]
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    backend.callback_base = bases[1]  # every callback lands on the process that does not produce the reply
    agents = _agents_file(tmp_path, backend_server.port, bases[0])
    procs = [_start(tmp_path, p, agents, GIMA_REDIS_URL=redis_url) for p in ports]
    try:
        async with aiohttp.ClientSession() as session:
            for proc, base in zip(procs, bases, strict=True):
                await wait_healthy(session, base, proc)
            auth = await _sign_up(session, bases[0])
            seen: list[Any] = []
            async with session.post(f"{bases[0]}/api/chat/stream", json={"content": "count"}, headers=auth) as resp:
                while len([e for e in seen if e.name == "delta"]) < 3:
                    chunk = await resp.content.readuntil(b"\n\n")
                    seen += parse_sse(chunk)[0]
            # Cut after three deltas; resume from the other process with the last id seen.
            last = seen[-1].id
            async with session.get(f"{bases[1]}/api/chat/streams/{seen[0].data['messageId']}/events",
                                   headers={**auth, "Last-Event-ID": str(last)}) as resp:
                rest, _ = parse_sse(await resp.read())
            ids = [e.id for e in seen + rest]
            assert ids == list(range(1, len(ids) + 1))  # nothing lost, nothing repeated
            text = "".join(e.data["text"] for e in seen + rest if e.name == "delta")
            assert text == "".join(f"part {n} " for n in range(12)) and rest[-1].name == "done"
            assert set(backend.callback_answers) == {202}
    finally:
        _stop(*procs)


@pytest.mark.parametrize("problem", ["no secret_env", "unset variable", "bad url"])
def test_check_config_names_a_bad_webhook_agent(tmp_path: Path, problem: str) -> None:
    lines = {"no secret_env": 'url = "http://127.0.0.1:9/agent"',
             "unset variable": 'url = "http://127.0.0.1:9/agent"\nsecret_env = "NOT_SET_ANYWHERE"',
             "bad url": 'url = "ftp://x"\nsecret_env = "ASYNC_AGENT_SECRET"'}[problem]
    path = tmp_path / "agents.toml"
    path.write_text(f"[agents.async]\nkind = \"webhook\"\n{lines}\n")
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path), "GIMA_AGENTS_FILE": str(path),
           "GIMA_DATA_DIR": str(tmp_path / "data"), "ASYNC_AGENT_SECRET": SECRET}
    done = subprocess.run([sys.executable, "-m", "gima_server", "check-config"], env=env, capture_output=True,
                          text=True, timeout=60)
    expected = {"no secret_env": "secret_env is required", "unset variable": "NOT_SET_ANYWHERE, which is not set",
                "bad url": "url must start with http:// or https://"}[problem]
    assert done.returncode == 2 and expected in done.stderr, done.stderr
    assert SECRET not in done.stderr + done.stdout
