"""Unit tests for the pure parts of the Redis dedup store: state codec, key scheme, expiry."""

from __future__ import annotations

import itertools
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis

from agents.dedup_store import RedisDedupStore, StudentSlot, decode_state, encode_state
from agents.rules import EMPTY, StudentDay, decide
from pipeline.settings import Settings

KOLKATA = ZoneInfo("Asia/Kolkata")
KEY_RE = re.compile(rb"^rc:dd:(\d{4}-\d{2}-\d{2}):([0-9a-f]{4})$")


def store(tz: ZoneInfo = KOLKATA, **kwargs: int | str) -> RedisDedupStore:
    """A store around a client that is never connected (construction does no I/O)."""
    return RedisDedupStore(aioredis.Redis(), tz, **kwargs)  # type: ignore[arg-type]


def bucket_of(slot: StudentSlot) -> int:
    m = KEY_RE.match(slot.key)
    assert m is not None, slot.key
    return int(m.group(2), 16)


# --- encode_state / decode_state ----------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "raw"),
    [
        (StudentDay(), b""),
        (StudentDay(0, None), b"0"),
        (StudentDay(17, None), b"17"),
        (StudentDay(0, 1), b"0:1"),
        (StudentDay(17, 42), b"17:42"),
        (StudentDay(2**40, 2**40 + 1), b"1099511627776:1099511627777"),
    ],
)
def test_state_codec(state: StudentDay, raw: bytes) -> None:
    assert encode_state(state) == raw
    assert decode_state(raw) == state


def test_every_state_reachable_by_the_rules_round_trips() -> None:
    """All states `decide` can produce from an empty day, over every 5-tap sequence."""
    seen = set()
    for kinds in itertools.product(("checkin", "checkout"), repeat=5):
        state = EMPTY
        for offset, kind in enumerate(kinds):
            _, state = decide(state, kind, offset)
            seen.add(state)
    assert StudentDay(0, 1) in seen and StudentDay(4, None) in seen and EMPTY in seen
    for state in seen:
        assert decode_state(encode_state(state)) == state


# --- slot ---------------------------------------------------------------------------------------


def test_slot_is_deterministic() -> None:
    a = store().slot("SCH-001", "65f1c0ffee0000000000abcd", "2026-03-10")
    b = store().slot("SCH-001", "65f1c0ffee0000000000abcd", "2026-03-10")
    assert a == b
    assert a.day == "2026-03-10"


def test_slot_layout() -> None:
    slot = store().slot("SCH-001", "65f1c0ffee0000000000abcd", "2026-03-10")
    m = KEY_RE.match(slot.key)
    assert m is not None
    assert m.group(1) == b"2026-03-10"
    assert isinstance(slot.field, bytes)
    assert len(slot.field) == 7


def test_other_day_other_key_same_bucket_and_field() -> None:
    s = store()
    a = s.slot("SCH-001", "u1", "2026-03-10")
    b = s.slot("SCH-001", "u1", "2026-03-11")
    assert a.key != b.key
    assert a.key.replace(b"2026-03-10", b"2026-03-11") == b.key
    assert a.field == b.field
    assert bucket_of(a) == bucket_of(b)


def test_same_student_in_another_school_is_another_slot() -> None:
    s = store()
    assert s.slot("SCH-001", "u1", "2026-03-10") != s.slot("SCH-002", "u1", "2026-03-10")


def test_students_get_distinct_slots() -> None:
    s = store()
    slots = {(sl.key, sl.field) for sl in (s.slot("SCH-001", f"{i:024x}", "2026-03-10") for i in range(5000))}
    assert len(slots) == 5000


@pytest.mark.parametrize("bits", [1, 4, 8, 14, 16])
def test_buckets_stay_within_bucket_bits(bits: int) -> None:
    s = store(bucket_bits=bits)
    buckets = {bucket_of(s.slot(f"SCH-{i % 7}", f"{i:024x}", "2026-03-10")) for i in range(3000)}
    assert max(buckets) < 2**bits
    assert min(buckets) >= 0
    if bits <= 8:
        assert buckets == set(range(2**bits))  # 3000 students spread over every bucket


def test_default_bucket_bits_is_14() -> None:
    s = store()
    buckets = {bucket_of(s.slot("SCH-001", f"{i:024x}", "2026-03-10")) for i in range(20000)}
    assert max(buckets) < 2**14
    assert max(buckets) >= 2**13  # the mask is not narrower than 14 bits


def test_bucket_bits_does_not_change_the_field() -> None:
    assert store(bucket_bits=4).slot("S", "u", "2026-03-10").field == store(bucket_bits=16).slot("S", "u", "2026-03-10").field


def test_custom_prefix() -> None:
    slot = store(prefix="test:dd").slot("S", "u", "2026-03-10")
    assert re.fullmatch(rb"test:dd:2026-03-10:[0-9a-f]{4}", slot.key)


@pytest.mark.parametrize("bits", [0, 17, -1])
def test_bucket_bits_out_of_range(bits: int) -> None:
    with pytest.raises(ValueError, match="bucket_bits must be 1 to 16"):
        store(bucket_bits=bits)


def test_separator_in_ids_does_not_merge_two_students() -> None:
    s = store()
    assert s.slot("a\x1fb", "c", "2026-03-10") != s.slot("a", "b\x1fc", "2026-03-10")


# --- expire_at --------------------------------------------------------------------------------------


def epoch_s(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


def test_expire_at_is_local_day_end_plus_keep_days() -> None:
    assert store().expire_at("2026-03-10") == epoch_s("2026-03-10T18:30:00+00:00") + 8 * 86400
    assert store(keep_days=2).expire_at("2026-03-10") == epoch_s("2026-03-10T18:30:00+00:00") + 2 * 86400


def test_expire_at_in_utc() -> None:
    assert store(ZoneInfo("UTC")).expire_at("2026-03-10") == epoch_s("2026-03-11T00:00:00+00:00") + 8 * 86400


def test_expiry_outlives_the_latest_accepted_upload() -> None:
    """A tap from the last moment of the day may be uploaded MAX_TAP_AGE_DAYS later."""
    max_age_s = Settings().max_tap_age_days * 86400
    day_end = epoch_s("2026-03-10T18:30:00+00:00")
    assert store().expire_at("2026-03-10") > day_end + max_age_s
