"""Agents produce a reply as a stream of events; the server does not care which backend is behind one."""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator, Mapping

from ..config import ConfigError, Settings
from ..context.window import ContextPlan
from .anthropic import AnthropicAgent
from .base import Agent, AgentEvent, AgentRequest, agent_phase, delta
from .breaker import CircuitBreaker
from .catalog import DEFAULT_CONTEXT_TOKENS, AgentEntry, Catalog, CatalogError, load_catalog
from .demo import DemoAgent
from .hook_inbox import HookInbox
from .models import Model, Models
from .openai import OpenAIAgent
from .pipeline import NamedAgent, PipelineAgent, load_pipeline
from .upstream import Upstream, UpstreamLimits
from .webhook import WebhookAgent


class _Upstreams:
    """One Upstream (session and breaker) per provider, shared by every agent that calls it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._made: dict[str, Upstream] = {}  # bound: one per provider kind the configuration names

    def get(self, kind: str) -> Upstream:
        if kind not in self._made:
            s = self._settings
            base_url = s.openai_base_url if kind == "openai" else s.anthropic_base_url
            self._made[kind] = Upstream(kind, base_url, _limits(s), CircuitBreaker(s.breaker_failures, s.breaker_cooldown_s))
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


def _limits(settings: Settings) -> UpstreamLimits:
    s = settings
    return UpstreamLimits(s.upstream_connect_timeout_s, s.upstream_first_token_timeout_s, s.upstream_total_timeout_s,
                          s.upstream_max_retries)


def load_agents_file(settings: Settings) -> Catalog | None:
    """The agents file's catalog (None without one); ConfigError listing every problem in it."""
    if not settings.agents_file:
        return None
    import os

    try:
        return load_catalog(Path(settings.agents_file), os.environ)
    except CatalogError as exc:
        raise ConfigError(str(exc)) from None


class _EntryAgents:
    """One Upstream (session and breaker, named by the model id) per openai or anthropic entry, shared with the
    pipeline steps that call it."""

    def __init__(self, settings: Settings, catalog: Catalog, inbox: HookInbox) -> None:
        self._settings = settings
        self._catalog = catalog
        self._inbox = inbox
        self._upstreams: dict[str, Upstream] = {}  # bound: one per entry of the file

    def upstream(self, entry: AgentEntry) -> Upstream:
        if entry.id not in self._upstreams:
            s = self._settings
            breaker = CircuitBreaker(s.breaker_failures, s.breaker_cooldown_s)
            self._upstreams[entry.id] = Upstream(entry.id, entry.base_url, _limits(s), breaker)
        return self._upstreams[entry.id]

    def step(self, entry: AgentEntry, name: str, model: str = "", system: str = "",
             overrides: Mapping[str, Any] | None = None) -> NamedAgent:
        if entry.kind == "openai":
            return OpenAIAgent(self.upstream(entry), model or entry.model, entry.api_key, name, system or entry.system,
                               defaults=entry.defaults, overrides=overrides)
        if entry.kind == "anthropic":
            return AnthropicAgent(self.upstream(entry), model or entry.model, entry.api_key, name,
                                  system or entry.system, defaults=entry.defaults, overrides=overrides)
        return _SingleDemo(self.demo(entry, overrides), name)

    def demo(self, entry: AgentEntry, overrides: Mapping[str, Any] | None = None) -> DemoAgent:
        s = self._settings
        tokens_per_s, first_token_ms, words = entry.demo_pace
        return DemoAgent(s.demo_tokens_per_s if tokens_per_s is None else tokens_per_s,
                         s.demo_first_token_ms if first_token_ms is None else first_token_ms,
                         s.demo_reply_words if words is None else words, entry.defaults, overrides)

    def agent(self, entry: AgentEntry) -> Agent:
        if entry.kind == "demo":
            return self.demo(entry)
        if entry.kind == "webhook":
            s = self._settings
            callback = entry.callback_base_url or s.public_url or f"http://127.0.0.1:{s.port}"
            return WebhookAgent(entry.id, entry.base_url, entry.api_key, entry.timeout_s, callback, self._inbox)
        if entry.kind == "pipeline":
            entries = self._catalog.entries
            return PipelineAgent([self.step(entries[s.agent], s.name, s.model, s.system, s.overrides)
                                  for s in entry.steps])
        return self.step(entry, "assistant")


def make_models(settings: Settings, inbox: HookInbox | None = None) -> Models:
    """The models this deployment offers: the agents file's, or one (`gima-<GIMA_AGENT>`) from today's variables."""
    catalog = load_agents_file(settings)
    if catalog is None:
        return Models.single(make_agent(settings), f"gima-{settings.agent}", _settings_plan(settings))
    made = _EntryAgents(settings, catalog, inbox or HookInbox())
    models = [Model(e.id, e.label, made.agent(e)) for e in catalog.entries.values()]
    plans = {e.id: _entry_plan(e, catalog) for e in catalog.entries.values()}
    return Models(models, catalog.default, {e.id: catalog.chain(e.id) for e in catalog.entries.values()}, catalog,
                  plans)


def _entry_plan(entry: AgentEntry, catalog: Catalog) -> ContextPlan:
    """An entry's history budget: its own, else (a pipeline) the smallest of the entries its steps call, else its
    kind's default; its instructions the longest system prompt a step sends."""
    output = entry.defaults.get("max_tokens") or entry.defaults.get("max_completion_tokens")
    if entry.kind != "pipeline":
        return ContextPlan.of(entry.context_tokens or DEFAULT_CONTEXT_TOKENS[entry.kind], (entry.system,), output)
    called = [catalog.entries[step.agent] for step in entry.steps if step.agent in catalog.entries]
    window = entry.context_tokens or min((_entry_plan(e, catalog).context_tokens for e in called),
                                         default=DEFAULT_CONTEXT_TOKENS["pipeline"])
    systems = [step.system or catalog.entries[step.agent].system for step in entry.steps if step.agent in catalog.entries]
    return ContextPlan.of(window, systems, output)


def _settings_plan(settings: Settings) -> ContextPlan:
    window = settings.context_tokens or DEFAULT_CONTEXT_TOKENS.get(settings.agent, DEFAULT_CONTEXT_TOKENS["openai"])
    systems = [spec.system for spec in load_pipeline(Path(settings.pipeline_file))] if settings.agent == "pipeline" else []
    return ContextPlan.of(window, systems)


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
