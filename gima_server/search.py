"""GET /api/search?q=…&mode=text|semantic|hybrid&limit=&cursor=: the caller's own messages, best match first.

`text` (the default): messages containing every word of q. `semantic`: messages closest in meaning (needs an
embeddings model). `hybrid`: both rankings fused by reciprocal rank.

Words are taken literally (FTS syntax such as quotes, `NEAR`, `*` or `-` has no effect), so no query can fail
the search engine; empty or overlong queries are 400. Snippets come as parts, the matched ones flagged, so that
a client highlights them without rendering HTML.
"""

from __future__ import annotations

import re

from aiohttp import web

from . import appkeys
from .agents.upstream import UpstreamError
from .auth.sessions import require_user
from .errors import invalid
from .media.embeddings_routes import upstream_failed
from .observability.tracing import request_trace_id
from .semantic.vectors import fuse
from .store.base import SearchHit
from .validation import whole_number

MAX_QUERY_CHARS = 200
MAX_TERMS = 12
DEFAULT_LIMIT, MAX_LIMIT = 20, 50
MAX_OFFSET = 1000
_WORD = re.compile(r"\w+", re.UNICODE)


def query_terms(raw: str | None) -> list[str]:
    """The words of a query, each searched literally; what is not a word (punctuation, FTS operators) is dropped."""
    if raw is None or not raw.strip():
        raise invalid("q must not be empty")
    if len(raw) > MAX_QUERY_CHARS:
        raise invalid(f"q is at most {MAX_QUERY_CHARS} characters")
    terms = list(dict.fromkeys(_WORD.findall(raw)))
    if not terms:
        raise invalid("q has no word to search for")
    return terms[:MAX_TERMS]


def snippet_parts(snippet: str) -> list[dict[str, object]]:
    """SQLite's snippet (matches between \\x02 and \\x03) as [{text, match}] parts."""
    parts: list[dict[str, object]] = []
    for i, piece in enumerate(re.split("[\x02\x03]", snippet)):
        if piece:
            parts.append({"text": piece, "match": i % 2 == 1})
    return parts


def _bounded(raw: str | None, name: str, default: int, high: int, low: int = 1) -> int:
    return default if raw is None else whole_number(raw, name, low, high)


_MODES = ("text", "semantic", "hybrid")
FUSED_DEPTH = 100  # how far down each ranking hybrid mode reads before fusing them


async def search(request: web.Request) -> web.Response:
    principal = await require_user(request)
    raw_query = request.query.get("q")
    terms = query_terms(raw_query)
    mode = request.query.get("mode", "text")
    if mode not in _MODES:
        raise invalid(f"mode must be one of {', '.join(_MODES)}")
    limit = _bounded(request.query.get("limit"), "limit", DEFAULT_LIMIT, MAX_LIMIT)
    offset = _bounded(request.query.get("cursor"), "cursor", 0, MAX_OFFSET, low=0)
    store, user_id = request.app[appkeys.STORE], principal.user.id
    if mode == "text":
        hits = await store.search_messages(user_id, terms, limit + 1, offset)
    else:
        hits = await _by_meaning(request, user_id, str(raw_query).strip(), terms, mode, offset + limit + 1)
        hits = hits[offset:]
    results = [{"messageId": h.message_id, "chatId": h.chat_id, "chatTitle": h.chat_title, "role": h.role,
                "createdAt": h.created_at, "snippet": snippet_parts(h.snippet)} for h in hits[:limit]]
    more = len(hits) > limit and offset + limit <= MAX_OFFSET
    return web.json_response({"results": results, "nextCursor": str(offset + limit) if more else None})


async def _by_meaning(request: web.Request, user_id: str, query: str, terms: list[str], mode: str,
                      depth: int) -> list[SearchHit]:
    semantic = request.app[appkeys.SEMANTIC]
    if semantic is None:
        raise invalid(f"mode={mode} needs an embeddings model: set GIMA_EMBEDDINGS_BASE_URL and GIMA_EMBEDDINGS_MODEL "
                      "(or embeddings = \"<id>\" in GIMA_AGENTS_FILE)")
    store = request.app[appkeys.STORE]
    try:
        await semantic.catch_up(user_id)
        ranked = [message_id for message_id, _ in await semantic.ranked(
            user_id, query, max(depth, FUSED_DEPTH) if mode == "hybrid" else depth, request_trace_id(request))]
    except UpstreamError as exc:
        raise upstream_failed(exc) from None
    if mode == "semantic":
        return await store.search_hits(user_id, ranked)
    text_hits = await store.search_messages(user_id, terms, FUSED_DEPTH, 0)
    fused = fuse([h.message_id for h in text_hits], ranked)[:depth]
    with_words = {h.message_id: h for h in text_hits}  # their snippets show the matched words
    plain = {h.message_id: h for h in await store.search_hits(user_id, [i for i in fused if i not in with_words])}
    return [with_words.get(i) or plain[i] for i in fused if i in with_words or i in plain]


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/search", search)
