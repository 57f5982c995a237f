"""The page people use, in a real headless Chromium: safe Markdown while streaming, the model picker, voice,
Spanish and English, narrow screens, keyboard use, everyday actions, and axe-core's accessibility rules."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from gima_server import appkeys
from gima_server.app import create_app
from gima_server.config import Settings
from tests.js_clients import JS_DIR, install_js_clients
from tests.speech import spoken_wav
from tests.upstream_fakes import FakeUpstream

from .browser import CHROMIUM, CHROMIUM_ARGS, browser, watch_console

pytestmark = pytest.mark.e2e
__all__ = ["browser"]

# A reply a model might write, cut where a naive renderer would trip: inside a tag, a URL scheme, a fence.
HOSTILE = [
    "# Tide", " tables\n\nSome **bo", "ld** text.\n\n- first", " item\n- second <im", "g src=x onerror=\"window.__pwned=1\">",
    " item\n\n<scr", "ipt>window.__pwned=2</script>\n\n", "A [safe link](https://example.com/a) and a [bad](java",
    "script:window.__pwned=3) one.\n\n", "```python\nprint('hi')\n", "x = 1\n", "```\n\nThe end.",
]
UNCLOSED_AT = HOSTILE.index("x = 1\n") + 1  # the tokens sent before the stream stalls inside the code fence


@pytest.fixture
async def upstream(aiohttp_server: Any) -> tuple[FakeUpstream, str]:
    fake = FakeUpstream("openai")
    fake.faults.tokens = list(HOSTILE)
    server = await aiohttp_server(fake.app)
    return fake, f"http://127.0.0.1:{server.port}/v1"


def _agents(tmp_path: Path, url: str) -> str:
    path = tmp_path / "agents.toml"
    path.write_text(f"""
[agents.writer]
kind = "openai"
label = "Writer"
base_url = "{url}"
model = "fake-writer"
default = true
fallback = ["local"]

