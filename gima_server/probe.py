"""`gima-server check-config --probe`: try the store, Redis and each upstream once, and say which answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from .config import Settings

_TIMEOUT_S = 5.0


async def probe(settings: Settings) -> list[tuple[str, bool, str]]:
    """(what, answered, detail) for every backend the configuration names (a new SQLite file gets its schema)."""
    results = [await _store(settings)]
    if settings.redis_url:
        results.append(await _redis(settings))
    for kind in sorted(_upstreams(settings)):
        results.append(await _upstream(settings, kind))
    return results


async def _store(settings: Settings) -> tuple[str, bool, str]:
    from .store import open_store

    store = open_store(settings)
    try:
        async with asyncio.timeout(_TIMEOUT_S):
            await store.open()
            await store.ping()
    except Exception as exc:  # any failure is the answer to report
        return "store", False, f"{type(exc).__name__}: {exc}"
    finally:
        try:
            await store.close()
        except Exception:  # it never opened
            pass
    return "store", True, "answers"


async def _redis(settings: Settings) -> tuple[str, bool, str]:
    from redis.asyncio import Redis

    redis = Redis.from_url(settings.redis_url, socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S)
    try:
        await redis.ping()
    except Exception as exc:  # a refused or timed-out connection is the answer
        return "redis", False, type(exc).__name__
    finally:
        await redis.aclose()
    return "redis", True, "answers"


def _upstreams(settings: Settings) -> set[str]:
    if settings.agent == "pipeline":
        from .agents.pipeline import load_pipeline

        return {s.upstream for s in load_pipeline(Path(settings.pipeline_file))} & {"openai", "anthropic"}
    return {settings.agent} & {"openai", "anthropic"}


async def _upstream(settings: Settings, kind: str) -> tuple[str, bool, str]:
    """GET the provider's model list: it needs the key but costs no tokens."""
    if kind == "openai":
        url, headers = settings.openai_base_url.rstrip("/") + "/v1/models", {"Authorization": f"Bearer {settings.openai_api_key}"}
    else:
        url = settings.anthropic_base_url.rstrip("/") + "/v1/models"
        headers = {"x-api-key": settings.anthropic_api_key, "anthropic-version": "2023-06-01"}
    try:
        timeout = aiohttp.ClientTimeout(total=_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url, headers=headers) as resp:
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return kind, False, f"cannot reach {url} ({type(exc).__name__})"
    if status in (401, 403):
        return kind, False, f"{url} refused the API key ({status})"
    if status >= 500:
        return kind, False, f"{url} answered {status}"
    return kind, True, f"{url} answers ({status})"
