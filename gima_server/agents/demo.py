"""The built-in demo: a planner, a researcher and a writer that talk about the user's message at a set pace."""

from __future__ import annotations

import asyncio
import re
from typing import Any, AsyncIterator, Mapping

from .base import AgentEvent, AgentRequest, agent_phase, delta, finish
from .sampling import merged, token_limit

_STOPWORDS = frozenset(
    "about above after again also because been before being below between both could does doing down during each "
    "from further have having here into itself just more most other over same should some such than that their "
    "theirs them then there these they this those through under until very what when where which while whom will "
    "with would your yours please tell explain give show want need know like make works work does near many much".split()
)
_TOKEN = re.compile(r"\S+\s*")
_BURST = 16  # at full speed, tokens per loop turn: small enough never to hog the loop


def keywords(content: str, limit: int = 4) -> list[str]:
    seen: list[str] = []
    for word in re.findall(r"[A-Za-z][A-Za-z\-']{3,}", content):
        lowered = word.lower()
        if lowered not in _STOPWORDS and lowered not in seen:
            seen.append(lowered)
        if len(seen) == limit:
            break
    return seen


def compose(content: str, reply_words: int) -> list[tuple[str, str]]:
    """The three agents' texts, each depending on the message; the writer's length follows reply_words."""
    words = keywords(content) or ["your question"]
    topic = ", ".join(words)
    main, other = words[0], words[-1]
    plan = (
        f"Plan for a reply about {topic}: first pin down what {main} means here, "
        f"then collect the facts that matter about {other}, and finally write a short, clear answer.\n\n"
    )
    notes = (
        f"Notes: {main} is the centre of the question. "
        + " ".join(f"The reply should say how {w} relates to {main}." for w in words[1:])
        + " Keep it concrete and avoid jargon.\n\n"
    )
    sentences = [
        f"Here is a short answer about {topic}.",
        *(f"When it comes to {w}, the key point is how it shapes {main} in practice." for w in words[1:]),
        f"A good way to think about {main} is to start from a small example and grow it step by step.",
        f"Watch the trade-offs: what helps {other} can cost something elsewhere.",
        f"In short, {main} rewards a careful first step and steady checks along the way.",
    ]
    answer: list[str] = []
    count = 0
    while count < reply_words:
        sentence = sentences[len(answer) % len(sentences)]
        answer.append(sentence)
        count += len(sentence.split())
    return [("planner", plan), ("researcher", notes), ("writer", " ".join(answer))]


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    """asyncio.sleep on a loop already at hand: sleep() asks for the running loop each call, which on CPython 3.11 is
    a getpid() system call (0.15-0.85 µs on this machine), paid once per token at every pace."""
    waiter = loop.create_future()
    timer = loop.call_at(when, _wake, waiter)
    try:
        await waiter
    finally:
        timer.cancel()


class DemoAgent:
    def __init__(self, tokens_per_s: float, first_token_ms: float, reply_words: int,
                 defaults: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None) -> None:
        self._interval_s = 1.0 / tokens_per_s if tokens_per_s > 0 else 0.0
        self._first_token_s = first_token_ms / 1000.0
        self._reply_words = reply_words
        self._defaults = dict(defaults or {})
        self._overrides = dict(overrides or {})

    async def stream(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        loop = asyncio.get_running_loop()
        if self._first_token_s:  # none: no turn of the loop before the first event (a saturated turn is ~0.5 s)
            await asyncio.sleep(self._first_token_s)
        next_at = loop.time()
        left = token_limit(merged(self._defaults, request.options, self._overrides))
        for agent, text in compose(request.content, self._reply_words):
            yield agent_phase(agent, "start")
            for n, token in enumerate(_TOKEN.findall(text)):
                if left is not None:
                    if left == 0:  # its max_tokens reached: as a model cut by its limit, it says so
                        yield agent_phase(agent, "end")
                        yield finish("length")
                        return
                    left -= 1
                if self._interval_s:
                    next_at += self._interval_s
                    if next_at > loop.time():
                        await _until(loop, next_at)
                    elif n % _BURST == 0:
                        # Behind its pace (a busy server): tokens already due come together, as the bytes a real
                        # upstream sent meanwhile would arrive in one read, but never more than a burst per turn.
                        await asyncio.sleep(0)
                elif n % _BURST == 0:
                    await asyncio.sleep(0)  # as fast as possible, in bursts the way upstream chunks arrive
                yield delta(agent, token)
            yield agent_phase(agent, "end")

    def breakers(self) -> dict[str, str]:
        return {}

    async def close(self) -> None:
        return None


