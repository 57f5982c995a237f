"""The token estimate against counts measured with OpenAI's own tokenizers (tests/data/token_samples.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gima_server.agents.tokens import MESSAGE_OVERHEAD, estimate_tokens, message_tokens

SAMPLES = json.loads((Path(__file__).parent.parent / "data" / "token_samples.json").read_text())["samples"]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_estimate_never_undercounts_and_overcounts_less_than_twice(name: str) -> None:
    sample = SAMPLES[name]
    estimate = estimate_tokens(sample["text"])
    assert estimate >= max(sample["cl100k"], sample["o200k"]), name
    assert estimate <= 2 * sample["cl100k"], name


def test_random_text_costs_more_than_words_of_the_same_length() -> None:
    words = "the server keeps every reply safe " * 20
    noise = "xq7Zk/9vT+wP3mLr0aQ= " * 33
    assert len(noise) >= len(words)
    assert estimate_tokens(noise) > 2 * estimate_tokens(words)


def test_nothing_costs_nothing_and_a_message_costs_its_framing() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens(" ") == 1
    assert message_tokens("") == MESSAGE_OVERHEAD
    assert message_tokens("hello") == 1 + MESSAGE_OVERHEAD


def test_a_long_message_is_counted_once_and_the_count_is_the_estimate() -> None:
    import gima_server.agents.tokens as tokens

    text = "a message long enough to be worth remembering, " * 10
    first = message_tokens(text)
    assert first == estimate_tokens(text) + MESSAGE_OVERHEAD
    assert (hash(text), len(text)) in tokens._counted
    assert message_tokens(text) == first
    assert len(tokens._counted) <= tokens._CACHE_ENTRIES
