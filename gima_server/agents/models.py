"""The models a deployment offers (ids clients name), each an agent with its own breaker, and the fallback rule.

A fallback happens only before the reply's first token: events an agent emits before its first delta (a step's
start) are held back, so a model that fails before it has said anything leaves no trace in the reply's log but
one `model` event. After the first token a failure ends the reply as it always did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncGenerator, AsyncIterator, Mapping, Sequence, cast

from ..context.window import Budget, ContextPlan
from .base import Agent, AgentEvent, AgentRequest
from .catalog import DEFAULT_CONTEXT_TOKENS, Catalog
from .upstream import UpstreamError


class UnknownModel(Exception):
    def __init__(self, requested: str, ids: Sequence[str]) -> None:
        super().__init__(f"unknown model {requested!r}; this server offers {', '.join(ids)}")


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    label: str
    agent: Agent


class Models:
    """Every model by id, the default, and each model's fallback chain (the model first)."""

    def __init__(self, models: Sequence[Model], default: str, chains: dict[str, tuple[str, ...]] | None = None,
                 catalog: Catalog | None = None, plans: Mapping[str, ContextPlan] | None = None) -> None:
        self._by_id = {m.id: m for m in models}
        self._plans = plans or {}
        self.default = default
        self._chains = chains or {m.id: (m.id,) for m in models}
        self._routed = {model_id: self._route(chain) for model_id, chain in self._chains.items()}
        self.catalog = catalog
        self._budgets: dict[str, Budget] = {}  # a request that sets no output limit: the same budget every time

    @classmethod
    def single(cls, agent: Agent, model_id: str, plan: ContextPlan | None = None) -> Models:
        return cls([Model(model_id, model_id, agent)], model_id, plans={model_id: plan} if plan is not None else None)

    def budget(self, model_id: str, options: Mapping[str, Any]) -> Budget:
        """The history budget of a request to model_id: the tightest along its fallback chain, so that whichever
        model answers, the history fits it."""
        if options.get("max_tokens") or options.get("max_completion_tokens") or model_id not in self._chains:
            return self._budget(model_id, options)
        budget = self._budgets.get(model_id)  # bound: one per model this server offers
        if budget is None:
            budget = self._budgets[model_id] = self._budget(model_id, options)
        return budget

    def _budget(self, model_id: str, options: Mapping[str, Any]) -> Budget:
        plans = [self._plans.get(i) or ContextPlan(DEFAULT_CONTEXT_TOKENS["openai"]) for i in self.chain(model_id)]
        return min((plan.budget(options) for plan in plans), key=lambda budget: budget.for_messages)

    def chain(self, model_id: str) -> tuple[str, ...]:
        return self._chains.get(model_id) or self._chains[self.default]

    @property
    def ids(self) -> list[str]:
        return list(self._by_id)

    def listing(self) -> list[dict[str, object]]:
        return [{"id": m.id, "label": m.label, "default": m.id == self.default} for m in self._by_id.values()]

    def resolve(self, requested: str | None) -> str:
        """The id a request asked for (the default when it named none); UnknownModel otherwise."""
        if requested is None or requested == "":
            return self.default
        if requested not in self._by_id:
            raise UnknownModel(requested, self.ids)
        return requested

    def agent_for(self, model_id: str) -> Agent:
        """The agent that answers for model_id, falling back along its chain (an unknown id: the default's)."""
        return self._routed.get(model_id) or self._routed[self.default]

    def _route(self, chain: tuple[str, ...]) -> Agent:
        models = [self._by_id[i] for i in chain]
        return models[0].agent if len(models) == 1 else FallbackAgent(models)

    def breakers(self) -> dict[str, str]:
        """Each model's upstream breaker state, by model id (pipelines: by the ids of the models their steps call)."""
        states: dict[str, str] = {}
        for model in self._by_id.values():
            states.update(model.agent.breakers())
        return states

    async def close(self) -> None:
        for model in self._by_id.values():
            await model.agent.close()


class FallbackAgent:
    """A model with its fallbacks: the next model takes over when one fails before its first token."""

    def __init__(self, chain: Sequence[Model]) -> None:
        self._chain = list(chain)

    async def stream(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        for n, model in enumerate(self._chain):
            held: list[AgentEvent] = []  # until the first token: a failure before it discards them
            answered = False
            agent_stream = cast(AsyncGenerator[AgentEvent, None], model.agent.stream(request))
            try:
                async for event in agent_stream:
                    if answered:
                        yield event
                    elif event.name == "delta":
                        answered = True
                        for earlier in held:
                            yield earlier
                        held.clear()
                        yield event
                    else:
                        held.append(event)
                for earlier in held:  # an answer without text is still an answer
                    yield earlier
                return
            except UpstreamError as exc:
                if answered or n + 1 == len(self._chain):
                    raise
                reason = exc.reason
            finally:
                await agent_stream.aclose()
            yield AgentEvent("model", {"model": self._chain[n + 1].id, "fallbackFrom": model.id, "reason": reason})

    def breakers(self) -> dict[str, str]:
        states: dict[str, str] = {}
        for model in self._chain:
            states.update(model.agent.breakers())
        return states

    async def close(self) -> None:
        return None  # the models close themselves (Models.close)

