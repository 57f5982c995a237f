"""Frames while the page renders a long Markdown reply as it streams (issue 25), in headless Chromium.

  python -m bench.page_render                  # a 2,000-token reply at 200 tokens/s, Markdown and plain, 3 runs each
  python -m bench.page_render --tokens 4000 --rate 400 --runs 1

A fake OpenAI-format upstream streams the same 2,000 tokens twice per run: once as Markdown (headings, lists, a
table, code fences, links, emphasis) and once with every Markdown character taken out, so the page shows it as
plain text — the baseline, run in the same browser. The page records every animation frame's interval
(requestAnimationFrame) and every long task (PerformanceObserver 'longtask', > 50 ms) from the first event to the
reply's end. Reported: frames, interval p50/p99/max, frames over 50 ms (three frames dropped at 60 Hz: the
stutter a reader notices), long-task milliseconds; and the Markdown run's p99 and dropped-frame count against the
plain run's. PASS: no frame over 100 ms and at most 1% of frames over 50 ms while Markdown streams.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, AsyncIterator

from aiohttp import web
from playwright.async_api import async_playwright

from gima_server.app import create_app
from gima_server.config import Settings
from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS
from tests.upstream_fakes import FakeUpstream

WORDS = ("tide moon harbour lighthouse keeper signal lantern current shore beacon chart compass vessel fog "
         "reef storm anchor rope deck sail").split()


def markdown_reply(tokens: int, seed: int = 7) -> list[str]:
    """About `tokens` tokens of varied Markdown, split the way a model's stream splits it (words and pieces)."""
    rng = random.Random(seed)
    parts: list[str] = []
    section = 0
    while sum(len(p.split()) for p in parts) < tokens:
        section += 1
        parts.append(f"## Part {section}: the {rng.choice(WORDS)}\n\n")
        parts.append(" ".join(rng.choice(WORDS) for _ in range(40)).capitalize() + " with **bold** and `code`.\n\n")
        parts.append("".join(f"- {rng.choice(WORDS)} *{rng.choice(WORDS)}*\n" for _ in range(5)) + "\n")
        parts.append("| item | count |\n|---|---|\n" + "".join(f"| {rng.choice(WORDS)} | {n} |\n" for n in range(4)))
        parts.append("\n```python\n" + "".join(f"{w} = {n}  # {rng.choice(WORDS)}\n" for n, w in enumerate(WORDS[:6]))
                     + "```\n\nSee [the chart](https://example.com/chart) for more.\n\n")
    pieces = re.findall(r"\S+\s*|\s+", "".join(parts))
    return pieces[:tokens]


def plain_of(tokens: list[str]) -> list[str]:
    return [re.sub(r"[#*`|\[\]()_>-]", "", t) or " " for t in tokens]


RECORDER = """() => {
  window.__frames = []; window.__long = [];
  new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__long.push(e.duration); })
    .observe({ type: "longtask", buffered: false });
  let last = performance.now();
  const tick = (now) => { window.__frames.push(now - last); last = now; if (!window.__stop) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
}"""


async def one_run(page: Any, fake: FakeUpstream, tokens: list[str], rate: float, question: str) -> dict[str, float]:
    fake.faults.tokens = tokens
    fake.faults.token_delay_s = 1 / rate
    await page.evaluate("() => { window.__stop = false; }")
    await page.get_by_label("Message", exact=True).fill(question)
    await page.evaluate(RECORDER)
    await page.get_by_role("button", name="Send", exact=True).click()
    answer = page.locator("#messages li.assistant").last
    await answer.wait_for()
    await page.wait_for_function("() => { const a = [...document.querySelectorAll('#messages li.assistant')].pop();"
                                 " return a && a.dataset.status === 'complete'; }", timeout=300_000, polling=200)
    frames, long_tasks = await page.evaluate("() => { window.__stop = true; return [window.__frames, window.__long]; }")
    frames = sorted(frames[1:])
    return {"frames": len(frames), "p50": statistics.median(frames), "p99": frames[int(len(frames) * 0.99) - 1],
            "max": frames[-1], "over50": sum(f > 50 for f in frames), "long_ms": sum(long_tasks)}


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@contextlib.asynccontextmanager
async def page_server(agents_extra: str = "", **overrides: Any) -> AsyncIterator[tuple[int, FakeUpstream]]:
    """gima-server on its embedded defaults with a `writer` model streaming from a fake OpenAI-format upstream;
    yields (the server's port, the upstream)."""
    fake = FakeUpstream("openai")
    upstream_runner, upstream_port = await _serve(fake.app)
    with tempfile.TemporaryDirectory() as tmp:
        agents = Path(tmp) / "agents.toml"
        agents.write_text(f'[agents.writer]\nkind = "openai"\nlabel = "Writer"\n'
                          f'base_url = "http://127.0.0.1:{upstream_port}/v1"\nmodel = "fake"\ncontext_tokens = 200000\n'
                          + agents_extra)
        settings = replace(Settings(), data_dir=Path(tmp), agents_file=str(agents), secret_keys=("x" * 40,), **overrides)
        runner, port = await _serve(create_app(settings))
        try:
            yield port, fake
        finally:
            await runner.cleanup()
            await upstream_runner.cleanup()


async def main(args: argparse.Namespace) -> int:
    tokens = markdown_reply(args.tokens)
    plain = plain_of(tokens)
    async with page_server() as (port, fake):
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.get_by_label("Email").fill("bench@example.com")
            await page.get_by_label("Password").fill("bench password")
            await page.get_by_role("button", name="Sign up").click()
            await page.get_by_label("Message", exact=True).wait_for()
            results: dict[str, list[dict[str, float]]] = {"markdown": [], "plain": []}
            for run in range(args.runs):
                for kind, stream in (("plain", plain), ("markdown", tokens)):
                    await page.get_by_role("button", name="New chat").click()
                    results[kind].append(await one_run(page, fake, stream, args.rate, f"{kind} run {run}"))
                    r = results[kind][-1]
                    print(f"run {run + 1} {kind:8} frames {r['frames']:5.0f}  interval p50 {r['p50']:5.1f} ms"
                          f"  p99 {r['p99']:6.1f} ms  max {r['max']:6.1f} ms  over 50 ms {r['over50']:3.0f}"
                          f"  long tasks {r['long_ms']:6.0f} ms", flush=True)
            await browser.close()
    md, pl = results["markdown"], results["plain"]
    worst_max = max(r["max"] for r in md)
    worst_share = max(r["over50"] / r["frames"] for r in md)
    print(f"\n{args.tokens} tokens at {args.rate:.0f}/s, {args.runs} run(s): Markdown p99 "
          f"{min(r['p99'] for r in md):.1f}–{max(r['p99'] for r in md):.1f} ms vs plain "
          f"{min(r['p99'] for r in pl):.1f}–{max(r['p99'] for r in pl):.1f} ms; frames over 50 ms "
          f"{sum(r['over50'] for r in md):.0f} vs {sum(r['over50'] for r in pl):.0f}")
    ok = worst_max <= 100 and worst_share <= 0.01
    print(f"{'PASS' if ok else 'FAIL'}: worst frame {worst_max:.0f} ms (≤ 100), frames over 50 ms "
          f"{worst_share:.1%} (≤ 1%)")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="tokens per second from the upstream")
    parser.add_argument("--runs", type=int, default=3)
    raise SystemExit(asyncio.run(main(parser.parse_args())))
