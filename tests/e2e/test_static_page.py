"""The static page in a real headless Chromium: sign up, send, watch the agents stream, Stop."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, AsyncIterator

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from gima_server.app import create_app
from gima_server.config import Settings

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("GIMA_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's chromium package (.ci/run does)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def _open_page(browser: Browser, aiohttp_server: Any, settings: Settings, **overrides: Any) -> tuple[Page, list[str]]:
    server = await aiohttp_server(create_app(replace(settings, **overrides)))
    page = await browser.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # The page asks /api/auth/me first to learn whether it is logged in; that 401 is expected.
        expected = "/api/auth/me" in message.location.get("url", "") and "401" in message.text
        if message.type == "error" and not expected:
            problems.append(f"{message.text} at {message.location.get('url')}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    await page.goto(f"http://127.0.0.1:{server.port}/")
    return page, problems


async def _sign_up(page: Page) -> None:
    await expect(page.locator("#auth-view")).to_be_visible()
    await page.fill("#email", "browser@example.com")
    await page.fill("#password", "browser password")
    await page.click("#signup")
    await expect(page.locator("#chat-view")).to_be_visible()
    await expect(page.locator("#me")).to_have_text("browser@example.com")


async def test_sign_up_send_and_watch_agents_stream(browser: Browser, aiohttp_server: Any, settings: Settings) -> None:
    page, problems = await _open_page(browser, aiohttp_server, settings, demo_tokens_per_s=400, demo_reply_words=60)
    await _sign_up(page)
    await page.fill("#content", "How do lighthouses work?")
    await page.click("#send")
    answer = page.locator("#messages li.assistant").last
    await expect(answer).to_have_attribute("data-status", "complete", timeout=15_000)
    names = await answer.locator(".agent-name").all_text_contents()
    assert names == ["planner", "researcher", "writer"]
    writer_text = await answer.locator('.agent[data-agent="writer"] .agent-text').text_content()
    assert writer_text and "lighthouses" in writer_text
    await expect(page.locator("#chat-list li")).to_have_count(1)
    await expect(page.locator("#stop")).to_be_hidden()
    # Reloading keeps the login (cookie session) and shows the stored history.
    await page.reload()
    await expect(page.locator("#chat-view")).to_be_visible()
    await page.locator("#chat-list li").first.click()
    await expect(page.locator("#messages li")).to_have_count(2)
    await expect(page.locator("#messages li.assistant")).to_contain_text("lighthouses")
    assert problems == []


async def test_stop_button_cancels_the_reply(browser: Browser, aiohttp_server: Any, settings: Settings) -> None:
    page, problems = await _open_page(browser, aiohttp_server, settings, demo_tokens_per_s=20, demo_reply_words=200)
    await _sign_up(page)
    await page.fill("#content", "Tell me a long story about ships")
    await page.click("#send")
    await expect(page.locator("#stop")).to_be_visible()
    await expect(page.locator(".agent-text").first).not_to_be_empty()
    await page.click("#stop")
    answer = page.locator("#messages li.assistant").last
    await expect(answer).to_have_attribute("data-status", "cancelled", timeout=10_000)
    await expect(page.locator("#stop")).to_be_hidden()
    assert problems == []


async def test_a_snapshot_replaces_the_reply_text(browser: Browser, aiohttp_server: Any, settings: Settings) -> None:
    """A stream that carries a `snapshot` (retention lost events) shows the snapshot's text, not text + snapshot.

    The server's own encoder writes the frames; the page's POST is answered with them so that the snapshot
    arrives at a known point (the server sends one to this page only when it joins a trimmed Redis stream)."""
    from gima_server.streams.events import make_event, meta_data, retry_frame
    from gima_server.streams.snapshot import snapshot_event

    frames = retry_frame(3000) + b"".join(e.frame for e in [
        make_event(1, "meta", meta_data("m-snap", "c-snap", "t")),
        make_event(2, "agent", {"agent": "planner", "phase": "start"}),
        make_event(3, "delta", {"agent": "planner", "text": "stale text that was "}),
        snapshot_event(40, "m-snap", "streaming", "Plan. Answer so", [("planner", 0), ("writer", 6)]),
        make_event(41, "delta", {"agent": "writer", "text": " far."}),
        make_event(42, "done", {"messageId": "m-snap", "content": "Plan. Answer so far.", "finishReason": "stop"}),
    ])
    page, problems = await _open_page(browser, aiohttp_server, settings)
    await _sign_up(page)

    async def answer_with_frames(route: Any) -> None:
        await route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=frames)

    await page.route("**/api/chat/stream", answer_with_frames)
    await page.fill("#content", "anything")
    await page.click("#send")
    answer = page.locator("#messages li.assistant").last
    await expect(answer).to_have_attribute("data-status", "complete", timeout=10_000)
    assert await answer.locator(".agent-name").all_text_contents() == ["planner", "writer"]
    assert await answer.locator(".agent-text").all_text_contents() == ["Plan. ", "Answer so far."]
    assert problems == []