[agents.local]
kind = "demo"
label = "Local demo"
tokens_per_s = 400
reply_words = 12
""")
    return str(path)


async def _page(browser: Browser, aiohttp_server: Any, settings: Settings, *, context_options: dict[str, Any] | None = None,
                **overrides: Any) -> tuple[Page, list[str], Any, BrowserContext]:
    server = await aiohttp_server(create_app(replace(settings, **overrides)))
    context = await browser.new_context(**(context_options or {}))
    page = await context.new_page()
    problems = watch_console(page)
    await page.goto(f"http://127.0.0.1:{server.port}/")
    return page, problems, server, context


async def _sign_up(page: Page, email: str = "reader@example.com", *, button: str = "Sign up", email_label: str = "Email",
                   password_label: str = "Password") -> None:
    await page.get_by_label(email_label, exact=True).fill(email)
    await page.get_by_label(password_label, exact=True).fill("browser password")
    await page.get_by_role("button", name=button).click()
    await expect(page.locator("#me")).to_have_text(email)


def _answer(page: Page) -> Any:
    return page.locator("#messages li.assistant").last


async def _ask(page: Page, text: str, *, message: str = "Message", send: str = "Send") -> None:
    await page.get_by_label(message, exact=True).fill(text)
    await page.get_by_role("button", name=send, exact=True).click()


async def test_markdown_streams_rendered_safely_and_whole(browser: Browser, aiohttp_server: Any, settings: Settings,
                                                          upstream: tuple[FakeUpstream, str], tmp_path: Path) -> None:
    fake, url = upstream
    fake.faults.token_delay_s = 0.03
    page, problems, server, context = await _page(
        browser, aiohttp_server, settings, agents_file=_agents(tmp_path, url),
        context_options={"permissions": ["clipboard-read", "clipboard-write"]})
    await _sign_up(page)
    await expect(page.get_by_role("heading", name="Start a conversation")).to_be_visible()  # the empty state
    # Mid-stream, the fence not closed yet: the code so far is a code block, nothing ran, no fence marks shown.
    fake.faults.stall_after = UNCLOSED_AT
    await _ask(page, "Show me tide tables")
    code = _answer(page).locator("pre code")
    await expect(code).to_contain_text("x = 1")
    assert "```" not in await _answer(page).locator(".agent-text").inner_text()
    await page.get_by_role("button", name="Stop", exact=True).click()
    await expect(_answer(page)).to_have_attribute("data-status", "cancelled")

    fake.faults.stall_after = None
    await _ask(page, "Again, the whole table please")
    answer = _answer(page)
    await expect(answer).to_have_attribute("data-status", "complete", timeout=15_000)
    assert await answer.get_by_role("heading", name="Tide tables").count() == 1
    items = await answer.locator(".agent-text ul > li").all_inner_texts()
    assert [re.sub(r"\s+", " ", i).strip() for i in items] == [
        "first item", 'second <img src=x onerror="window.__pwned=1"> item']  # the raw HTML shown as text
    assert await answer.locator("strong").inner_text() == "bold"
    assert await answer.locator("pre code").inner_text() == "print('hi')\nx = 1\n"
    links = answer.locator("a")
    assert await links.count() == 1  # the javascript: one is not a link
    assert await links.get_attribute("href") == "https://example.com/a"
    assert await links.get_attribute("rel") == "noopener noreferrer"
    assert await links.get_attribute("target") == "_blank"
    assert await answer.locator("img, script, [onerror], a[href^='javascript' i]").count() == 0
    assert await page.evaluate("window.__pwned") is None
    text = await answer.locator(".agent-text").inner_text()
    for piece in ("Some bold text.", "<script>window.__pwned=2</script>", "The end.", "A safe link and a bad one."):
        assert text.count(piece) == 1, (piece, text)
    assert "**" not in text and "```" not in text
    # The same after a reload (from the stored reply), and the code block's Copy button copies the code.
    await page.reload()
    answer = _answer(page)
    await expect(answer.locator("pre code")).to_have_text("print('hi')\nx = 1\n")
    assert await answer.get_by_role("heading", name="Tide tables").count() == 1
    await answer.get_by_role("button", name="Copy", exact=True).click()
    assert await page.evaluate("navigator.clipboard.readText()") == "print('hi')\nx = 1\n"
    await answer.get_by_role("button", name="Copy reply").click()
    copied = await page.evaluate("navigator.clipboard.readText()")
    stored = (await _stored(server))[-1].content
    assert copied == stored == "".join(HOSTILE)
    # No voice configured: neither Record nor Read aloud.
    assert await page.get_by_role("button", name="Record").count() == 0
    assert await page.get_by_role("button", name="Read aloud").count() == 0
    assert problems == []
    await context.close()


async def _stored(server: Any) -> list[Any]:
    store = server.app[appkeys.STORE]
    user = await store.get_user_by_email("reader@example.com")
    assert user is not None
    [chat, *_] = await store.list_chats(user.id, None, 5)
    return list(await store.list_messages(user.id, chat.id))


async def test_model_picker_is_kept_per_chat_and_names_the_fallback(
        browser: Browser, aiohttp_server: Any, settings: Settings, upstream: tuple[FakeUpstream, str],
        tmp_path: Path) -> None:
    fake, url = upstream
    page, problems, server, context = await _page(browser, aiohttp_server, settings, agents_file=_agents(tmp_path, url))
    await _sign_up(page)
    picker = page.get_by_label("Model", exact=True)
    await expect(picker).to_have_value("writer")  # the server's default
    await picker.select_option(label="Local demo")
    await _ask(page, "Which model are you?")
    await expect(_answer(page)).to_have_attribute("data-status", "complete", timeout=15_000)
    await expect(_answer(page).locator(".model-note")).to_have_text("Answered by Local demo")
    assert fake.requests == []  # the demo answered; the writer's upstream was never asked
    first_chat = await page.locator(".chat-link[aria-current='true']").get_attribute("data-chat-id")

    await page.get_by_role("button", name="New chat").click()
    await expect(picker).to_have_value("writer")  # a new chat starts on the default
    fake.faults.status, fake.faults.fail_times = 500, 10**9
    await _ask(page, "And now?")
    await expect(_answer(page)).to_have_attribute("data-status", "complete", timeout=30_000)
    await expect(_answer(page).locator(".model-note")).to_have_text(
        "Answered by Local demo instead of Writer (upstream_unavailable)")
    assert fake.requests, "the writer was asked first"

    await page.locator(f".chat-link[data-chat-id='{first_chat}']").click()
    await expect(picker).to_have_value("local")  # that chat's own choice, kept
    await page.reload()
    await expect(picker).to_have_value("local")
    assert problems == []
    await context.close()


async def test_one_model_shows_no_picker(browser: Browser, aiohttp_server: Any, settings: Settings) -> None:
    page, problems, _, context = await _page(browser, aiohttp_server, settings)
    await _sign_up(page)
    await expect(page.get_by_role("button", name="New chat")).to_be_visible()
    assert await page.get_by_label("Model", exact=True).is_hidden()
    assert problems == []
    await context.close()


async def test_spanish_from_the_browser_and_the_switch_is_kept(browser: Browser, aiohttp_server: Any,
                                                               settings: Settings) -> None:
    page, problems, _, context = await _page(browser, aiohttp_server, settings, demo_tokens_per_s=40,
                                             demo_reply_words=40, context_options={"locale": "es-ES"})
    await expect(page.get_by_role("button", name="Registrarse")).to_be_visible()
    assert await page.evaluate("document.documentElement.lang") == "es"
    await _sign_up(page, button="Registrarse", email_label="Correo electrónico", password_label="Contraseña")
    await expect(page.get_by_role("heading", name="Empieza una conversación")).to_be_visible()
    await _ask(page, "¿Cómo funcionan las mareas?", message="Mensaje", send="Enviar")
    await expect(page.get_by_role("button", name="Detener")).to_be_visible()
    await page.get_by_role("button", name="Detener").click()
    await expect(_answer(page).locator(".message-status")).to_contain_text("cancelada")
    await page.get_by_label("Idioma").locator("visible=true").select_option("en")
    await expect(page.get_by_role("button", name="Send", exact=True)).to_be_visible()
    await expect(_answer(page).locator(".message-status")).to_contain_text("cancelled")
    await page.reload()
    await expect(page.get_by_label("Message", exact=True)).to_be_visible()  # the switch outlives the browser's choice
    assert await page.evaluate("document.documentElement.lang") == "en"
    assert problems == []
    await context.close()


async def test_narrow_screen_keyboard_and_everyday_actions(browser: Browser, aiohttp_server: Any,
                                                           settings: Settings) -> None:
    page, problems, server, context = await _page(
        browser, aiohttp_server, settings, demo_tokens_per_s=60, demo_reply_words=30,
        context_options={"viewport": {"width": 375, "height": 740}, "permissions": ["clipboard-read", "clipboard-write"]})
    await _sign_up(page)
    await _ask(page, "How do lighthouses work?")
    await expect(_answer(page)).to_have_attribute("data-status", "complete", timeout=15_000)
    assert await page.evaluate("document.scrollingElement.scrollWidth") <= 375  # no horizontal scroll
    # The chat list and Log out sit behind the Chats button.
    chats = page.get_by_role("button", name="Chats")
    assert await page.get_by_role("button", name="Log out").is_hidden()
    await chats.click()
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()
    await expect(chats).to_have_attribute("aria-expanded", "true")
    # Rename and delete, by keyboard.
    await page.get_by_role("button", name="Rename").focus()
    await page.keyboard.press("Enter")
    await page.keyboard.press("Control+a")
    await page.keyboard.type("Lighthouses")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("button", name="Lighthouses")).to_be_visible()
    [chat] = await server.app[appkeys.STORE].list_chats((await _user(server)).id, None, 5)
    assert chat.title == "Lighthouses"
    await page.keyboard.press("Escape")  # closes the list
    await expect(page.get_by_role("button", name="Log out")).to_be_hidden()
    assert await page.evaluate("document.scrollingElement.scrollWidth") <= 375

    # Edit puts the last question back in the box; Regenerate asks it again.
    await page.get_by_role("button", name="Edit").click()
    await expect(page.get_by_label("Message")).to_have_value("How do lighthouses work?")
    await page.get_by_label("Message").fill("")
    await page.get_by_role("button", name="Regenerate").click()
    await expect(page.locator("#messages > li")).to_have_count(4)
    await expect(_answer(page)).to_have_attribute("data-status", "complete", timeout=15_000)
    await expect(page.locator("#messages li.user .user-text")).to_have_text(["How do lighthouses work?"] * 2)

    # Escape stops a reply wherever the focus is.
    await page.get_by_label("Message").fill("Tell me a very long story about ships and the sea")
    await page.get_by_label("Message").press("Enter")
    await expect(page.get_by_role("button", name="Stop", exact=True)).to_be_visible()
    await page.locator("#log").focus()
    await page.keyboard.press("Escape")
    await expect(_answer(page)).not_to_have_attribute("data-status", "streaming", timeout=10_000)

    await chats.click()
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.get_by_role("button", name="Delete").click()
    await expect(page.locator("#chat-list li")).to_have_count(0)
    await expect(page.get_by_role("heading", name="Start a conversation")).to_be_visible()
    assert await server.app[appkeys.STORE].list_chats((await _user(server)).id, None, 5) == []
    assert problems == []
    await context.close()


async def _user(server: Any) -> Any:
    user = await server.app[appkeys.STORE].get_user_by_email("reader@example.com")
    assert user is not None
    return user


@pytest.fixture
async def microphone_browser(tmp_path: Path) -> AsyncIterator[Browser]:
    """Chromium whose microphone (allowed without asking) plays espeak-ng's real speech."""
    question = spoken_wav(tmp_path, "How high is the tide today?")
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            *CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={question}"])
        yield chromium
        await chromium.close()


