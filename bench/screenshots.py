"""docs/screenshots/: the page (light, dark, Spanish, 375 px wide) and the open widget, in headless Chromium.

  python -m bench.screenshots

A chat with a Markdown reply from a fake OpenAI-format upstream and the demo as a second model, so the model
picker shows; every picture is of a real server on its embedded defaults.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web
from playwright.async_api import Browser, async_playwright

from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS

from .page_render import _serve, page_server

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
REPLY = ["## Spring tides\n\n", "They come **twice a month**, ", "at new and full moon:\n\n",
         "- the Sun and Moon line up\n", "- their pulls add up\n\n", "```python\n", "range_m = neap_m * 1.2\n", "```\n\n",
         "See [tide tables](https://example.com/tides)."]
DEMO = '\n[agents.local]\nkind = "demo"\nlabel = "Local demo"\ntokens_per_s = 400\n'


async def _chat_page(browser: Browser, port: int, name: str, **context: Any) -> None:
    spanish = str(context.get("locale", "")).startswith("es")
    ctx = await browser.new_context(**{"viewport": {"width": 1100, "height": 700}, **context})
    page = await ctx.new_page()
    await page.goto(f"http://127.0.0.1:{port}/")
    await page.get_by_label("Correo electrónico" if spanish else "Email").fill(f"{name}@example.com")
    await page.get_by_label("Contraseña" if spanish else "Password").fill("screenshot password")
    await page.get_by_role("button", name="Registrarse" if spanish else "Sign up").click()
    await page.get_by_label("Mensaje" if spanish else "Message", exact=True).fill(
        "¿Qué son las mareas vivas?" if spanish else "What are spring tides?")
    await page.get_by_role("button", name="Enviar" if spanish else "Send", exact=True).click()
    await page.wait_for_selector("#messages li.assistant[data-status='complete'] pre")
    if context.get("viewport", {}).get("width") == 375:
        await page.get_by_role("button", name="Chats").click()
    await page.screenshot(path=str(OUT / f"{name}.png"))
    await ctx.close()


def _host_site(server: dict[str, int]) -> web.Application:
    """A site of another origin embedding the widget; the chat server's port is read when the page is asked for."""
    async def host(_: web.Request) -> web.Response:
        return web.Response(content_type="text/html", text=(
            "<!doctype html><html><head><title>A shop</title></head><body style='font-family:sans-serif'>"
            "<h1>A shop that embeds the widget</h1><p>Blue and red umbrellas.</p>"
            f'<script src="http://127.0.0.1:{server["port"]}/static/widget.js" async></script></body></html>'))

    app = web.Application()
    app.router.add_get("/", host)
    return app


async def _widget(browser: Browser, host_port: int) -> None:
    ctx = await browser.new_context(viewport={"width": 900, "height": 700})
    page = await ctx.new_page()
    await page.goto(f"http://localhost:{host_port}/")
    await page.get_by_role("button", name="Open chat").click()
    await page.get_by_label("Message").fill("Do you have blue umbrellas?")
    await page.get_by_role("button", name="Send", exact=True).click()
    await page.wait_for_selector("gima-chat li.assistant[data-status='complete']")
    await page.screenshot(path=str(OUT / "widget.png"))
    await ctx.close()


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    server: dict[str, int] = {}
    host_runner, host_port = await _serve(_host_site(server))
    async with page_server(DEMO, guest_access=True, allowed_origins=(f"http://localhost:{host_port}",)) as (port, fake):
        server["port"] = port
        fake.faults.tokens = REPLY
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            await _chat_page(browser, port, "page", color_scheme="light", locale="en-US")
            await _chat_page(browser, port, "page-dark", color_scheme="dark", locale="en-US")
            await _chat_page(browser, port, "page-es", color_scheme="light", locale="es-ES")
            await _chat_page(browser, port, "page-narrow", color_scheme="light", locale="en-US",
                             viewport={"width": 375, "height": 740})
            await _widget(browser, host_port)
            await browser.close()
    await host_runner.cleanup()
    print(f"written to {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
