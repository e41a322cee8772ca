"""Nothing is lost when things fail: dead letters, replay, and dependency outages.

Each test injects one failure into the shared embedded stack and puts it back
before it ends, so the other tests see a healthy stack.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from pymongo import MongoClient

from conftest import TEST_TZ, RunningStack, new_school, new_student, now_ms, tap, wait_for
from ops import dlq
from pipeline.documents import FAILED, PENDING, REPLAYED
from pipeline.schoolday import local_date
from pipeline.settings import Settings

pytestmark = pytest.mark.integration
TZ = ZoneInfo(TEST_TZ)
MONGO_DB = "rollcall"  # the worker's default database


def settings_for(stack: RunningStack) -> Settings:
    return Settings(kafka_broker=f"kafka://{stack.kafka_bootstrap}", mongo_url=stack.mongo_url,
                    mongo_db=MONGO_DB, school_tz=TEST_TZ, dlq_replay_cron="")


def mongo(stack: RunningStack) -> Any:
    return MongoClient(stack.mongo_url, serverSelectionTimeoutMS=3000)[MONGO_DB]


def letters_for(stack: RunningStack, key: bytes) -> list[dict]:
    """In topic order (the _id is text: "...:3:100" sorts before "...:3:99")."""
    return list(mongo(stack).dead_letters.find({"keyText": key.decode()}).sort([("partition", 1), ("offset", 1)]))


def record(body: dict, tap_id: str | None = None) -> tuple[bytes, bytes]:
    return body["schoolId"].encode(), orjson.dumps({**body, "id": tap_id or uuid.uuid4().hex})


def totals(stack: RunningStack, school: str, day: str) -> tuple[int, int, int]:
    s = stack.school(school, day)
    return s["checkins"], s["checkouts"], s["rejected"]


def test_garbage_lands_in_dead_letters_with_its_cause_while_valid_taps_count(stack: RunningStack) -> None:
    school, ts = new_school(), now_ms()
    stack.produce_raw([
        record(tap("checkin", new_student(), school, ts)),
        (school.encode(), b"\xde\xad\xbe\xef"),
        record({**tap("checkin", new_student(), school, ts), "temperature": 80}),
        record(tap("checkin", new_student(), school, ts)),
    ])
    day = local_date(ts, TZ)
    assert wait_for(lambda: totals(stack, school, day), lambda t: t[0] == 2) == (2, 0, 0)
    docs = wait_for(lambda: letters_for(stack, school.encode()), lambda d: len(d) == 2)
    assert [d["status"] for d in docs] == [PENDING, PENDING]
    assert docs[0]["value"] == b"\xde\xad\xbe\xef" and docs[0]["valueText"] is None
    assert "not JSON" in docs[0]["error"]["message"]
    assert "temperature" in docs[1]["error"]["message"]
    assert all(d["_id"] == f"attendance-taps:{d['partition']}:{d['offset']}" for d in docs)
    assert all(d["error"]["stage"] == "dedup.decode" and d["attempts"] == 1 for d in docs)


def test_fixed_dead_letter_is_counted_once_and_replaying_again_changes_nothing(stack: RunningStack) -> None:
    school, user, ts = new_school(), new_student(), now_ms()
    broken = {**tap("checkin", user, school, ts, temperature=38.5), "temperature": "38.5"}
    stack.produce_raw([record(broken, tap_id="fix-" + uuid.uuid4().hex)])
    [doc] = wait_for(lambda: letters_for(stack, school.encode()), lambda d: len(d) == 1)
    fixed = orjson.loads(doc["value"])
    fixed["temperature"] = 38.5
    settings = settings_for(stack)
    asyncio.run(dlq.fix(settings, doc["_id"], orjson.dumps(fixed).decode()))
    assert asyncio.run(dlq.replay(settings, ids=[doc["_id"]], progress=False)).replayed == 1
    day = local_date(ts, TZ)
    assert wait_for(lambda: totals(stack, school, day), lambda t: t[0] == 1) == (1, 0, 0)
    assert stack.school(school, day)["fevers"] == 1
    # Replay it again (forced) and once more as if an interrupted run were retried.
    assert asyncio.run(dlq.replay(settings, ids=[doc["_id"]], statuses=[REPLAYED], progress=False)).replayed == 1
    assert asyncio.run(dlq.replay(settings, ids=[doc["_id"]], statuses=[REPLAYED], progress=False)).replayed == 1
    marker = tap("checkin", new_student(), school, ts)
    assert stack.post_tap(marker).status_code == 202  # after the replays in the partition
    after = wait_for(lambda: totals(stack, school, day), lambda t: t[0] == 2)
    assert after == (2, 0, 0), "the replayed tap counted once; its copies neither counted nor were rejected"
    assert mongo(stack).dead_letters.find_one({"_id": doc["_id"]})["status"] == REPLAYED
    archived = mongo(stack).attendances.find_one({"_id": f"{school}|{user}|{day}"})
    assert archived["checkin"]["temperature"] == 38.5


def test_poison_that_stays_poison_ends_failed_after_the_configured_attempts(stack: RunningStack) -> None:
    school = new_school()
    stack.produce_raw([(school.encode(), b"never a tap")])
    settings = settings_for(stack)
    seen: list[dict] = []
    for attempt in range(1, settings.dlq_max_attempts + 1):
        seen = wait_for(lambda: letters_for(stack, school.encode()), lambda d: len(d) == attempt)
        assert len(seen) == attempt
        newest = max(seen, key=lambda d: d["attempts"])
        assert newest["attempts"] == attempt
        if newest["status"] == PENDING:
            asyncio.run(dlq.replay(settings, ids=[newest["_id"]], progress=False))
    statuses = sorted((d["attempts"], d["status"]) for d in seen)
    assert statuses == [(1, REPLAYED), (2, REPLAYED), (3, FAILED)]
    assert seen[-1]["replayOf"] in {d["_id"] for d in seen}
    assert asyncio.run(dlq.replay(settings, ids=[d["_id"] for d in seen], progress=False)).replayed == 0


def test_redis_outage_gives_exact_counts_and_no_dead_letters(stack: RunningStack) -> None:
    school, day = new_school(), local_date(now_ms(), TZ)
    before = [new_student() for _ in range(10)]
    during = [new_student() for _ in range(10)]
    for s in before:
        assert stack.post_tap(tap("checkin", s, school)).status_code == 202
    wait_for(lambda: totals(stack, school, day), lambda t: t[0] == 10)
    stack.stack.stop("redis")
    try:
        for s in during + before[:4]:  # new students, and four duplicates of counted ones
            assert stack.post_tap(tap("checkin", s, school)).status_code == 202
        for s in before[:6]:
            assert stack.post_tap(tap("checkout", s, school)).status_code == 202
        health = wait_for(lambda: stack.http.get(f"{stack.web_url}/health/").json(),
                          lambda h: "redis" in h["degraded"], timeout_s=15)
        assert health["status"] == "degraded" and "redis" in health["degraded"]
        time.sleep(2)
        assert totals(stack, school, day)[0] == 10, "nothing is decided while Redis is away"
    finally:
        stack.stack.start(stack.stack.service("redis"))
    assert wait_for(lambda: totals(stack, school, day), lambda t: sum(t) == 30, timeout_s=60) == (20, 6, 4)
    assert wait_for(lambda: stack.http.get(f"{stack.web_url}/health/").json(),
                    lambda h: h["status"] == "ok")["status"] == "ok"
    assert letters_for(stack, school.encode()) == []


def test_mongo_outage_loses_no_archive_record_and_no_dead_letter(stack: RunningStack) -> None:
    school, day = new_school(), local_date(now_ms(), TZ)
    students = [new_student() for _ in range(15)]
    stack.stack.stop("mongo")
    try:
        for s in students:
            assert stack.post_tap(tap("checkin", s, school)).status_code == 202
        stack.produce_raw([(school.encode(), b"poison during the outage")])
        # Counting does not need MongoDB: it goes on.
        assert wait_for(lambda: totals(stack, school, day), lambda t: t[0] == 15)[0] == 15
        health = wait_for(lambda: stack.http.get(f"{stack.web_url}/health/").json(),
                          lambda h: "mongo" in h["degraded"], timeout_s=20)
        assert "mongo" in health["degraded"]
    finally:
        stack.stack.start(stack.stack.service("mongo"))
    db = mongo(stack)
    ids = {f"{school}|{s}|{day}" for s in students}
    archived = wait_for(lambda: db.attendances.count_documents({"schoolId": school}), lambda n: n == 15, timeout_s=60)
    assert archived == 15
    assert {d["_id"] for d in db.attendances.find({"schoolId": school})} == ids
    assert len(wait_for(lambda: letters_for(stack, school.encode()), lambda d: len(d) == 1)) == 1


def test_poison_at_the_end_of_a_batch_moves_its_partition_on(stack: RunningStack) -> None:
    """The agent's decided-up-to mark passes a dead-lettered record, so the next tap is no 'gap'."""
    import redis

    school, ts = new_school(), now_ms()
    stack.produce_raw([record(tap("checkin", new_student(), school, ts)), (school.encode(), b"not a tap")])
    [doc] = wait_for(lambda: letters_for(stack, school.encode()), lambda d: len(d) == 1)
    client = redis.Redis.from_url(stack.redis_url)
    mark = wait_for(lambda: int(client.get(f"rc:dd:next:attendance-taps:{doc['partition']}") or -1),
                    lambda m: m > doc["offset"])
    assert mark > doc["offset"]  # not left waiting at the poison record
    stack.produce_raw([record(tap("checkin", new_student(), school, ts))])
    day = local_date(ts, TZ)
    assert wait_for(lambda: totals(stack, school, day), lambda t: t[0] == 2) == (2, 0, 0)
    assert len(letters_for(stack, school.encode())) == 1


