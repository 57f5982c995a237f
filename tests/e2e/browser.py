"""Headless Chromium (Debian's) driven by playwright, and a page's console watched for errors."""

from __future__ import annotations

import asyncio
import os
from typing import AsyncIterator

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Route, async_playwright

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


def watch_console(page: Page, allowed: tuple[str, ...] = ()) -> list[str]:
    """Every console error and uncaught exception of the page, except texts containing an allowed fragment."""
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not any(fragment in message.text for fragment in allowed):
            problems.append(f"{message.text} at {message.location.get('url')}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    return problems


async def delay_requests(page: Page, pattern: str, seconds: float) -> asyncio.Event:
    """Hold every request matching pattern for `seconds` (a slow module on a loaded machine); the event is set
    once the first one was asked for."""
    asked = asyncio.Event()

    async def hold(route: Route) -> None:
        asked.set()
        await asyncio.sleep(seconds)
        await route.continue_()

    await page.route(pattern, hold)
    return asked
