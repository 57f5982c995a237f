"""GET /v1/models and POST /v1/chat/completions: the OpenAI Chat Completions API over the same replies.

Each call is a stored turn (the last user message and the reply) in a new chat of the caller's history; the
messages before it are the reply's context, not stored again. A client that hangs up cancels the reply.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from .. import appkeys
from ..agents.sampling import SAMPLING_KEYS, SamplingError, check_sampling
from ..auth.sessions import require_user
from ..errors import ApiError
from ..idempotency import keyed_fingerprint
from ..ids import idempotency_key, new_chat_id, new_message_id
from ..observability.tracing import request_trace_id
from ..store.base import Exchange
from ..streams.events import to_json
from ..streams.reply import EventSource, Reply
from ..streams.routes import checked_content, new_chat_title, start_reply, subscriber_options
from ..streams.sse import Framing, stream_events
from ..validation import Field, check_object, parse_json, read_raw
from .openai_chunks import DONE_FRAME, ChunkEncoder, completion_body, error_object, error_status
from .translated import TranslatedSource, event_data

MAX_MESSAGES = 1000
_HANG_UP_POLL_S = 0.2
_ROLES = frozenset({"system", "developer", "user", "assistant"})

# What a call may carry. Sampling options and output limits reach the model (agents/sampling.py); bookkeeping
# options are accepted and have no effect; options that would change what comes back and cannot be honoured are
# refused below.
_BODY = {
    "model": Field(str, required=True, max_chars=200),
    "messages": Field(list, required=True),
    "stream": Field(bool),
    "stream_options": Field(dict),
    "n": Field(int),
    "temperature": Field((int, float)),
    "top_p": Field((int, float)),
    "max_tokens": Field(int),
    "max_completion_tokens": Field(int),
    "presence_penalty": Field((int, float)),
    "frequency_penalty": Field((int, float)),
    "logit_bias": Field(dict),
    "stop": Field((str, list)),
    "seed": Field(int),
    "user": Field(str, max_chars=256),
    "metadata": Field(dict),
    "store": Field(bool),
    "service_tier": Field(str, max_chars=32),
    "parallel_tool_calls": Field(bool),
    "reasoning_effort": Field(str, max_chars=32),
    "verbosity": Field(str, max_chars=32),
    "prompt_cache_key": Field(str, max_chars=256),
    "safety_identifier": Field(str, max_chars=256),
    "logprobs": Field(bool),
    "top_logprobs": Field(int),
    "response_format": Field(dict),
    "modalities": Field(list),
    "tools": Field(list),
    "tool_choice": Field((str, dict)),
}


def served_models(request: web.Request) -> list[str]:
    """The models a client can name: the agents file's ids, or `gima-<GIMA_AGENT>` without one."""
    return request.app[appkeys.MODELS].ids


async def list_models(request: web.Request) -> web.Response:
    await require_user(request)
    data = [{"id": model, "object": "model", "created": 0, "owned_by": "gima-server"} for model in served_models(request)]
    return web.json_response({"object": "list", "data": data})


def _refuse(message: str, param: str) -> ApiError:
    return ApiError(400, "invalid_request", f"{message} (parameter '{param}')")


def _text_of(content: Any, where: str) -> str:
    """A message's text: a string, or a list of text parts (what newer SDKs send)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise _refuse("only text content is supported", where)
            texts.append(part["text"])
        return "".join(texts)
    raise _refuse("content must be a string or a list of text parts", where)


def _conversation(messages: list[Any]) -> list[tuple[str, str]]:
    if not messages:
        raise _refuse("messages must not be empty", "messages")
    if len(messages) > MAX_MESSAGES:
        raise _refuse(f"at most {MAX_MESSAGES} messages", "messages")
    turns = []
    for n, message in enumerate(messages):
        where = f"messages[{n}]"
        if not isinstance(message, dict):
            raise _refuse("each message must be an object", where)
        role = message.get("role")
        if not isinstance(role, str):
            raise _refuse("role must be system, developer, user or assistant", f"{where}.role")
        if role in ("tool", "function") or message.get("tool_calls") or message.get("function_call"):
            raise _refuse("tool calls are not supported", where)
        if role not in _ROLES:
            raise _refuse("role must be system, developer, user or assistant", f"{where}.role")
        unknown = set(message) - {"role", "content", "name", "refusal", "audio"} - ({"audio"} if role != "assistant" else set())
        if unknown:
            raise _refuse(f"unknown field(s) {', '.join(sorted(unknown))}", where)
        text = _text_of(message.get("content") or "", f"{where}.content")
        if "\x00" in text:
            raise _refuse("content contains a NUL character", f"{where}.content")
        turns.append(("system" if role == "developer" else str(role), text))
    if turns[-1][0] != "user":
        raise _refuse("the last message must be the user's", f"messages[{len(turns) - 1}].role")
    return turns


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    """The sampling options and output limit the call set, within OpenAI's ranges (400 naming the parameter)."""
    try:
        return check_sampling({key: body[key] for key in SAMPLING_KEYS})
    except SamplingError as exc:
        raise _refuse(f"{exc.field} {exc.why}", exc.field) from None


