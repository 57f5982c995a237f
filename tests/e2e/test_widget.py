"""The embeddable widget on a host page of another origin (http://localhost:A against a server on
http://127.0.0.1:B), in headless Chromium: guest and host-JWT identities, host CSS that cannot reach in,
widget CSS that does not leak out, a reply followed across a navigation, two tabs, no console errors."""

from __future__ import annotations

import asyncio
import gzip
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, expect

from gima_server import appkeys
from gima_server.app import STATIC_DIR, create_app
from gima_server.auth.external import external_email
from gima_server.config import Settings

from ..secrets_watch import remember
from ..upstream_fakes import FakeUpstream
from .browser import browser, delay_requests, watch_console

pytestmark = pytest.mark.e2e
__all__ = ["browser"]
HOST_SECRET = "host-site-secret-for-the-widget-tests-0123456789"
remember(HOST_SECRET)
HOSTILE_CSS = """
  * { color: rgb(255, 0, 0) !important; font-size: 40px !important; }
  button { display: none !important; }
  li { list-style: square; }
"""


def _host_app(server: dict[str, str], token: str | None) -> web.Application:
    """A host site whose pages embed the widget as the docs say, under a hostile stylesheet. `server["url"]` is
    read at request time: the chat server is started after the host (it must know the host's origin)."""
    attrs = f' data-gima-token="{token}"' if token else ""

    async def page(request: web.Request) -> web.Response:
        name, url = request.match_info["name"], server["url"]
        html = (f"<!doctype html><html><head><title>{name}</title><style>{HOSTILE_CSS}</style></head><body>"
                f"<h1>Shop {name}</h1><ul><li id='host-item'>a host list item</li></ul>"
                + ("" if "bare" in request.query else
                   f'<script src="{url}/static/widget.js" data-gima-server="{url}"{attrs} async></script>')
                + "</body></html>")
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/{name}", page)
    return app


async def _sites(aiohttp_server: Any, settings: Settings, token: str | None = None, **overrides: Any) -> tuple[str, Any]:
    """(the host site's origin, the chat server): the host on localhost, the server on 127.0.0.1."""
    server: dict[str, str] = {}
    host = await aiohttp_server(_host_app(server, token))
    host_origin = f"http://localhost:{host.port}"
    chat = await aiohttp_server(create_app(replace(settings, allowed_origins=(host_origin,), **overrides)))
    server["url"] = f"http://127.0.0.1:{chat.port}"
    return host_origin, chat


def _panel(page: Page) -> Any:
    return page.locator("gima-chat")


async def _chat(page: Page, text: str) -> None:
    await page.get_by_role("button", name="Open chat").click()
    await page.get_by_label("Message").fill(text)
    await page.get_by_role("button", name="Send").click()


def _answer(page: Page) -> Any:
    return _panel(page).locator("li.assistant").last


async def test_a_guest_chats_and_the_host_css_stays_out_and_in(browser: Browser, aiohttp_server: Any,
                                                               settings: Settings) -> None:
    host, chat = await _sites(aiohttp_server, settings, guest_access=True, demo_tokens_per_s=300, demo_reply_words=30)
    page = await browser.new_page()
    problems = watch_console(page)
    await page.goto(f"{host}/one")
    launcher = page.get_by_role("button", name="Open chat")
    await expect(launcher).to_be_visible()  # the host's `button {display: none !important}` cannot reach it
    await _chat(page, "Do you ship to Norway?")
    await expect(_answer(page)).to_have_attribute("data-status", "complete", timeout=15_000)
    assert await _answer(page).evaluate("e => getComputedStyle(e).color") != "rgb(255, 0, 0)"
    assert await _answer(page).evaluate("e => getComputedStyle(e).fontSize") != "40px"
    host_item = page.locator("#host-item")
    assert await host_item.evaluate("e => getComputedStyle(e).borderTopStyle") == "none"  # the widget's li rule stays in
    bare = await browser.new_page()
    await bare.goto(f"{host}/one?bare=1")  # the same page without the widget
    before = set(await bare.evaluate("Object.keys(window)"))
    await bare.close()
    after = set(await page.evaluate("Object.keys(window)"))
    assert after - before == {"GimaChat"}  # the widget's only global
    store = chat.app[appkeys.STORE]
    guests = [u for u in [await store.get_user(u_id) for u_id in await _user_ids(chat)] if u and "guest" in u.roles]
    assert len(guests) == 1  # one guest session, its token kept in the widget's storage
    assert problems == []


