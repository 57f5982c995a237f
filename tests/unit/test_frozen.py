"""evolve: a changed copy of a frozen, slotted dataclass, as dataclasses.replace makes it."""

from __future__ import annotations

import dataclasses

import pytest

from gima_server.frozen import evolve
from gima_server.store.base import Exchange
from gima_server.streams.registry import StartRequest


def _exchange() -> Exchange:
    return Exchange("u1", "c1", "a title", "m1", "m2", "hello", 12.5, model="demo", options={"temperature": 0.2})


def test_a_changed_copy_equals_what_replace_makes_and_leaves_the_original_alone() -> None:
    original = _exchange()
    changed = evolve(original, fence=7, context=(("user", "earlier"),))
    assert changed == dataclasses.replace(original, fence=7, context=(("user", "earlier"),))
    assert (original.fence, original.context) == (0, ())
    assert type(changed) is Exchange
    start = StartRequest(original, "s1", "t1", None, "print")
    assert evolve(start, exchange=changed).exchange is changed and evolve(start, exchange=changed).session_id == "s1"


def test_the_copy_is_as_frozen_as_the_original() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        evolve(_exchange(), fence=1).fence = 2  # type: ignore[misc]


def test_an_unknown_field_is_refused() -> None:
    with pytest.raises(TypeError, match="fense"):
        evolve(_exchange(), fense=1)