def _check_options(body: dict[str, Any]) -> None:
    """Options whose answer this server cannot give are refused, so that no caller is silently misled."""
    if body["n"] not in (None, 1):
        raise _refuse("only n=1 is supported", "n")
    if body["tools"]:
        raise _refuse("tools are not supported", "tools")
    if body["tool_choice"] not in (None, "none", "auto"):
        raise _refuse("tools are not supported", "tool_choice")
    if body["logprobs"]:
        raise _refuse("logprobs are not supported", "logprobs")
    response_format = body["response_format"]
    if response_format is not None and response_format.get("type") != "text":
        raise _refuse("only the text response format is supported", "response_format")
    if body["modalities"] is not None and body["modalities"] != ["text"]:
        raise _refuse("only text output is supported", "modalities")
    options = body["stream_options"] or {}
    if set(options) - {"include_usage", "include_obfuscation"} or not isinstance(options.get("include_usage", False), bool):
        raise _refuse("stream_options takes include_usage (a boolean)", "stream_options")
    if options and not body["stream"]:
        raise _refuse("stream_options is only allowed with stream: true", "stream_options")


async def _read_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "body must be application/json")
    body = check_object(parse_json(await read_raw(request)), _BODY)
    _check_options(body)
    if body["model"] not in served_models(request):
        raise _refuse(f"unknown model {body['model']!r}; this server offers {', '.join(served_models(request))}",
                      "model")
    return body


async def chat_completions(request: web.Request) -> web.StreamResponse:
    principal = await require_user(request)
    body = await _read_body(request)
    sampling = _sampling(body)
    turns = _conversation(body["messages"])
    content = checked_content(request, turns[-1][1])
    header_key = request.headers.get("Idempotency-Key")
    key = idempotency_key(header_key) if header_key is not None else None
    exchange = Exchange(principal.user.id, new_chat_id(), new_chat_title(content), new_message_id(), new_message_id(),
                        content, time.time(),
                        context=tuple(turns[:-1]), model=str(body["model"]), options=sampling)
    source, outcome = await start_reply(request, principal, exchange, False, key,
                                        keyed_fingerprint(key, "POST", "/v1/chat/completions", body), all_context=True)
    completion_id = f"chatcmpl-{outcome.message_id}"
    created, model = int(time.time()), str(body["model"])
    # Programs do not resume: the reply of a caller that hangs up is stopped (and stored as cancelled).
    ours = outcome.reply if outcome.reply is not None and not outcome.replayed else None
    try:
        if body["stream"]:
            include_usage = bool((body["stream_options"] or {}).get("include_usage", False))
            encoder = ChunkEncoder(completion_id, model, created, include_usage)
            return await stream_events(
                request, TranslatedSource(source, encoder), 0, subscriber_options(request), request_trace_id(request),
                request.app[appkeys.METRICS], {"Idempotent-Replayed": "true"} if outcome.replayed else None,
                principal.session_id, _FRAMING, on_gone=None if ours is None else lambda: ours.cancel("cancelled"))
        return await _complete(request, source, completion_id, model, created, ours)
    except asyncio.CancelledError:  # the handler of a closed connection, where the server cancels handlers
        if ours is not None:
            ours.cancel("cancelled")
        raise


def _slow_consumer_frames(trace_id: str) -> bytes:
    error = {"code": "slow_consumer", "message": "this client fell too far behind", "traceId": trace_id}
    return b"data: " + to_json(error_object(error)).encode() + b"\n\n" + DONE_FRAME


_FRAMING = Framing(b"", _slow_consumer_frames)


async def _complete(
    request: web.Request, source: EventSource, completion_id: str, model: str, created: int, ours: Reply | None,
) -> web.Response:
    """A call without `stream`: wait for the reply's end, watching for a caller that hangs up meanwhile."""
    try:
        while not (source.events and source.events[-1].terminal) and not source.finished:
            try:
                await asyncio.wait_for(source.wait_beyond(len(source.events)), _HANG_UP_POLL_S)
            except TimeoutError:
                pass
            transport = request.transport
            if transport is None or transport.is_closing():
                if ours is not None:
                    ours.cancel("cancelled")
                raise web.HTTPBadRequest  # nobody reads it; aiohttp drops the answer of a closed connection
    finally:
        source.close()
    final = source.events[-1]
    data = event_data(final)
    for event in source.events:  # a fallback that answered is the model the completion names
        if event.name == "model":
            model = str(event_data(event)["model"])
    if final.name == "done":
        return web.json_response(completion_body(completion_id, model, created, data["content"],
                                                 data.get("finishReason") or "stop", data.get("usage")))
    if data["code"] == "too_long":
        text = "".join(event_data(e)["text"] for e in source.events if e.name == "delta")
        return web.json_response(completion_body(completion_id, model, created, text, "length", None))
    status, _ = error_status(data["code"])
    retry = {"Retry-After": str(max(1, round(data["retryAfter"])))} if data.get("retryAfter") else {}
    return web.json_response(error_object(data), status=status, headers=retry)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/chat/completions", chat_completions)