def test_a_tap_under_the_wrong_key_is_dead_lettered_and_replay_counts_it_in_its_school(stack: RunningStack) -> None:
    """kcat without a key (or another partitioner) must not split a school across partitions."""
    school, other, ts = new_school(), new_school(), now_ms()
    wrong = {**tap("checkin", new_student(), school, ts), "id": uuid.uuid4().hex}
    stack.produce_raw([(other.encode(), orjson.dumps(wrong)), (None, orjson.dumps({**wrong, "id": uuid.uuid4().hex}))])
    docs = wait_for(lambda: list(mongo(stack).dead_letters.find({"valueText": {"$regex": school}})),
                    lambda d: len(d) == 2)
    assert len(docs) == 2
    assert {d["error"]["stage"] for d in docs} == {"dedup.route"}
    assert {d["error"]["type"] for d in docs} == {"MisroutedTap"}
    assert all("is not the tap's schoolId" in d["error"]["message"] for d in docs)
    day = local_date(ts, TZ)
    assert totals(stack, school, day) == (0, 0, 0)
    replayed = asyncio.run(dlq.replay(settings_for(stack), ids=[d["_id"] for d in docs], progress=False))
    assert replayed.replayed == 2
    # Same student twice: one check-in counts, the other is a duplicate; nothing lands in `other`.
    assert wait_for(lambda: totals(stack, school, day), lambda t: sum(t) == 2) == (1, 0, 1)
    assert totals(stack, other, day) == (0, 0, 0)
