"""Choosing the history a reply sends (pure): the instructions, the newest whole messages that fit, the current one.

Which stored messages count (ADR 22): user messages as written; complete replies as written; replies that were
cancelled, failed or are still streaming (a reply this message supersedes) with the text they got to, followed by
INTERRUPTED_NOTE so the model knows it was cut short; replies with no text at all are left out. The window never
starts with a reply (some APIs require the user to speak first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from ..agents.tokens import estimate_tokens, message_tokens

INTERRUPTED_NOTE = "[this reply was interrupted]"
Turn = tuple[str, str]  # (role, content)


class TooLarge(Exception):
    """The instructions and the current message alone exceed the budget: nothing can be sent."""

    def __init__(self, needed: int, available: int) -> None:
        super().__init__(f"the message needs about {needed:,} tokens of context; this model takes {available:,}")
        self.needed = needed
        self.available = available


@dataclass(frozen=True, slots=True)
class Budget:
    context_tokens: int  # the model's window, as the agents file (or the kind's default) says
    output_tokens: int  # kept free for the reply: its max_tokens, or a share of the window
    instructions_tokens: int = 0  # the agent's own system prompt, sent with every request

    @property
    def for_messages(self) -> int:
        return self.context_tokens - self.output_tokens - self.instructions_tokens


@dataclass(frozen=True, slots=True)
class ContextPlan:
    """A model's side of the budget: its window, its own instructions, its own output limit."""

    context_tokens: int
    instructions_tokens: int = 0
    output_tokens: int | None = None  # the agent's own max_tokens, when the agents file sets one

    @classmethod
    def of(cls, context_tokens: int, instructions: Iterable[str] = (), output_tokens: int | None = None) -> ContextPlan:
        return cls(context_tokens, max((estimate_tokens(text) for text in instructions), default=0), output_tokens)

    def budget(self, options: Mapping[str, Any]) -> Budget:
        """The budget of one request: its own output limit kept free, else the agent's, else an eighth of the window
        (at most 4,096: a long answer still has room, a long history keeps most of the window). A limit above half
        the window keeps half: it is a ceiling the reply rarely reaches, and the upstream judges it, not us."""
        asked = options.get("max_tokens") or options.get("max_completion_tokens") or self.output_tokens
        output = min(int(asked), self.context_tokens // 2) if asked else min(4_096, self.context_tokens // 8)
        return Budget(self.context_tokens, output, self.instructions_tokens)


def stored_turn(role: str, content: str, status: str) -> Turn | None:
    """The turn a stored message contributes to history, by the rule above; None for a reply without text."""
    if role != "assistant" or status == "complete":
        return role, content
    if not content.strip():
        return None
    return role, f"{content}\n\n{INTERRUPTED_NOTE}"


class Window:
    """Fills a budget with the fixed part (system turns and the current message), then with earlier turns offered
    newest first, until one does not fit."""

    def __init__(self, budget: Budget, system: Sequence[Turn], current: str) -> None:
        self._system = list(system)
        fixed = sum(message_tokens(content) for _, content in system) + message_tokens(current)
        if fixed > budget.for_messages:
            raise TooLarge(fixed + budget.output_tokens + budget.instructions_tokens, budget.context_tokens)
        self._left = budget.for_messages - fixed
        self._room = self._left  # for earlier messages
        self._newest_first: list[Turn] = []
        self.full = False

    def rows_to_fill(self) -> int:
        """About how many more messages would fill the window, at the average cost of those taken so far."""
        taken = len(self._newest_first)
        if not taken:
            return 0
        average = max(1.0, (self._room - self._left) / taken)
        return int(self._left / average) + 1

    def offer(self, turn: Turn) -> bool:
        """Take the next older turn if it fits whole; False once the window is full (offer nothing more)."""
        if self.full:
            return False
        cost = message_tokens(turn[1])
        if cost > self._left:
            self.full = True
            return False
        self._left -= cost
        self._newest_first.append(turn)
        return True

    def offer_all(self, turns_newest_first: Iterable[Turn]) -> None:
        for turn in turns_newest_first:
            if not self.offer(turn):
                return

    def turns(self) -> tuple[Turn, ...]:
        """The system turns, then the chosen turns oldest first (without a leading reply)."""
        chosen = self._newest_first[::-1]
        while chosen and chosen[0][0] == "assistant":
            chosen.pop(0)
        return (*self._system, *chosen)

    @property
    def earlier_messages(self) -> int:
        return len(self.turns()) - len(self._system)
