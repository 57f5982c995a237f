"""A multi-agent pipeline from a small JSON or TOML file: each agent in turn, seeing the earlier agents' work.

  [[agents]]
  name = "planner"
  upstream = "openai"        # "openai", "anthropic" or "demo"
  model = "gpt-4o-mini"      # optional: the upstream's default model otherwise
  system = "Plan the answer in three short steps."
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Protocol, Sequence

from ..config import ConfigError
from .base import AgentEvent, AgentRequest

_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,40}$")
UPSTREAM_KINDS = ("openai", "anthropic", "demo")


@dataclass(frozen=True, slots=True)
class AgentSpec:
    name: str
    upstream: str
    model: str
    system: str


def load_pipeline(path: Path) -> list[AgentSpec]:
    """Read and check the file; any problem is a ConfigError naming GIMA_PIPELINE_FILE."""
    try:
        text = path.read_text()
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"GIMA_PIPELINE_FILE={str(path)!r}: cannot read it ({exc})") from None
    agents = raw.get("agents") if isinstance(raw, dict) else None
    if not isinstance(agents, list) or not agents:
        raise ConfigError(f"GIMA_PIPELINE_FILE={str(path)!r}: needs a non-empty list 'agents'")
    specs = [_spec(path, i, entry) for i, entry in enumerate(agents)]
    if len({s.name for s in specs}) != len(specs):
        raise ConfigError(f"GIMA_PIPELINE_FILE={str(path)!r}: agent names must be unique")
    return specs


def _spec(path: Path, index: int, entry: object) -> AgentSpec:
    where = f"GIMA_PIPELINE_FILE={str(path)!r}: agents[{index}]"
    if not isinstance(entry, dict) or set(entry) - {"name", "upstream", "model", "system"}:
        raise ConfigError(f"{where}: expected only name, upstream, model, system")
    name, upstream = entry.get("name"), entry.get("upstream", "openai")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: name must be 1-40 of A-Z a-z 0-9 _ -")
    if upstream not in UPSTREAM_KINDS:
        raise ConfigError(f"{where}: upstream must be one of {', '.join(UPSTREAM_KINDS)}")
    model, system = entry.get("model", ""), entry.get("system", "")
    if not isinstance(model, str) or not isinstance(system, str):
        raise ConfigError(f"{where}: model and system must be text")
    return AgentSpec(name, upstream, model, system)


class NamedAgent(Protocol):
    name: str

    def stream(self, request: AgentRequest) -> AsyncIterator[AgentEvent]: ...

    def breakers(self) -> dict[str, str]: ...

    async def close(self) -> None: ...


class PipelineAgent:
    """Runs its agents in order; each one's request carries the earlier agents' output."""

    def __init__(self, agents: Sequence[NamedAgent]) -> None:
        self._agents = list(agents)

    async def stream(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        earlier: list[tuple[str, str]] = []
        for agent in self._agents:
            step = AgentRequest(request.content, request.history, request.trace_id, tuple(earlier),
                                options=request.options)
            parts: list[str] = []
            async for event in agent.stream(step):
                if event.name == "delta":
                    parts.append(event.data["text"])
                yield event
            earlier.append((agent.name, "".join(parts)))

    def breakers(self) -> dict[str, str]:
        states: dict[str, str] = {}
        for agent in self._agents:
            states.update(agent.breakers())
        return states

    async def close(self) -> None:
        for agent in self._agents:
            await agent.close()