async def _user_ids(chat: Any) -> list[str]:
    store = chat.app[appkeys.STORE]
    rows = await store._inner._read(lambda c: c.execute("SELECT id FROM users").fetchall())  # type: ignore[attr-defined]
    return [r[0] for r in rows]


async def test_a_host_jwt_user_chats_as_themself(browser: Browser, aiohttp_server: Any, settings: Settings) -> None:
    now = int(time.time())
    token = jwt.encode({"iss": "https://shop.example", "aud": "gima-widget", "sub": "customer-7", "iat": now,
                        "exp": now + 600, "name": "Grace"}, HOST_SECRET, algorithm="HS256")
    remember(token)
    host, chat = await _sites(aiohttp_server, settings, token, external_jwt_secret=HOST_SECRET,
                              external_jwt_issuer="https://shop.example", external_jwt_audience="gima-widget",
                              demo_tokens_per_s=300, demo_reply_words=30)
    page = await browser.new_page()
    problems = watch_console(page)
    await page.goto(f"{host}/one")
    await _chat(page, "Where is my order?")
    await expect(_answer(page)).to_have_attribute("data-status", "complete", timeout=15_000)
    store = chat.app[appkeys.STORE]
    user = await store.get_user_by_email(external_email("https://shop.example", "customer-7"))
    assert user is not None and user.name == "Grace"
    [stored_chat] = await store.list_chats(user.id, None, 5)
    assert (await store.list_messages(user.id, stored_chat.id))[0].content == "Where is my order?"
    assert problems == []


async def test_a_reply_survives_navigation_and_two_tabs_share_the_chat(browser: Browser, aiohttp_server: Any,
                                                                       settings: Settings) -> None:
    host, chat = await _sites(aiohttp_server, settings, guest_access=True, demo_tokens_per_s=30, demo_reply_words=80)
    context = await browser.new_context()
    page = await context.new_page()
    problems = watch_console(page, allowed=("ERR_ABORTED",))  # the navigation aborts the old page's stream
    await page.goto(f"{host}/one")
    await _chat(page, "Tell me about your return policy")
    await expect(_panel(page).locator(".agent-text").first).not_to_be_empty()
    await page.goto(f"{host}/two")  # the visitor moves on mid-reply
    await expect(_answer(page)).to_have_attribute("data-status", "complete", timeout=20_000)
    store = chat.app[appkeys.STORE]
    [user_id] = await _user_ids(chat)
    [stored_chat] = await store.list_chats(user_id, None, 5)
    stored = (await store.list_messages(user_id, stored_chat.id))[-1]
    assert "".join(await _answer(page).locator(".agent-text").all_text_contents()) == stored.content
    second = await context.new_page()
    await second.goto(f"{host}/three")
    await second.get_by_role("button", name="Open chat").click()
    await expect(_panel(second).locator("li")).to_have_count(2)  # the same conversation in the other tab
    assert problems == []


