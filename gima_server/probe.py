"""`gima-server check-config --probe`: try the store, Redis and each upstream once, and say which answers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from .config import Settings

_TIMEOUT_S = 5.0


async def probe(settings: Settings) -> list[tuple[str, bool, str]]:
    """(what, answered, detail) for every backend the configuration names (a new SQLite file gets its schema)."""
    results = [await _store(settings)]
    if settings.redis_url:
        results.append(await _redis(settings))
    for target in _upstreams(settings):
        results.append(await _upstream(target))
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


@dataclass(frozen=True)
class _Target:
    """One upstream to probe: what it is called in the answer, its kind, root, key and the models asked of it."""

    name: str
    kind: str
    base_url: str
    api_key: str = field(repr=False)
    models: frozenset[str]
    setting: str  # where its base URL is configured, for the answer to a 404


def _upstreams(settings: Settings) -> list[_Target]:
    """Each upstream the configuration calls, with the models it asks that upstream for."""
    if settings.agents_file:
        from .agents import load_agents_file

        catalog = load_agents_file(settings)
        assert catalog is not None
        return [_Target(e.id, e.kind, e.base_url, e.api_key, frozenset({e.model}), f"agents.{e.id}.base_url")
                for e in catalog.entries.values() if e.kind in ("openai", "anthropic")]
    wanted: dict[str, set[str]] = {}
    if settings.agent == "pipeline":
        from .agents.pipeline import load_pipeline

        for spec in load_pipeline(Path(settings.pipeline_file)):
            if spec.upstream in ("openai", "anthropic"):
                wanted.setdefault(spec.upstream, set()).add(spec.model or _default_model(settings, spec.upstream))
    elif settings.agent in ("openai", "anthropic"):
        wanted[settings.agent] = {_default_model(settings, settings.agent)}
    return [_Target(kind, kind, getattr(settings, f"{kind}_base_url"), getattr(settings, f"{kind}_api_key"),
                    frozenset(models), f"GIMA_{kind.upper()}_BASE_URL") for kind, models in sorted(wanted.items())]


def _default_model(settings: Settings, kind: str) -> str:
    return settings.openai_model if kind == "openai" else settings.anthropic_model


async def _upstream(target: _Target) -> tuple[str, bool, str]:
    """GET the provider's model list: it needs the key but costs no tokens, and names the models it serves."""
    from .agents.upstream import api_root

    url = api_root(target.base_url) + "/v1/models"
    if target.kind == "openai":
        headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
    else:
        headers = {"x-api-key": target.api_key, "anthropic-version": "2023-06-01"}
    name = target.name
    try:
        timeout = aiohttp.ClientTimeout(total=_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url, headers=headers) as resp:
            status = resp.status
            listing = await resp.json(content_type=None) if status == 200 else None
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return name, False, f"cannot reach {url} ({type(exc).__name__})"
    if status in (401, 403):
        return name, False, f"{url} refused the API key ({status})"
    if status == 404:
        return name, False, (f"{url} does not exist (404): {target.setting}={target.base_url!r} should be the "
                             "server's root or its /v1 base")
    if status >= 400:
        return name, False, f"{url} answered {status}"
    offered = _model_ids(listing)
    missing = sorted(target.models - offered) if offered else []
    if missing:
        return name, False, f"{url} does not offer model {', '.join(map(repr, missing))} (it offers {len(offered)} others)"
    return name, True, f"{url} answers ({status})"


def _model_ids(listing: object) -> set[str]:
    """Model ids from an OpenAI- or Anthropic-style list (empty when the server lists none or another shape)."""
    data = listing.get("data") if isinstance(listing, dict) else None
    return {str(m["id"]) for m in data if isinstance(m, dict) and "id" in m} if isinstance(data, list) else set()
