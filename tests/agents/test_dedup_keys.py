"""Unit tests for the pure parts of the Redis dedup store: members, key scheme, expiry."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis

from agents.dedup_store import BUCKET_BITS, FINGERPRINT_BITS, RedisDedupStore, StudentSlot
from agents.rules import Presence
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


# --- members ----------------------------------------------------------------------------


def test_members_are_positive_64_bit_integers_so_buckets_stay_integer_sets() -> None:
    s = store()
    for i in range(2000):
        slot = s.slot(f"SCH-{i % 13}", f"{i:024x}", "2026-03-10")
        assert 0 <= slot.fingerprint < 2**FINGERPRINT_BITS
        for presence in (Presence.CHECKED_IN, Presence.CHECKED_OUT):
            member = int(slot.member(presence))
            assert 0 < member < 2**63
            assert slot.member(presence) == str(member).encode()  # canonical: Redis keeps it as an integer
            assert divmod(member, 4) == (slot.fingerprint, int(presence))


def test_a_students_two_presences_are_two_members() -> None:
    slot = store().slot("SCH-001", "u1", "2026-03-10")
    assert slot.member(Presence.CHECKED_IN) != slot.member(Presence.CHECKED_OUT)


def test_fingerprint_uses_its_full_width() -> None:
    s = store()
    prints = [s.slot("SCH-001", f"{i:024x}", "2026-03-10").fingerprint for i in range(4000)]
    assert max(prints) >= 2 ** (FINGERPRINT_BITS - 1)  # the top bit is used
    assert any(p % 2 for p in prints)  # and the bottom one


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
    assert 0 <= slot.fingerprint < 2**61


def test_other_day_other_key_same_bucket_and_fingerprint() -> None:
    s = store()
    a = s.slot("SCH-001", "u1", "2026-03-10")
    b = s.slot("SCH-001", "u1", "2026-03-11")
    assert a.key != b.key
    assert a.key.replace(b"2026-03-10", b"2026-03-11") == b.key
    assert a.fingerprint == b.fingerprint
    assert bucket_of(a) == bucket_of(b)


def test_same_student_in_another_school_is_another_slot() -> None:
    s = store()
    assert s.slot("SCH-001", "u1", "2026-03-10") != s.slot("SCH-002", "u1", "2026-03-10")


def test_students_get_distinct_slots() -> None:
    s = store()
    slots = {(sl.key, sl.fingerprint) for sl in (s.slot("SCH-001", f"{i:024x}", "2026-03-10") for i in range(5000))}
    assert len(slots) == 5000


@pytest.mark.parametrize("bits", [1, 4, 8, 14, 16])
def test_buckets_stay_within_bucket_bits(bits: int) -> None:
    s = store(bucket_bits=bits)
    buckets = {bucket_of(s.slot(f"SCH-{i % 7}", f"{i:024x}", "2026-03-10")) for i in range(3000)}
    assert max(buckets) < 2**bits
    assert min(buckets) >= 0
    if bits <= 8:
        assert buckets == set(range(2**bits))  # 3000 students spread over every bucket


def test_default_bucket_bits_is_12() -> None:
    s = store()
    buckets = {bucket_of(s.slot("SCH-001", f"{i:024x}", "2026-03-10")) for i in range(20000)}
    assert BUCKET_BITS == 12
    assert max(buckets) < 2**12
    assert max(buckets) >= 2**11  # the mask is not narrower than 12 bits


def test_bucket_bits_does_not_change_the_fingerprint() -> None:
    a, b = store(bucket_bits=4).slot("S", "u", "2026-03-10"), store(bucket_bits=16).slot("S", "u", "2026-03-10")
    assert a.fingerprint == b.fingerprint


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


def test_state_written_for_an_old_day_is_kept_from_the_write_on() -> None:
    """A tap of a day long past (a replay, another producer) must not write state that is gone at once."""
    now = epoch_s("2026-12-04T09:00:00+00:00")
    assert store().expire_at("2026-03-10", now) == now + 8 * 86400
    assert store().expire_at("1970-01-01", now) == now + 8 * 86400
    assert store().expire_at("2026-12-04", now) == epoch_s("2026-12-04T18:30:00+00:00") + 8 * 86400


@pytest.mark.parametrize("max_age_days", [1, 7, 30])
def test_the_agents_store_keeps_state_as_long_as_taps_are_accepted(max_age_days: int) -> None:
    """MAX_TAP_AGE_DAYS=30 must not leave a 9-day-old check-in to find its day forgotten."""
    settings = Settings(school_tz="Asia/Kolkata", max_tap_age_days=max_age_days)
    s = RedisDedupStore.for_settings(aioredis.Redis(), settings)  # type: ignore[arg-type]
    day_end = epoch_s("2026-03-10T18:30:00+00:00")
    assert s.expire_at("2026-03-10") == day_end + (max_age_days + 1) * 86400
