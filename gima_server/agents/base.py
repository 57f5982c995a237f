"""The Agent protocol: given the conversation, yield agent/delta/tool events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Mapping, Protocol, Sequence


@dataclass(slots=True)  # not frozen: one is made per token, and a frozen __init__ costs 3x (never mutated)
class AgentEvent:
    name: str  # "agent", "delta" or "tool" (see API.md); "usage" and "finish" are kept by the server, never streamed
    data: dict[str, Any]


def agent_phase(agent: str, phase: str) -> AgentEvent:
    return AgentEvent("agent", {"agent": agent, "phase": phase})


def delta(agent: str, text: str) -> AgentEvent:
    return AgentEvent("delta", {"agent": agent, "text": text})


def usage(input_tokens: int, output_tokens: int) -> AgentEvent:
    return AgentEvent("usage", {"input": input_tokens, "output": output_tokens})


def finish(reason: str) -> AgentEvent:
    """Why the model stopped, when it was not the end of its answer ("length": its token limit)."""
    return AgentEvent("finish", {"reason": reason})


@dataclass(frozen=True, slots=True)
class AgentRequest:
    content: str
    history: Sequence[tuple[str, str]] = field(default_factory=tuple)  # (role, content), oldest first
    trace_id: str = "-"
    earlier_agents: Sequence[tuple[str, str]] = field(default_factory=tuple)  # (agent, its output) in a pipeline
    instructions: str = ""  # the client's own system messages (OpenAI-style callers), after the agent's prompt
    options: Mapping[str, Any] = field(default_factory=dict)  # sampling options the request set (agents/sampling.py)
    reply_id: str = ""  # the reply being produced (an asynchronous backend posts its events back for it)
    chat_id: str = ""


class Agent(Protocol):
    def stream(self, request: AgentRequest) -> AsyncIterator[AgentEvent]: ...

    def breakers(self) -> dict[str, str]:
        """State of each upstream's circuit breaker, by upstream name (none for the demo)."""
        ...

    async def close(self) -> None: ...
