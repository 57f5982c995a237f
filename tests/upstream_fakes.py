"""Fake OpenAI-compatible and Anthropic servers speaking the real streaming formats, with fault switches."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

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
    cut_by_limit: bool = False  # the reply ends as one cut by its token limit (finish_reason length / max_tokens)


class FakeUpstream:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.faults = Faults()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.disconnects = 0
        self.app = web.Application(client_max_size=64 * 1024 * 1024)  # audio uploads: the server under test limits
        path = "/v1/chat/completions" if kind == "openai" else "/v1/messages"
        self.app.router.add_post(path, self.handle)
        if kind == "openai":
            self.app.router.add_post("/v1/embeddings", self.embeddings)
            self.app.router.add_post("/v1/audio/transcriptions", self.transcriptions)
            self.app.router.add_post("/v1/audio/speech", self.speech)
        self.embedding_requests: list[dict[str, Any]] = []
        self.uploads: list[dict[str, Any]] = []  # each transcription's fields, with the file's bytes under "file"
        self.speech_audio = b"ID3" + bytes(range(256)) * 64  # what /v1/audio/speech answers (an MP3's look)

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.embedding_requests.append(body)
        self.headers.append(dict(request.headers))
        if self.faults.status is not None and len(self.embedding_requests) <= self.faults.fail_times:
            return web.json_response({"error": {"message": "fake failure"}}, status=self.faults.status)
        inputs = [body["input"]] if isinstance(body["input"], str) else body["input"]
        data = [{"object": "embedding", "index": i, "embedding": topic_vector(str(text))} for i, text in enumerate(inputs)]
        return web.json_response({"object": "list", "data": data, "model": body["model"],
                                  "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}})

    async def transcriptions(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        fields: dict[str, Any] = {}
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            assert isinstance(part, BodyPartReader)
            fields[str(part.name)] = await part.read() if part.name == "file" else await part.text()
            if part.name == "file":
                fields["filename"] = part.filename
        self.uploads.append(fields)
        return web.json_response({"text": f"heard {len(fields.get('file', b''))} bytes"})

    async def speech(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        self.uploads.append(await request.json())
        resp = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        await resp.prepare(request)
        for start in range(0, len(self.speech_audio), 4096):
            await resp.write(self.speech_audio[start:start + 4096])
        await resp.write_eof()
        return resp

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
            reason = "length" if self.faults.cut_by_limit else "stop"
            yield _data({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
            yield _data({"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": len(self.faults.tokens), "total_tokens": 11 + len(self.faults.tokens)}})
            yield b"data: [DONE]\n\n"
            return
        yield _event("message_start", {"type": "message_start", "message": {"id": "m1", "type": "message", "role": "assistant", "content": [], "usage": {"input_tokens": 13, "output_tokens": 1}}})
        yield _event("content_block_stop", {"type": "content_block_stop", "index": 0})
        if self.faults.stream_error:
            yield _event("error", {"type": "error", "error": {"type": self.faults.stream_error, "message": "Overloaded"}})
            return
        stop_reason = "max_tokens" if self.faults.cut_by_limit else "end_turn"
        yield _event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": {"output_tokens": len(self.faults.tokens)}})
        yield _event("message_stop", {"type": "message_stop"})

    def _token_frame(self, token: str) -> bytes:
        if self.kind == "openai":
            return _data({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": token}}]})
        return _event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": token}})


def _data(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def _event(name: str, obj: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(obj)}\n\n".encode()


# Deterministic "meaning": each topic's words (none shared between topics) pull a vector towards its axis, so two
# texts about one topic are close even when they share no word.
TOPICS = (
    ("tide", "tides", "ocean", "sea", "wave", "waves", "moon", "lunar", "coastal", "shore", "beach", "water"),
    ("bread", "oven", "flour", "bake", "baking", "dough", "yeast", "loaf", "kitchen", "recipe"),
    ("rocket", "orbit", "launch", "satellite", "astronaut", "spacecraft", "nasa", "booster"),
)


def topic_vector(text: str) -> list[float]:
    words = [w.strip(".,!?;:'\"").lower() for w in text.split()]
    counts = [float(sum(w in topic for w in words)) for topic in TOPICS]
    vector = [*counts, 0.05]  # a little of everything, so no vector is zero
    norm = sum(v * v for v in vector) ** 0.5
    return [v / norm for v in vector]
