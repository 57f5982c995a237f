import asyncio

from gima_server.idempotency import IdempotencyRecord, MemoryIdempotencyStore, fingerprint

from ..fakes import FakeClock


async def test_fifty_concurrent_claims_have_exactly_one_winner() -> None:
    store = MemoryIdempotencyStore(ttl_s=60)
    record = IdempotencyRecord("fp", "m1")
    results = await asyncio.gather(*(store.claim("u", "k", record) for _ in range(50)))
    assert sum(r is None for r in results) == 1
    assert all(r is not None and r.message_id == "m1" for r in results if r is not None)


async def test_records_expire_after_their_ttl_and_are_per_user() -> None:
    clock = FakeClock()
    store = MemoryIdempotencyStore(ttl_s=60, lease_s=60, clock=clock)
    assert await store.claim("u", "k", IdempotencyRecord("fp", "m1")) is None
    assert await store.claim("other", "k", IdempotencyRecord("fp", "m2")) is None
    clock.now += 59
    assert (await store.claim("u", "k", IdempotencyRecord("fp", "m3"))).message_id == "m1"  # type: ignore[union-attr]
    clock.now += 2
    assert await store.claim("u", "k", IdempotencyRecord("fp", "m3")) is None


async def test_record_count_is_bounded() -> None:
    store = MemoryIdempotencyStore(ttl_s=60, max_records=3)
    for i in range(10):
        await store.claim("u", f"k{i}", IdempotencyRecord("fp", f"m{i}"))
    assert len(store._records) <= 4


def test_fingerprint_ignores_key_order_but_not_values() -> None:
    a = fingerprint("POST", "/p", {"content": "x", "chatId": None})
    assert a == fingerprint("POST", "/p", {"chatId": None, "content": "x"})
    assert a != fingerprint("POST", "/p", {"content": "y", "chatId": None})