async def test_the_widget_is_small_and_fetches_the_markdown_renderer_only_for_markdown(
        browser: Browser, aiohttp_server: Any, settings: Settings, tmp_path: Path) -> None:
    """Everything the widget loads for a plain chat is under 30 KB gzipped; marked and DOMPurify come only with a
    reply that has Markdown in it, and render it inside the shadow root."""
    fake = FakeUpstream("openai")
    fake.faults.tokens = ["Plain words", " only."]
    upstream = await aiohttp_server(fake.app)
    agents = tmp_path / "agents.toml"
    agents.write_text(f'[agents.writer]\nkind = "openai"\nbase_url = "http://127.0.0.1:{upstream.port}/v1"\n'
                      'model = "fake"\n')
    host, _ = await _sites(aiohttp_server, settings, guest_access=True, agents_file=str(agents))
    context = await browser.new_context()
    page = await context.new_page()
    problems = watch_console(page)
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url) if "/static/" in request.url else None)
    await page.goto(f"{host}/one")
    await _chat(page, "Say something plain")
    await expect(_answer(page)).to_have_attribute("data-status", "complete", timeout=15_000)
    files = [STATIC_DIR / url.split("/static/", 1)[1] for url in fetched]
    assert {f.name for f in files} >= {"widget.js", "transport.js", "chat.js", "reply.js", "sse.js", "i18n.js"}
    assert not [f for f in files if f.name == "markdown.js" or f.parent.name == "vendor"]
    size = sum(len(gzip.compress(f.read_bytes())) for f in set(files))
    assert size < 30 * 1024, size

    fake.faults.tokens = ["## Stock\n\n", "- **blue**: 3\n", "- red: <b onclick=x>0</b>\n"]
    await page.get_by_label("Message").fill("And in Markdown?")
    await page.get_by_role("button", name="Send").click()
    await expect(_answer(page)).to_have_attribute("data-status", "complete", timeout=15_000)
    answer = _answer(page)
    await expect(answer.get_by_role("heading", name="Stock")).to_be_visible()
    names = {url.rsplit("/", 1)[1] for url in fetched}
    assert {"markdown.js", "marked.esm.js", "purify.es.mjs"} <= names
    await expect(answer.locator("li strong")).to_have_text("blue")
    assert await answer.locator("[onclick], b").count() == 0  # raw HTML shown as text
    await expect(answer.locator("ul li").last).to_have_text("red: <b onclick=x>0</b>")
    assert problems == []
    await context.close()


async def test_a_returning_guest_with_an_expired_token_gets_a_new_session(browser: Browser, aiohttp_server: Any,
                                                                         settings: Settings) -> None:
    host, chat = await _sites(aiohttp_server, settings, guest_access=True, demo_tokens_per_s=300, demo_reply_words=20)
    context = await browser.new_context()
    page = await context.new_page()
    problems = watch_console(page)
    await page.goto(f"{host}/one?bare=1")  # the host's origin, where the widget keeps its token
    expired = jwt.encode({"sub": "gone", "sid": "gone", "exp": int(time.time()) - 60}, "x" * 32, algorithm="HS256")
    await page.evaluate("t => { localStorage.setItem('gima.widget.token', t); localStorage.setItem('gima.widget.chat', 'c'); }",
                        expired)
    await page.goto(f"{host}/one")
    await _chat(page, "Hello again")
    await expect(_answer(page)).to_have_attribute("data-status", "complete", timeout=15_000)
    assert await page.evaluate("localStorage.getItem('gima.widget.token')") != expired
    assert problems == []


async def test_a_message_sent_before_the_modules_load_is_kept_and_sent_once(browser: Browser, aiohttp_server: Any,
                                                                            settings: Settings) -> None:
    """A visitor on a loaded machine types and presses Send (twice) while lib/chat.js is still on its way: the
    host page must not submit the form natively (it reloaded to host.html? and the message was gone)."""
    host, chat = await _sites(aiohttp_server, settings, guest_access=True, demo_tokens_per_s=300, demo_reply_words=20)
    page = await browser.new_page()
    problems = watch_console(page)
    module_asked = await delay_requests(page, "**/static/lib/chat.js", 3)
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    await page.goto(f"{host}/one")
    await page.get_by_role("button", name="Open chat").click()
    await asyncio.wait_for(module_asked.wait(), 10)
    await page.get_by_label("Message").fill("Is the blue one in stock?")
    send = page.get_by_role("button", name="Send")
    await send.click()
    await send.click()  # impatient: pressed again while nothing seems to happen
    assert await _panel(page).locator("li.user").count() == 0  # the modules are still loading
    await expect(_answer(page)).to_have_attribute("data-status", "complete", timeout=20_000)
    assert navigations == [f"{host}/one"]  # never reloaded, never host/one?
    assert page.url == f"{host}/one"
    await expect(_panel(page).locator("li.user .user-text")).to_have_text(["Is the blue one in stock?"])
    [user_id] = await _user_ids(chat)
    store = chat.app[appkeys.STORE]
    [stored_chat] = await store.list_chats(user_id, None, 5)
    questions = [m.content for m in await store.list_messages(user_id, stored_chat.id) if m.role == "user"]
    assert questions == ["Is the blue one in stock?"]  # kept, and sent once
    assert await page.get_by_label("Message").input_value() == ""
    assert problems == []
