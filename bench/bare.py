"""The bare baseline of bench/paced.py: plain aiohttp writing the demo agent's events, one
`StreamResponse.write` per event. No aiohttp-sse, no auth, no store, no replay, no batching, no metrics.

  python -m bench.bare --port 9001 --tokens-per-s 50 --words 200
  python -m bench.bare --port 9001 --chat /tmp/chat.sqlite3 --api-key KEY   # the "chat" baseline

`--chat` makes it the least a chat server's start must do, written by hand for speed: an API key checked (its
SHA-256 looked up), the body's size, shape and fields checked, a cap on a user's running replies, the exchange (a
chat, the user's message, the reply's row) written to SQLite by one writer thread in group commits without
waiting for it before the first event, and the reply's final write committed before `done` — and nothing else (no
rate limit, idempotency, replay log, resume, cancel-previous, context budget, checkpoints, metrics or tracing). It
answers what the issue-26 targets would read against a baseline that signs in, validates and stores.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from aiohttp import web

from gima_server.agents.demo import _BURST, _until, compose

_TOKEN = re.compile(r"\S+\s*")
SETTINGS: web.AppKey[argparse.Namespace] = web.AppKey("settings", argparse.Namespace)
_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _frame(event_id: int, name: str, data: dict[str, object]) -> bytes:
    return f"id: {event_id}\nevent: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


Statements = list[tuple[str, tuple[Any, ...]]]
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS chats (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, created_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, chat_id TEXT NOT NULL, user_id TEXT NOT NULL,"
    " role TEXT NOT NULL, content TEXT NOT NULL, status TEXT NOT NULL, seq INTEGER NOT NULL, created_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS messages_by_chat ON messages(chat_id, seq)",
)


class GroupWriter:
    """One thread writes to SQLite whatever queued while it wrote the last group, in one transaction."""

    def __init__(self, path: str, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: queue.SimpleQueue[tuple[Statements, asyncio.Future[None]]] = queue.SimpleQueue()
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        for statement in _SCHEMA:
            conn.execute(statement)
        threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def write(self, statements: Statements) -> asyncio.Future[None]:
        done: asyncio.Future[None] = self._loop.create_future()
        self._queue.put((statements, done))
        return done

    def _run(self, conn: sqlite3.Connection) -> None:
        while True:
            group = [self._queue.get()]
            while True:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            failed: Exception | None = None
            try:
                conn.execute("BEGIN")
                for statements, _ in group:
                    for sql, args in statements:
                        conn.execute(sql, args)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:  # the group's replies fail (a 500 to the bench, not a hang)
                failed = exc
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            self._loop.call_soon_threadsafe(_settle, [done for _, done in group], failed)


def _settle(futures: list[asyncio.Future[None]], failed: Exception | None) -> None:
    for done in futures:
        if not done.done():
            if failed is None:
                done.set_result(None)
            else:
                done.set_exception(failed)


class Chat:
    """The chat baseline's state: its one API key's digest, the writer, each user's running replies."""

    MAX_BODY, MAX_CONTENT, MAX_RUNNING = 64 * 1024, 32_000, 100_000
    FIELDS = frozenset({"content", "chatId", "messageId", "model"})

    def __init__(self, api_key: str, writer: GroupWriter) -> None:
        self.keys = {hashlib.sha256(api_key.encode()).digest(): "user-1"}
        self.writer = writer
        self.running: dict[str, int] = {}

    def user(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        user = self.keys.get(hashlib.sha256(header[7:].encode()).digest()) if header.startswith("Bearer ") else None
        if user is None:
            raise Refused(401, "unauthorized")
        return user

    async def body(self, request: web.Request) -> str:
        if request.content_length is not None and request.content_length > self.MAX_BODY:
            raise Refused(413, "payload_too_large")
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            raise Refused(400, "invalid_request") from None
        if not isinstance(body, dict) or not body.keys() <= self.FIELDS:
            raise Refused(400, "invalid_request")
        content = body.get("content")
        if not isinstance(content, str) or not content.strip() or len(content) > self.MAX_CONTENT:
            raise Refused(400, "invalid_request")
        return content

    def admit(self, user: str) -> None:
        if self.running.get(user, 0) >= self.MAX_RUNNING:
            raise Refused(429, "rate_limited")
        self.running[user] = self.running.get(user, 0) + 1

    def begin(self, user: str, content: str) -> tuple[str, str]:
        """The exchange written (not waited for): a new chat, the user's message, the reply's streaming row."""
        chat_id, question_id, message_id, now = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex, time.time()
        self.writer.write([
            ("INSERT INTO chats VALUES (?, ?, ?)", (chat_id, user, now)),
            ("INSERT INTO messages VALUES (?, ?, ?, 'user', ?, 'complete', 1, ?)", (question_id, chat_id, user, content, now)),
            ("INSERT INTO messages VALUES (?, ?, ?, 'assistant', '', 'streaming', 2, ?)", (message_id, chat_id, user, now)),
        ])
        return chat_id, message_id

    def finish(self, message_id: str, text: str) -> asyncio.Future[None]:
        return self.writer.write([("UPDATE messages SET content = ?, status = 'complete' WHERE id = ?", (text, message_id))])


CHAT: web.AppKey[Chat] = web.AppKey("chat", Chat)


class Refused(Exception):
    """A request the chat baseline turns away: its status and error code."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status, self.code = status, code

    def response(self) -> web.Response:
        return web.json_response({"error": {"code": self.code}}, status=self.status)


async def _events(resp: web.StreamResponse, settings: argparse.Namespace, content: str,
                  meta: dict[str, object]) -> tuple[int, list[str]]:
    """The meta event, then the demo's agents and tokens at the demo's pace; the last id and the text's parts."""
    n, parts = 0, []
    interval = 1 / settings.tokens_per_s if settings.tokens_per_s > 0 else 0.0
    loop = asyncio.get_running_loop()
    n += 1
    await resp.write(_frame(n, "meta", meta))
    next_at = loop.time()
    for agent, text in compose(content, settings.words):
        n += 1
        await resp.write(_frame(n, "agent", {"agent": agent, "phase": "start"}))
        for i, token in enumerate(_TOKEN.findall(text)):
            # The demo agent's pace, exactly: its timer (no running-loop lookup a token), and tokens already due
            # sent together, a burst a turn at most, when the loop is behind.
            if interval:
                next_at += interval
                if next_at > loop.time():
                    await _until(loop, next_at)
                elif i % _BURST == 0:
                    await asyncio.sleep(0)
            elif i % _BURST == 0:
                await asyncio.sleep(0)
            parts.append(token)
            n += 1
            await resp.write(_frame(n, "delta", {"agent": agent, "text": token}))
        n += 1
        await resp.write(_frame(n, "agent", {"agent": agent, "phase": "end"}))
    return n, parts


async def stream(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    resp = web.StreamResponse(headers=_HEADERS)
    await resp.prepare(request)
    message_id = uuid.uuid4().hex
    try:
        n, parts = await _events(resp, request.app[SETTINGS], body["content"],
                                 {"messageId": message_id, "chatId": "c", "streamId": message_id, "traceId": "t"})
        await resp.write(_frame(n + 1, "done", {"messageId": message_id, "content": "".join(parts),
                                                "finishReason": "stop"}))
    except ConnectionResetError:
        pass  # the client left
    return resp


@asynccontextmanager
async def _admitted(request: web.Request) -> AsyncIterator[tuple[Chat, str, str, web.StreamResponse, str, str]]:
    """Signed in, checked and admitted (else Refused), the exchange written, the response opened: the chat, its user,
    the content, the response, the chat's and the reply's ids; the user's running count given back after."""
    chat = request.app[CHAT]
    user = chat.user(request)
    content = await chat.body(request)
    chat.admit(user)
    try:
        chat_id, message_id = chat.begin(user, content)
        resp = web.StreamResponse(headers=_HEADERS)
        await resp.prepare(request)
        yield chat, user, content, resp, chat_id, message_id
    finally:
        chat.running[user] -= 1


async def chat_stream(request: web.Request) -> web.StreamResponse:
    """The chat baseline's reply: admitted as above, its end stored before `done`."""
    try:
        async with _admitted(request) as (chat, _, content, resp, chat_id, message_id):
            try:
                n, parts = await _events(resp, request.app[SETTINGS], content, {
                    "messageId": message_id, "chatId": chat_id, "streamId": message_id, "traceId": "t"})
            except ConnectionResetError:
                await chat.finish(message_id, "")  # the client left: the reply ends stored (gima would go on)
                return resp
            text = "".join(parts)
            await chat.finish(message_id, text)  # stored before the client is told it is complete
            try:
                await resp.write(_frame(n + 1, "done", {"messageId": message_id, "content": text,
                                                        "finishReason": "stop"}))
            except ConnectionResetError:
                pass
            return resp
    except Refused as refused:
        return refused.response()


async def hold(request: web.Request) -> web.StreamResponse:
    """An idle stream: one event, then nothing until the client leaves (no timers: the bare minimum)."""
    resp = web.StreamResponse(headers=_HEADERS)
    await resp.prepare(request)
    await resp.write(_frame(1, "meta", {}))
    await asyncio.Event().wait()  # until the server stops (the bench stops it)
    return resp


async def start(request: web.Request) -> web.StreamResponse:
    """A reply's start and nothing after it: the body read, the response opened, the first event, then held open
    (bench/start_cost.py's baseline for gima-server's reply start)."""
    body = await request.json()
    resp = web.StreamResponse(headers=_HEADERS)
    await resp.prepare(request)
    message_id = uuid.uuid4().hex
    await resp.write(_frame(1, "meta", {"messageId": message_id, "chatId": "c", "streamId": message_id,
                                        "traceId": "t", "content": len(body["content"])}))
    await asyncio.Event().wait()
    return resp


async def chat_start(request: web.Request) -> web.StreamResponse:
    """The chat baseline's start and nothing after it (bench.start_cost's `--baseline chat`): admitted as above, the
    first event written, then held open."""
    try:
        async with _admitted(request) as (_, _, _, resp, chat_id, message_id):
            await resp.write(_frame(1, "meta", {"messageId": message_id, "chatId": chat_id, "streamId": message_id,
                                                "traceId": "t"}))
            await asyncio.Event().wait()
            return resp
    except Refused as refused:
        return refused.response()


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@asynccontextmanager
async def running_bare(tokens_per_s: float, words: int, pin: list[str] | None = None,
                       chat: tuple[str, str] | None = None) -> AsyncIterator[tuple[int, int]]:
    """Start this server as a process on a free port (prefixed by `pin`, e.g. taskset); yield (port, pid).
    chat: (SQLite file, API key) for the chat baseline."""
    from .common import free_port
    from .load import _wait_healthy

    port = free_port()
    argv = [sys.executable, "-m", "bench.bare", "--port", str(port), "--tokens-per-s", str(tokens_per_s),
            "--words", str(words)]
    if chat is not None:
        argv += ["--chat", chat[0], "--api-key", chat[1]]
    proc = subprocess.Popen([*(pin or []), *argv], stdout=subprocess.DEVNULL)
    try:
        await _wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield port, proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # its idle streams never end by themselves
            proc.kill()
            proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens-per-s", type=float, default=50)
    parser.add_argument("--words", type=int, default=200)
    parser.add_argument("--chat", default="", help="a SQLite file: run as the chat baseline (see above)")
    parser.add_argument("--api-key", default="", help="the chat baseline's one API key")
    args = parser.parse_args()
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    app = web.Application()
    app[SETTINGS] = args
    if args.chat:
        app[CHAT] = Chat(args.api_key, GroupWriter(args.chat, loop))
    app.router.add_post("/stream", chat_stream if args.chat else stream)
    app.router.add_get("/hold", hold)
    app.router.add_post("/start", chat_start if args.chat else start)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, loop=loop, backlog=4096)


if __name__ == "__main__":
    main()
