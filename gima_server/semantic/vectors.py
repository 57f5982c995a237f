"""Pure vector arithmetic for semantic search: unit vectors packed as float32, an honest scan, rank fusion.

An honest scan rather than an index: this Python's sqlite3 cannot load extensions (no sqlite-vec) and pgvector is
not on every PostgreSQL; a user's vectors are scanned in a worker thread (measured in ADR 20: 10,000 messages of
384 dimensions in about 0.1 s).
"""

from __future__ import annotations

import array
import heapq
import math
import operator
import sys
from typing import Iterable, Sequence

RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al.; what Elasticsearch and OpenSearch use)


def pack(vector: Sequence[float]) -> bytes:
    """The vector scaled to unit length as little-endian float32 (so that a dot product is the cosine)."""
    norm = math.sqrt(sum(v * v for v in vector))
    if not norm or not all(math.isfinite(v) for v in vector):
        raise ValueError("an embedding must be finite and not all zero")
    packed = array.array("f", (v / norm for v in vector))
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def unpack(blob: bytes) -> array.array[float]:
    values = array.array("f")
    values.frombytes(blob)
    if sys.byteorder != "little":
        values.byteswap()
    return values


def nearest(query: Sequence[float], candidates: Iterable[tuple[str, bytes]], k: int) -> list[tuple[str, float]]:
    """The k candidates closest to the query by cosine, best first (vectors of another length are skipped)."""
    unit = unpack(pack(query))
    dims, mul = len(unit), operator.mul
    scored = ((sum(map(mul, unit, vector)), key) for key, blob in candidates
              if len(vector := unpack(blob)) == dims)
    return [(key, score) for score, key in heapq.nlargest(k, scored)]


def fuse(*rankings: Sequence[str]) -> list[str]:
    """Reciprocal rank fusion: each list adds 1/(RRF_K + rank) to its items; best first, ties by first appearance."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores, key=lambda key: -scores[key])