async def test_record_and_read_aloud(microphone_browser: Browser, aiohttp_server: Any, settings: Settings,
                                     upstream: tuple[FakeUpstream, str]) -> None:
    fake, url = upstream
    page, problems, _, context = await _page(microphone_browser, aiohttp_server, settings, demo_tokens_per_s=400,
                                             demo_reply_words=12, audio_base_url=url, audio_api_key="audio-key")
    await _sign_up(page)
    await page.get_by_role("button", name="Record").click()
    await expect(page.get_by_role("button", name="Stop recording")).to_be_visible()
    await asyncio.sleep(1.5)
    await page.get_by_role("button", name="Stop recording").click()
    box = page.get_by_label("Message")
    await expect(box).to_have_value(re.compile(r"^heard \d+ bytes$"), timeout=15_000)
    [upload] = [u for u in fake.uploads if "file" in u]
    assert upload["file"][:4] in (b"\x1a\x45\xdf\xa3", b"OggS"), "a WebM or Ogg recording reached the upstream"
    assert await box.input_value() == f"heard {len(upload['file'])} bytes"  # the upstream's text, in the box
    assert len(upload["file"]) > 2000
    await page.get_by_role("button", name="Send", exact=True).click()
    await expect(_answer(page)).to_have_attribute("data-status", "complete", timeout=15_000)
    await _answer(page).get_by_role("button", name="Read aloud").click()
    audio = _answer(page).locator("audio")
    await expect(audio).to_have_attribute("src", re.compile(r"^blob:"))
    spoken = [u for u in fake.uploads if "input" in u][-1]
    assert spoken["input"] == "".join(await _answer(page).locator(".agent-text").all_text_contents())
    assert problems == []
    await context.close()


