"""The Agent protocol: given the conversation, yield agent/delta/tool events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol, Sequence


@dataclass(frozen=True, slots=True)
class AgentEvent:
    name: str  # "agent", "delta" or "tool" (see API.md)
    data: dict[str, Any]


def agent_phase(agent: str, phase: str) -> AgentEvent:
    return AgentEvent("agent", {"agent": agent, "phase": phase})


def delta(agent: str, text: str) -> AgentEvent:
    return AgentEvent("delta", {"agent": agent, "text": text})


@dataclass(frozen=True, slots=True)
class AgentRequest:
    content: str
    history: Sequence[tuple[str, str]] = field(default_factory=tuple)  # (role, content), oldest first
    trace_id: str = "-"


class Agent(Protocol):
    def stream(self, request: AgentRequest) -> AsyncIterator[AgentEvent]: ...

    async def close(self) -> None: ...
