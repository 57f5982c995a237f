"""Fake OpenAI-compatible and Anthropic servers speaking the real streaming formats, with fault switches."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DEFAULT_TOKENS = ["Hello", " there", ",", " tides", " rise", " twice", " a", " day", "."]


@dataclass
class Faults:
    tokens: list[str] = field(default_factory=lambda: list(DEFAULT_TOKENS))
    first_token_delay_s: float = 0.0
    token_delay_s: float = 0.0
    status: int | None = None  # answer this instead of streaming...
    fail_times: int = 10**9  # ...for this many requests
    retry_after: str | None = None
    stall_after: int | None = None  # send this many tokens, then nothing more (connection stays open)
    drop_after: int | None = None  # send this many tokens, then cut the connection
    malformed_after: int | None = None  # send this many tokens, then a frame that is not JSON
    stream_error: str | None = None  # Anthropic: an `error` event (e.g. overloaded_error) after the tokens


class FakeUpstream:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.faults = Faults()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.disconnects = 0
        self.app = web.Application()
        path = "/v1/chat/completions" if kind == "openai" else "/v1/messages"
        self.app.router.add_post(path, self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        faults = self.faults
        if faults.status is not None and len(self.requests) <= faults.fail_times:
            headers = {"Retry-After": faults.retry_after} if faults.retry_after else {}
            return web.json_response({"error": {"message": "fake failure"}}, status=faults.status, headers=headers)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        try:
            await self._stream(request, resp)
        except ConnectionResetError:
            self.disconnects += 1
        except asyncio.CancelledError:  # the server cancels a handler whose client went away
            self.disconnects += 1
            raise
        return resp

    async def _stream(self, request: web.Request, resp: web.StreamResponse) -> None:
        faults, frames = self.faults, self._frames()
        await resp.write(next(frames))  # the opening frame (role chunk / message_start)
        await self._wait(request, faults.first_token_delay_s)
        for i, token in enumerate(faults.tokens):
            if i == faults.stall_after:
                await self._wait(request, 3600)
            if i == faults.drop_after:
                assert request.transport is not None
                request.transport.abort()
                return
            if i == faults.malformed_after:
                await resp.write(b"data: {this is not json\n\n")
            await resp.write(self._token_frame(token))
            await self._wait(request, faults.token_delay_s)
        for frame in frames:
            await resp.write(frame)

    async def _wait(self, request: web.Request, seconds: float) -> None:
        """Sleep, but notice a client that goes away meanwhile (the test of 'cancel aborts the upstream')."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            if request.transport is None or request.transport.is_closing():
                raise ConnectionResetError
            await asyncio.sleep(min(0.01, end - loop.time()))

    def _frames(self):  # type: ignore[no-untyped-def]
        if self.kind == "openai":
            yield _data({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
            yield _data({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            yield _data({"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": len(self.faults.tokens), "total_tokens": 11 + len(self.faults.tokens)}})
            yield b"data: [DONE]\n\n"
            return
        yield _event("message_start", {"type": "message_start", "message": {"id": "m1", "type": "message", "role": "assistant", "content": [], "usage": {"input_tokens": 13, "output_tokens": 1}}})
        yield _event("content_block_stop", {"type": "content_block_stop", "index": 0})
        if self.faults.stream_error:
            yield _event("error", {"type": "error", "error": {"type": self.faults.stream_error, "message": "Overloaded"}})
            return
        yield _event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": len(self.faults.tokens)}})
        yield _event("message_stop", {"type": "message_stop"})

    def _token_frame(self, token: str) -> bytes:
        if self.kind == "openai":
            return _data({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": token}}]})
        return _event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": token}})


def _data(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def _event(name: str, obj: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(obj)}\n\n".encode()
