"""Agents produce a reply as a stream of events; the server does not care which backend is behind one."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

from ..config import ConfigError, Settings
from .anthropic import AnthropicAgent
from .base import Agent, AgentEvent, AgentRequest, agent_phase, delta
from .breaker import CircuitBreaker
from .demo import DemoAgent
from .openai import OpenAIAgent
from .pipeline import NamedAgent, PipelineAgent, load_pipeline
from .upstream import Upstream, UpstreamLimits


class _Upstreams:
    """One Upstream (session and breaker) per provider, shared by every agent that calls it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._made: dict[str, Upstream] = {}  # bound: one per provider kind the configuration names

    def get(self, kind: str) -> Upstream:
        if kind not in self._made:
            s = self._settings
            limits = UpstreamLimits(s.upstream_connect_timeout_s, s.upstream_first_token_timeout_s,
                                    s.upstream_total_timeout_s, s.upstream_max_retries)
            base_url = s.openai_base_url if kind == "openai" else s.anthropic_base_url
            self._made[kind] = Upstream(kind, base_url, limits, CircuitBreaker(s.breaker_failures, s.breaker_cooldown_s))
        return self._made[kind]


def _agent(settings: Settings, upstreams: _Upstreams, kind: str, name: str, model: str, system: str) -> NamedAgent:
    if kind == "openai":
        return OpenAIAgent(upstreams.get("openai"), model or settings.openai_model, settings.openai_api_key, name, system)
    if kind == "anthropic":
        return AnthropicAgent(upstreams.get("anthropic"), model or settings.anthropic_model, settings.anthropic_api_key,
                              name, system)
    demo = DemoAgent(settings.demo_tokens_per_s, settings.demo_first_token_ms, settings.demo_reply_words)
    return _SingleDemo(demo, name)


class _SingleDemo:
    """The demo as one named step of a pipeline: only its writer's words, under the step's name."""

    def __init__(self, demo: DemoAgent, name: str) -> None:
        self._demo = demo
        self.name = name

    async def stream(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        yield agent_phase(self.name, "start")
        async for event in self._demo.stream(request):
            if event.name == "delta" and event.data["agent"] == "writer":
                yield delta(self.name, event.data["text"])
        yield agent_phase(self.name, "end")

    def breakers(self) -> dict[str, str]:
        return {}

    async def close(self) -> None:
        return None


def make_agent(settings: Settings) -> Agent:
    if settings.agent == "demo":
        return DemoAgent(settings.demo_tokens_per_s, settings.demo_first_token_ms, settings.demo_reply_words)
    upstreams = _Upstreams(settings)
    if settings.agent in ("openai", "anthropic"):
        return _agent(settings, upstreams, settings.agent, "assistant", "", "")
    if settings.agent == "pipeline":
        specs = load_pipeline(Path(settings.pipeline_file))
        return PipelineAgent([_agent(settings, upstreams, s.upstream, s.name, s.model, s.system) for s in specs])
    raise ConfigError(f"GIMA_AGENT={settings.agent!r}: unknown agent")
