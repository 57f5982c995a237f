"""GET /api/search?q=…&limit=&cursor=: the caller's own messages containing every word of q, best match first.

Words are taken literally (FTS syntax such as quotes, `NEAR`, `*` or `-` has no effect), so no query can fail
the search engine; empty or overlong queries are 400. Snippets come as parts, the matched ones flagged, so that
a client highlights them without rendering HTML.
"""

from __future__ import annotations

import re

from aiohttp import web

from . import appkeys
from .auth.sessions import require_user
from .errors import invalid
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


async def search(request: web.Request) -> web.Response:
    principal = await require_user(request)
    terms = query_terms(request.query.get("q"))
    limit = _bounded(request.query.get("limit"), "limit", DEFAULT_LIMIT, MAX_LIMIT)
    offset = _bounded(request.query.get("cursor"), "cursor", 0, MAX_OFFSET, low=0)
    hits = await request.app[appkeys.STORE].search_messages(principal.user.id, terms, limit + 1, offset)
    results = [{"messageId": h.message_id, "chatId": h.chat_id, "chatTitle": h.chat_title, "role": h.role,
                "createdAt": h.created_at, "snippet": snippet_parts(h.snippet)} for h in hits[:limit]]
    more = len(hits) > limit and offset + limit <= MAX_OFFSET
    return web.json_response({"results": results, "nextCursor": str(offset + limit) if more else None})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/search", search)