async def test_a_refused_microphone_is_explained(browser: Browser, aiohttp_server: Any, settings: Settings,
                                                 upstream: tuple[FakeUpstream, str]) -> None:
    _, url = upstream
    page, _, _, context = await _page(browser, aiohttp_server, settings, audio_base_url=url, audio_api_key="k")
    await _sign_up(page)
    await page.get_by_role("button", name="Record").click()
    await expect(page.locator("#status")).to_contain_text("microphone")
    await expect(page.get_by_role("button", name="Record")).to_be_visible()  # not left "recording"
    await context.close()


async def _axe(page: Page, context_selector: str = "document") -> list[str]:
    """axe-core's violations of impact serious or critical, one line each."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(path=str(JS_DIR / "node_modules" / "axe-core" / "axe.min.js"))
    found = await page.evaluate(f"""async () => {{
        const result = await axe.run({context_selector}, {{ resultTypes: ["violations"] }});
        return result.violations.filter((v) => v.impact === "serious" || v.impact === "critical")
          .map((v) => v.id + ": " + v.nodes.map((n) => n.target.join(" ")).join(", "));
    }}""")
    return list(found)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("locale", ["en-US", "es-ES"])
async def test_axe_finds_nothing_serious_on_the_page(browser: Browser, aiohttp_server: Any, settings: Settings,
                                                     upstream: tuple[FakeUpstream, str], tmp_path: Path,
                                                     scheme: str, locale: str) -> None:
    install_js_clients()
    _, url = upstream
    page, problems, _, context = await _page(
        browser, aiohttp_server, settings, agents_file=_agents(tmp_path, url),
        context_options={"bypass_csp": True, "color_scheme": scheme, "locale": locale})
    spanish = locale.startswith("es")
    await page.locator("#auth-view").wait_for()
    assert await _axe(page) == [], "the sign-in view"
    await _sign_up(page, button="Registrarse" if spanish else "Sign up",
                   email_label="Correo electrónico" if spanish else "Email",
                   password_label="Contraseña" if spanish else "Password")
    assert await _axe(page) == [], "the empty chat"
    await _ask(page, "Tide tables?", message="Mensaje" if spanish else "Message", send="Enviar" if spanish else "Send")
    await expect(_answer(page)).to_have_attribute("data-status", "complete", timeout=15_000)
    await expect(_answer(page).locator("pre")).to_be_visible()
    assert await _axe(page) == [], "a chat with a Markdown reply"
    await page.set_viewport_size({"width": 375, "height": 740})
    await page.get_by_role("button", name="Chats").click()
    assert await _axe(page) == [], "narrow, with the chat list open"
    assert problems == []
    await context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("locale", ["en-US", "es-ES"])
async def test_axe_finds_nothing_serious_in_the_open_widget(browser: Browser, aiohttp_server: Any, settings: Settings,
                                                            scheme: str, locale: str) -> None:
    install_js_clients()
    from .test_widget import _sites

    host, _ = await _sites(aiohttp_server, settings, guest_access=True, demo_tokens_per_s=400, demo_reply_words=20)
    context = await browser.new_context(bypass_csp=True, color_scheme=scheme, locale=locale)
    page = await context.new_page()
    problems = watch_console(page)
    await page.goto(f"{host}/one")
    spanish = locale.startswith("es")
    await page.get_by_role("button", name="Abrir chat" if spanish else "Open chat").click()
    await page.get_by_label("Mensaje" if spanish else "Message").fill("Is the blue one in stock?")
    await page.get_by_role("button", name="Enviar" if spanish else "Send", exact=True).click()
    answer = page.locator("gima-chat li.assistant").last
    await expect(answer).to_have_attribute("data-status", "complete", timeout=15_000)
    assert await _axe(page, "document.querySelector('gima-chat')") == []
    assert problems == []
    await context.close()
