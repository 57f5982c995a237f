"""Times and roles as browser exports hold them, read by the migration model (pure)."""

from __future__ import annotations

import json

import pytest

from gima_server.errors import ApiError
from gima_server.migration.model import BatchLimits, parse_batch, queued_form, timestamp


@pytest.mark.parametrize(("raw", "seconds"), [
    ("2024-05-01T12:34:56.789Z", 1714566896.789),      # JSON.stringify(new Date(...))
    ("2024-05-01T12:34:56", 1714566896.0),             # no zone: UTC
    ("2024-05-01T14:34:56+02:00", 1714566896.0),
    ("2024-05-01", 1714521600.0),
    (1714566896, 1714566896.0),                         # time.time()
    (1714566896.25, 1714566896.25),
    (1714566896789, 1714566896.789),                    # Date.now()
    (99_999_999_999, 99_999_999_999.0),                 # the largest number read as seconds (year 5138)
    (100_000_000_000, 100_000_000.0),                   # the smallest read as milliseconds (1973)
    (0, 0.0),
    (None, None),
])
def test_export_times_become_epoch_seconds(raw: object, seconds: float | None) -> None:
    assert timestamp("createdAt", raw) == (pytest.approx(seconds) if seconds is not None else None)


@pytest.mark.parametrize("raw", ["last tuesday", "", "2024-13-01", "0000-01-01", "1969-12-31T23:59:59Z", -1, -0.5,
                                 253_402_300_800_000, 10**400, True, False, [], {}, float("nan"), float("inf")])
def test_other_times_are_a_400_naming_the_field(raw: object) -> None:
    with pytest.raises(ApiError) as info:
        timestamp("conversations[0].createdAt", raw)
    assert info.value.status == 400 and info.value.message.startswith("conversations[0].createdAt: ISO 8601")


def test_other_roles_are_skipped_and_counted_and_a_queued_batch_reads_back_the_same() -> None:
    batch = {"conversations": [
        {"title": "t", "createdAt": 1714566896789, "messages": [
            {"role": "system", "content": "prompt"}, {"role": "user", "content": "q", "createdAt": "2024-05-01T12:35:00Z"},
            {"role": "tool", "content": {"parts": ["not text"]}}, {"role": "assistant", "content": "a"}]},
        {"title": "only a prompt", "messages": [{"role": "developer", "content": "x"}]},
        {"title": "empty", "messages": []},
    ]}
    parsed = parse_batch(batch, BatchLimits())
    assert [len(c.messages) for c in parsed] == [2, 0, 0]
    assert [c.skipped_messages for c in parsed] == [2, 1, 0]
    assert parsed[0].created_at == pytest.approx(1714566896.789)
    again = parse_batch(json.loads(queued_form(parsed)), BatchLimits())
    assert again == parsed  # times, messages, hashes and skipped counts survive the queue
