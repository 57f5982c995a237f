"""Anthropic's Messages API, streamed (message_start, content_block_delta/text_delta, message_delta, message_stop)."""

from __future__ import annotations

from typing import Any, AsyncIterator, Mapping

from ..observability.tracing import outgoing_traceparent
from .base import AgentEvent, AgentRequest, agent_phase, delta, finish, usage
from .chat_messages import alternating_turns, system_text
from .sampling import anthropic_options, merged
from .upstream import Upstream, UpstreamError, json_frame

API_VERSION = "2023-06-01"
_UNAVAILABLE = frozenset({"overloaded_error", "api_error", "rate_limit_error"})


class AnthropicAgent:
    def __init__(
        self, upstream: Upstream, model: str, api_key: str, name: str = "assistant", system_prompt: str = "",
        max_tokens: int = 2048,
        defaults: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self._upstream = upstream
        self._model = model
        self._api_key = api_key
        self.name = name
        self._system_prompt = system_prompt
        self._max_tokens = max_tokens
        self._defaults = dict(defaults or {})
        self._overrides = dict(overrides or {})

    def _body(self, request: AgentRequest) -> dict[str, object]:
        options = anthropic_options(merged(self._defaults, request.options, self._overrides))
        body: dict[str, object] = {
            "model": self._model, "max_tokens": self._max_tokens, **options, "stream": True,
            "messages": alternating_turns(request),
        }
        system = system_text(self._system_prompt, request)
        if system:
            body["system"] = system
        return body

    def _headers(self, request: AgentRequest) -> dict[str, str]:
        traceparent = outgoing_traceparent(request.trace_id)
        return {"x-api-key": self._api_key, "anthropic-version": API_VERSION, "traceparent": traceparent}

    async def stream(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        yield agent_phase(self.name, "start")
        call = self._upstream.call("/v1/messages", self._body(request), self._headers(request))
        input_tokens = output_tokens = 0
        async for message in call.messages():
            event = json_frame(message.data)
            kind = event.get("type", message.event)
            if kind == "message_start":
                input_tokens = int(event.get("message", {}).get("usage", {}).get("input_tokens", 0))
            elif kind == "content_block_delta" and event.get("delta", {}).get("type") == "text_delta":
                call.first_token()
                yield delta(self.name, event["delta"].get("text", ""))
            elif kind == "message_delta":
                output_tokens = int(event.get("usage", {}).get("output_tokens", output_tokens))
                if event.get("delta", {}).get("stop_reason") == "max_tokens":
                    yield finish("length")
            elif kind == "error":
                error = event.get("error", {})
                code = "upstream_unavailable" if error.get("type") in _UNAVAILABLE else "upstream_error"
                raise UpstreamError(code, f"{self._upstream.name}: {error.get('type')}: {error.get('message')}")
            elif kind == "message_stop":
                break
        if input_tokens or output_tokens:
            yield usage(input_tokens, output_tokens)
        yield agent_phase(self.name, "end")

    def breakers(self) -> dict[str, str]:
        return {self._upstream.name: self._upstream.breaker.state}

    async def close(self) -> None:
        await self._upstream.close()

