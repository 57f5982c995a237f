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
    for kind, models in sorted(_upstreams(settings).items()):
        results.append(await _upstream(settings, kind, models))
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
    from .redis_client import connect

    redis = connect(settings, _TIMEOUT_S)
    try:
        await redis.ping()
    except Exception as exc:  # a refused or timed-out connection is the answer
        return "redis", False, type(exc).__name__
    finally:
        await redis.aclose()
    return "redis", True, "answers"


def _upstreams(settings: Settings) -> dict[str, set[str]]:
    """Each upstream the agent calls, with the models it asks that upstream for."""
    if settings.agent == "pipeline":
        from .agents.pipeline import load_pipeline

        wanted: dict[str, set[str]] = {}
        for spec in load_pipeline(Path(settings.pipeline_file)):
            if spec.upstream in ("openai", "anthropic"):
                wanted.setdefault(spec.upstream, set()).add(spec.model or _default_model(settings, spec.upstream))
        return wanted
    if settings.agent in ("openai", "anthropic"):
        return {settings.agent: {_default_model(settings, settings.agent)}}
    return {}


def _default_model(settings: Settings, kind: str) -> str:
    return settings.openai_model if kind == "openai" else settings.anthropic_model


async def _upstream(settings: Settings, kind: str, models: set[str]) -> tuple[str, bool, str]:
    """GET the provider's model list: it needs the key but costs no tokens, and names the models it serves."""
    from .agents.upstream import api_root

    if kind == "openai":
        base = settings.openai_base_url
        url, headers = api_root(base) + "/v1/models", {"Authorization": f"Bearer {settings.openai_api_key}"}
    else:
        base = settings.anthropic_base_url
        url = api_root(base) + "/v1/models"
        headers = {"x-api-key": settings.anthropic_api_key, "anthropic-version": "2023-06-01"}
    try:
        timeout = aiohttp.ClientTimeout(total=_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url, headers=headers) as resp:
            status = resp.status
            listing = await resp.json(content_type=None) if status == 200 else None
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return kind, False, f"cannot reach {url} ({type(exc).__name__})"
    if status in (401, 403):
        return kind, False, f"{url} refused the API key ({status})"
    if status == 404:
        return kind, False, (f"{url} does not exist (404): GIMA_{kind.upper()}_BASE_URL={base!r} should be the "
                             "server's root or its /v1 base")
    if status >= 400:
        return kind, False, f"{url} answered {status}"
    offered = _model_ids(listing)
    missing = sorted(models - offered) if offered else []
    if missing:
        return kind, False, f"{url} does not offer model {', '.join(map(repr, missing))} (it offers {len(offered)} others)"
    return kind, True, f"{url} answers ({status})"


def _model_ids(listing: object) -> set[str]:
    """Model ids from an OpenAI- or Anthropic-style list (empty when the server lists none or another shape)."""
    data = listing.get("data") if isinstance(listing, dict) else None
    return {str(m["id"]) for m in data if isinstance(m, dict) and "id" in m} if isinstance(data, list) else set()
