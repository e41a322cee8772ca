"""RedisDedupStore against the embedded stack's real Redis: encoding, expiry, replay, a second writer.

Every test writes under a prefix of its own, so it sees only its own keys.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Awaitable, Callable, TypeVar
from zoneinfo import ZoneInfo

import pytest

from agents.dedup_store import INTSET_ENTRIES, LOG_CHUNK_BYTES, LOG_CHUNK_OFFSETS, RedisDedupStore, TapAt
from agents.rules import CHECKOUT_WITHOUT_CHECKIN, DUPLICATE_CHECKIN, DUPLICATE_CHECKOUT, Presence
from pipeline.clients import redis_client
from pipeline.settings import Settings
from tests.conftest import RunningStack

pytestmark = pytest.mark.integration

T = TypeVar("T")
DAY = "2031-05-06"  # far enough ahead that its keys' expiry lies in the future
TOPIC = "attendance-taps"


def with_store(stack: RunningStack, body: Callable[[RedisDedupStore, Any], Awaitable[T]]) -> T:
    async def go() -> T:
        client = redis_client(Settings(redis_url=stack.redis_url))
        prefix = f"test:{uuid.uuid4().hex[:8]}"
        try:
            return await body(RedisDedupStore(client, ZoneInfo("UTC"), prefix=prefix), client)
        finally:
            keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()

    return asyncio.run(go())


def taps(store: RedisDedupStore, spec: list[tuple[str, str, int]], partition: int = 0) -> list[TapAt]:
    return [TapAt(store.slot("SCH-1", user, DAY), kind, partition, offset) for user, kind, offset in spec]


def test_a_batch_is_decided_in_order_and_stored_as_integer_sets(stack: RunningStack) -> None:
    async def body(store: RedisDedupStore, client: Any) -> None:
        batch = taps(store, [("a", "checkout", 0), ("a", "checkin", 1), ("a", "checkin", 2),
                             ("b", "checkin", 3), ("a", "checkout", 4), ("a", "checkout", 5)])
        assert await store.decide(batch, topic=TOPIC) == [
            CHECKOUT_WITHOUT_CHECKIN, None, DUPLICATE_CHECKIN, None, None, DUPLICATE_CHECKOUT]
        a, b = store.slot("SCH-1", "a", DAY), store.slot("SCH-1", "b", DAY)
        assert await store.presence([a, b, store.slot("SCH-1", "c", DAY)]) == [
            Presence.CHECKED_OUT, Presence.CHECKED_IN, Presence.ABSENT]
        for key in {a.key, b.key}:
            assert await client.object("encoding", key) == b"intset"
            assert 0 < await client.ttl(key) <= store.expire_at(DAY)
        assert await store.next_offsets(TOPIC, [0, 1]) == {0: 6, 1: None}

    with_store(stack, body)


def test_an_old_days_state_outlives_its_write_so_a_student_counts_once(stack: RunningStack) -> None:
    """Taps of 1970 (another producer's) in two batches: the second check-in is a duplicate."""
    async def body(store: RedisDedupStore, client: Any) -> None:
        old = "1970-01-01"
        first = [TapAt(store.slot("SCH-1", "u", old), "checkin", 0, 0)]
        again = [TapAt(store.slot("SCH-1", "u", old), "checkin", 0, 1),
                 TapAt(store.slot("SCH-1", "u", old), "checkin", 0, 2)]
        assert await store.decide(first, topic=TOPIC) == [None]
        assert await client.ttl(first[0].slot.key) > 7 * 86400
        assert await store.decide(again, topic=TOPIC) == [DUPLICATE_CHECKIN, DUPLICATE_CHECKIN]

    with_store(stack, body)


def test_a_batch_read_again_gets_the_same_answers_and_changes_nothing(stack: RunningStack) -> None:
    async def body(store: RedisDedupStore, client: Any) -> None:
        spec = [("a", "checkout", 10), ("a", "checkin", 11), ("a", "checkout", 12), ("b", "checkin", 13)]
        first = await store.decide(taps(store, spec), topic=TOPIC)
        snapshot = {k: await client.dump(k) async for k in client.scan_iter(match="test:*")}
        # After a crash the consumer reads from the last commit: part of it again, then more.
        again = await store.decide(taps(store, spec[1:] + [("b", "checkin", 14)]), topic=TOPIC)
        assert again == first[1:] + [DUPLICATE_CHECKIN]
        assert await store.decide(taps(store, spec), topic=TOPIC) == first
        assert first == [CHECKOUT_WITHOUT_CHECKIN, None, None, None]
        for key, raw in snapshot.items():
            if b":log:" not in key and b":next:" not in key:
                assert await client.dump(key) == raw, key

    with_store(stack, body)


def test_outcome_log_is_two_bits_a_tap_in_full_size_chunks_that_expire(stack: RunningStack) -> None:
    async def body(store: RedisDedupStore, client: Any) -> None:
        start = LOG_CHUNK_OFFSETS + 10
        spec = [(f"u{i}", "checkin" if i % 3 else "checkout", start + i) for i in range(4000)]
        first = await store.decide(taps(store, spec, partition=3), topic=TOPIC)
        logs = [k async for k in client.scan_iter(match="test:*:log:*")]
        assert len(logs) == 1 and logs[0].endswith(f":log:{TOPIC}:3:1".encode())
        assert 0 < await client.ttl(logs[0]) <= 8 * 86400
        assert await client.strlen(logs[0]) == LOG_CHUNK_BYTES == LOG_CHUNK_OFFSETS * 2 // 8
        # The codes sit at 2 bits per offset from the chunk's start: read one back by hand.
        raw = await client.getrange(logs[0], 0, LOG_CHUNK_BYTES)
        code_of_first = (raw[10 * 2 // 8] >> (6 - (10 * 2) % 8)) & 0b11
        assert code_of_first == 3 and first[0] == CHECKOUT_WITHOUT_CHECKIN  # u0 checked out first

    with_store(stack, body)


def test_a_second_writer_between_read_and_write_makes_the_batch_decided_again(stack: RunningStack) -> None:
    """A worker that lost its partitions may still write; the compare-and-set notices."""

    async def body(store: RedisDedupStore, client: Any) -> None:
        other = RedisDedupStore(client, ZoneInfo("UTC"), prefix=store._prefix.decode())
        reads = 0
        real_read = store._read

        async def read_then_interfere(*args: Any, **kwargs: Any) -> Any:
            nonlocal reads
            raw = await real_read(*args, **kwargs)
            reads += 1
            if reads == 1:  # the other writer decides the same record in the meantime
                await other.decide(taps(other, [("a", "checkin", 0)]), topic=TOPIC)
            return raw

        store._read = read_then_interfere  # type: ignore[method-assign]
        assert await store.decide(taps(store, [("a", "checkin", 0), ("a", "checkin", 1)]), topic=TOPIC) == [
            None, DUPLICATE_CHECKIN]
        assert reads == 2
        assert await store.next_offsets(TOPIC, [0]) == {0: 2}

    with_store(stack, body)


def test_many_students_of_one_day_stay_compact(stack: RunningStack) -> None:
    async def body(store: RedisDedupStore, client: Any) -> None:
        spec = [(f"{i:024x}", kind, 2 * i + (kind == "checkout")) for i in range(3000) for kind in ("checkin",)]
        await store.decide(taps(store, spec), topic=TOPIC)
        keys = [k async for k in client.scan_iter(match=f"test:*:{DAY}:*")]
        encodings = {await client.object("encoding", k) for k in keys}
        assert encodings == {b"intset"}
        assert sum([await client.scard(k) for k in keys]) == 3000

    with_store(stack, body)


def test_the_embedded_redis_keeps_buckets_compact_and_a_low_limit_is_reported(stack: RunningStack) -> None:
    async def body(store: RedisDedupStore, client: Any) -> None:
        assert await store.intset_limit_problem() is None  # the stack starts Redis with INTSET_ENTRIES
        await client.config_set("set-max-intset-entries", 512)
        try:
            problem = await store.intset_limit_problem()
        finally:
            await client.config_set("set-max-intset-entries", INTSET_ENTRIES)
        assert problem is not None and "set-max-intset-entries is 512" in problem

    with_store(stack, body)


def test_records_handled_without_a_decision_still_move_the_mark(stack: RunningStack) -> None:
    """A dead-lettered record last in its batch must not look like a gap to the next batch."""

    async def body(store: RedisDedupStore, client: Any) -> None:
        # Offsets 0-1 are taps, 2-3 poison (decoded by nobody): the batch went through 4.
        assert await store.decide(taps(store, [("a", "checkin", 0), ("b", "checkin", 1)]),
                                  topic=TOPIC, through={0: 4}) == [None, None]
        assert await store.next_offsets(TOPIC, [0]) == {0: 4}
        # A batch of nothing but poison moves the mark too, and never backwards.
        assert await store.decide([], topic=TOPIC, through={0: 7, 1: 3}) == []
        assert await store.next_offsets(TOPIC, [0, 1]) == {0: 7, 1: 3}
        assert await store.decide([], topic=TOPIC, through={0: 5}) == []
        assert await store.next_offsets(TOPIC, [0]) == {0: 7}
        # The taps decided before the poison are still answered from the log when read again.
        assert await store.decide(taps(store, [("a", "checkin", 0), ("b", "checkin", 1)]),
                                  topic=TOPIC, through={0: 4}) == [None, None]

    with_store(stack, body)
