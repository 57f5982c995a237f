"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp, LiteLLM...): /v1/chat/completions, stream."""

from __future__ import annotations

from typing import Any, AsyncIterator, Mapping

from ..observability.tracing import outgoing_traceparent
from .base import AgentEvent, AgentRequest, agent_phase, delta, finish, usage
from .chat_messages import alternating_turns, system_text
from .sampling import merged
from .upstream import Upstream, UpstreamError, json_frame


class OpenAIAgent:
    def __init__(
        self,
        upstream: Upstream,
        model: str,
        api_key: str,
        name: str = "assistant",
        system_prompt: str = "",
        extra_headers: Mapping[str, str] | None = None,
        defaults: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self._upstream = upstream
        self._model = model
        self._api_key = api_key
        self.name = name
        self._system_prompt = system_prompt
        self._extra_headers = dict(extra_headers or {})
        self._defaults = dict(defaults or {})  # the agents file's, under the request's own values
        self._overrides = dict(overrides or {})  # a pipeline step's own, over the request's

    def _body(self, request: AgentRequest) -> dict[str, object]:
        system = system_text(self._system_prompt, request)
        messages = ([{"role": "system", "content": system}] if system else []) + alternating_turns(request)
        options = merged(self._defaults, request.options, self._overrides)
        return {"model": self._model, "messages": messages, **options, "stream": True,
                "stream_options": {"include_usage": True}}

    def _headers(self, request: AgentRequest) -> dict[str, str]:
        headers = {**self._extra_headers, "traceparent": outgoing_traceparent(request.trace_id)}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    async def stream(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        yield agent_phase(self.name, "start")
        call = self._upstream.call("/v1/chat/completions", self._body(request), self._headers(request))
        async for message in call.messages():
            if message.data.strip() == "[DONE]":
                break
            chunk = json_frame(message.data)
            if "error" in chunk:
                raise UpstreamError("upstream_error", f"{self._upstream.name}: {chunk['error']}")
            if chunk.get("usage"):
                yield usage(int(chunk["usage"].get("prompt_tokens", 0)), int(chunk["usage"].get("completion_tokens", 0)))
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    call.first_token()
                    yield delta(self.name, text)
                if choice.get("finish_reason") == "length":
                    yield finish("length")
        yield agent_phase(self.name, "end")

    def breakers(self) -> dict[str, str]:
        return {self._upstream.name: self._upstream.breaker.state}

    async def close(self) -> None:
        await self._upstream.close()

