"""Fitting a new exchange's history to its model's budget: client-sent turns, or the chat's stored messages read
newest first a page at a time (never the whole chat)."""

from __future__ import annotations

from ..agents.tokens import message_tokens
from ..frozen import evolve
from ..store.base import Exchange, Store
from .window import Budget, TooLarge, Window, stored_turn

FIRST_PAGE = 32  # most budgets fill within a few dozen messages
MAX_PAGE = 512


async def fitted(store: Store, exchange: Exchange, budget: Budget, *, strict: bool = False) -> Exchange:
    """The exchange with its history chosen (context) and counted (context_messages).

    TooLarge when the instructions and the current message alone exceed the budget, or (strict: a caller that sent
    its own messages and expects them all to go, as on /v1) when the messages it sent do not fit."""
    system = [turn for turn in exchange.context if turn[0] == "system"]
    sent = [turn for turn in exchange.context if turn[0] != "system"]
    window = Window(budget, system, exchange.content)
    if strict:
        needed = sum(message_tokens(content) for _, content in exchange.context) + message_tokens(exchange.content)
        if needed > budget.for_messages:
            raise TooLarge(needed + budget.output_tokens + budget.instructions_tokens, budget.context_tokens)
        return evolve(exchange, context_messages=len(sent))
    if sent or exchange.new_chat_title is not None:
        window.offer_all(reversed(sent))
    else:
        await _offer_stored(store, exchange, window)
    return evolve(exchange, context=window.turns(), context_messages=window.earlier_messages)


async def _offer_stored(store: Store, exchange: Exchange, window: Window) -> None:
    before: str | None = None
    limit = FIRST_PAGE
    while True:
        page = await store.recent_messages(exchange.user_id, exchange.chat_id, limit, before)
        for message in page:
            turn = stored_turn(message.role, message.content, message.status)
            if turn is not None and not window.offer(turn):
                return
        if len(page) < limit:
            return
        # The next page holds what the room left would take at the average size so far, and a quarter more.
        before, limit = page[-1].id, min(MAX_PAGE, max(8, window.rows_to_fill() * 5 // 4))
