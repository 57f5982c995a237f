import asyncio
import time

from gima_server.agents.base import AgentRequest
from gima_server.agents.demo import DemoAgent, compose, keywords


def test_reply_depends_on_the_message() -> None:
    volcano = "".join(t for _, t in compose("Why do volcanoes erupt lava?", 80))
    bread = "".join(t for _, t in compose("How is sourdough bread baked?", 80))
    assert "volcanoes" in volcano and "sourdough" in bread and volcano != bread
    assert keywords("Please tell me about the Rust borrow checker") == ["rust", "borrow", "checker"]


def test_reply_length_follows_the_setting() -> None:
    short = compose("topic words here", 20)[-1][1]
    long = compose("topic words here", 400)[-1][1]
    assert len(short.split()) >= 20 and len(long.split()) >= 400 and len(long) > len(short)


async def _collect(agent: DemoAgent, content: str) -> list:
    return [e async for e in agent.stream(AgentRequest(content))]


async def test_stream_shape_and_pace() -> None:
    events = await _collect(DemoAgent(0, 0, 30), "Explain rainbows")
    phases = [(e.data["agent"], e.data["phase"]) for e in events if e.name == "agent"]
    assert phases == [("planner", "start"), ("planner", "end"), ("researcher", "start"), ("researcher", "end"),
                      ("writer", "start"), ("writer", "end")]
    deltas = [e for e in events if e.name == "delta"]
    started = time.monotonic()
    paced = await _collect(DemoAgent(1000, 50, 30), "Explain rainbows")
    elapsed = time.monotonic() - started
    assert len([e for e in paced if e.name == "delta"]) == len(deltas)
    assert elapsed >= 0.05 + (len(deltas) - 1) / 1000 * 0.9


async def test_fast_demo_yields_to_the_loop() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await _collect(DemoAgent(0, 0, 2000), "busy loop check")  # ~2,100 tokens: at least one loop turn per 16
    task.cancel()
    assert ticks > 100


async def test_a_demo_closed_while_it_waits_leaves_no_timer_armed() -> None:
    loop = asyncio.get_running_loop()
    stream = DemoAgent(0.1, 0, 30).stream(AgentRequest("Explain rainbows"))  # a token every 10 s
    first = await anext(stream)  # the planner's start
    waiting = asyncio.ensure_future(anext(stream))  # now waiting 10 s for the first token
    await asyncio.sleep(0.01)
    armed = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]  # asyncio's own heap
    assert any(getattr(h, "_callback", None).__name__ == "_wake" for h in armed)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    await stream.aclose()
    assert first.name == "agent" and waiting.cancelled()
    still = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
    assert not any(getattr(h, "_callback", None).__name__ == "_wake" for h in still)
