"""Taps through the real broker, worker and Redis: decisions and counts end to end."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import aiokafka
import orjson
import pytest
import redis

from conftest import TEST_TZ, RunningStack, new_school, new_student, now_ms, tap, wait_for
from pipeline.dead_letters import decode_dead_letter
from pipeline.schoolday import local_date

pytestmark = pytest.mark.integration
TZ = ZoneInfo(TEST_TZ)


def record(body: dict) -> tuple[bytes, bytes]:
    return body["schoolId"].encode(), orjson.dumps({**body, "id": uuid.uuid4().hex})


def test_http_in_exact_counts_out(stack: RunningStack) -> None:
    school, day = new_school(), local_date(now_ms(), TZ)
    students = [new_student() for _ in range(20)]
    for i, s in enumerate(students):
        assert stack.post_tap(tap("checkin", s, school, temperature=38.4 if i < 3 else 36.7)).status_code == 202
    for s in students[:5]:  # bounces
        assert stack.post_tap(tap("checkin", s, school)).status_code == 202
    for s in students[:12]:
        assert stack.post_tap(tap("checkout", s, school)).status_code == 202
    assert stack.post_tap(tap("checkout", students[0], school)).status_code == 202
    seen = wait_for(lambda: stack.school(school, day), lambda s: s["checkins"] + s["rejected"] >= 26)
    assert {k: seen[k] for k in ("checkins", "checkouts", "present", "fevers", "rejected")} == {
        "checkins": 20, "checkouts": 12, "present": 8, "fevers": 3, "rejected": 6}
    assert seen["rejectedByReason"] == {"duplicate_checkin": 5, "duplicate_checkout": 1}
    assert sum(h["checkins"] for h in seen["hours"]) == 20


def test_duplicates_inside_one_batch_count_once(stack: RunningStack) -> None:
    """Produced in one broker batch, so the agent decides them in one Redis round trip."""
    school, user, ts = new_school(), new_student(), now_ms()
    bodies = [tap("checkin", user, school, ts + i) for i in range(4)] + [
        tap("checkout", user, school, ts + 10), tap("checkout", user, school, ts + 11)]
    stack.produce_raw([record(b) for b in bodies])
    day = local_date(ts, TZ)
    seen = wait_for(lambda: stack.school(school, day), lambda s: s["checkins"] + s["rejected"] >= 6)
    assert (seen["checkins"], seen["checkouts"]) == (1, 1)
    assert seen["rejectedByReason"] == {"duplicate_checkin": 3, "duplicate_checkout": 1}


def test_checkout_before_any_checkin_is_rejected_and_later_checkin_counts(stack: RunningStack) -> None:
    school, user = new_school(), new_student()
    assert stack.post_tap(tap("checkout", user, school)).status_code == 202
    day = local_date(now_ms(), TZ)
    wait_for(lambda: stack.school(school, day), lambda s: s["rejected"] == 1)
    assert stack.post_tap(tap("checkin", user, school)).status_code == 202
    seen = wait_for(lambda: stack.school(school, day), lambda s: s["checkins"] == 1)
    assert (seen["checkins"], seen["checkouts"], seen["present"]) == (1, 0, 1)
    assert seen["rejectedByReason"] == {"checkout_without_checkin": 1}


def test_tap_near_midnight_lands_on_the_school_local_day(stack: RunningStack) -> None:
    """Kolkata is UTC+05:30: 18:29:59Z is the evening of one local day, 18:30:00Z the next day."""
    school, user = new_school(), new_student()
    today_utc = datetime.now(timezone.utc).date()
    midnight_local = int(datetime(today_utc.year, today_utc.month, today_utc.day, tzinfo=TZ).timestamp() * 1000)
    before, after = midnight_local - 1000, midnight_local
    if after > now_ms():  # keep both inside the accepted window
        before, after = before - 86_400_000, after - 86_400_000
    assert stack.post_tap(tap("checkin", user, school, ts=before)).status_code == 202
    assert stack.post_tap(tap("checkin", user, school, ts=after)).status_code == 202
    day_before, day_after = local_date(before, TZ), local_date(after, TZ)
    assert day_before != day_after
    first = wait_for(lambda: stack.school(school, day_before), lambda s: s["checkins"] == 1)
    second = wait_for(lambda: stack.school(school, day_after), lambda s: s["checkins"] == 1)
    assert first["checkins"] == 1 and first["rejected"] == 0
    assert second["checkins"] == 1 and second["rejected"] == 0
    assert first["hours"][0]["start"].startswith(f"{day_before}T23:00:00+05:30")
    assert second["hours"][0]["start"] == f"{day_after}T00:00:00+05:30"


def test_poison_records_go_to_the_dlq_and_never_block_the_partition(stack: RunningStack) -> None:
    school, ts = new_school(), now_ms()
    good = [tap("checkin", new_student(), school, ts) for _ in range(3)]
    poison = [
        (school.encode(), b"\x00\x01 not json"),
        (school.encode(), orjson.dumps({"type": "checkin", "schoolId": school})),
        (school.encode(), None),
        (school.encode(), orjson.dumps([1, 2, 3])),
    ]
    stack.produce_raw([record(good[0]), *poison[:2], record(good[1]), *poison[2:], record(good[2])])
    day = local_date(ts, TZ)
    seen = wait_for(lambda: stack.school(school, day), lambda s: s["checkins"] == 3)
    assert (seen["checkins"], seen["rejected"]) == (3, 0)
    letters = read_dead_letters(stack, key=school.encode(), expect=4)
    assert sorted(d.value or b"" for d in letters) == sorted(v or b"" for _, v in poison)
    assert {d.stage for d in letters} == {"dedup.decode"}
    assert all(d.error_type == "InvalidTap" and d.error_message for d in letters)


def read_dead_letters(stack: RunningStack, *, key: bytes, expect: int, timeout_s: float = 20.0) -> list:
    async def read() -> list:
        consumer = aiokafka.AIOKafkaConsumer(
            "attendance-dlq", bootstrap_servers=stack.kafka_bootstrap,
            auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
        await consumer.start()
        found = []
        try:
            deadline = asyncio.get_running_loop().time() + timeout_s
            while len(found) < expect and asyncio.get_running_loop().time() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    found += [decode_dead_letter(r.value) for r in records if r.key == key]
        finally:
            await consumer.stop()
        return found

    return asyncio.run(read())


def test_dedup_state_is_per_day_and_expires_by_itself(stack: RunningStack) -> None:
    school, user = new_school(), new_student()
    assert stack.post_tap(tap("checkin", user, school)).status_code == 202
    day = local_date(now_ms(), TZ)
    wait_for(lambda: stack.school(school, day), lambda s: s["checkins"] == 1)
    client = redis.Redis.from_url(stack.redis_url)
    keys = list(client.scan_iter(match=f"rc:dd:{day}:*"))
    assert keys, "state keys carry the school-local day"
    ttls = {client.ttl(k) for k in keys}
    assert all(8 * 86400 - 60 < t <= 9 * 86400 for t in ttls), ttls
    assert {client.object("encoding", k) for k in keys} == {b"intset"}
