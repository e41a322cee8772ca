"""Operator work on dead letters: list them, fix one, replay pending ones.

Replay streams through `dead_letters` in `_id` order, a bounded batch at a
time (never the whole queue in memory): it marks the batch `replaying`,
re-publishes the original key and bytes to `attendance-taps` with headers that
carry the attempt count, and marks the batch `replayed` once the broker
acknowledged. If it dies in between, the batch stays `replaying` (visible in
`dlq-list`, replayable with `--status replaying`): no record is replayed
behind the operator's back, and one replayed twice is still counted once
(dedup recognises the tap id). A replayed record that fails again comes back
as a new dead letter with `attempts` raised; at DLQ_MAX_ATTEMPTS it is stored
`failed` and replay leaves it alone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

from bson import Binary

from ops.progress import Progress
from pipeline.clients import kafka_producer, mongo_client
from pipeline.dead_letters import replay_headers, replay_key
from pipeline.documents import PENDING, REPLAYED, REPLAYING
from pipeline.settings import Settings
from pipeline.taps import InvalidTap, decode_tap


@dataclass(frozen=True)
class ReplayResult:
    replayed: int
    batches: int


def _ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(value.timestamp() * 1000)


def replay_query(settings: Settings, *, statuses: Sequence[str], error_type: str | None, ids: Sequence[str] | None) -> dict[str, Any]:
    """Only records that came from `attendance-taps` go back there."""
    query: dict[str, Any] = {"status": {"$in": list(statuses)}, "topic": settings.taps_topic}
    if error_type:
        query["error.type"] = error_type
    if ids:
        query["_id"] = {"$in": list(ids)}
    return query


# Replay in the order the records had on the topic: a student's check-in before their
# check-out. The _id ("attendance-taps:3:100") is text, which would put offset 100 before 99.
TOPIC_ORDER = [("partition", 1), ("offset", 1)]


def after(partition: int, offset: int) -> dict[str, Any]:
    """The records after (partition, offset) in TOPIC_ORDER: the next page, whatever was marked meanwhile."""
    return {"$or": [{"partition": {"$gt": partition}}, {"partition": partition, "offset": {"$gt": offset}}]}


async def replay(
    settings: Settings,
    *,
    limit: int | None = None,
    error_type: str | None = None,
    ids: Sequence[str] | None = None,
    statuses: Sequence[str] = (PENDING,),
    progress: bool = True,
) -> ReplayResult:
    if limit is not None and limit < 1:
        raise ValueError("--limit must be at least 1")
    mongo = mongo_client(settings)
    letters = mongo[settings.mongo_db].dead_letters
    producer = kafka_producer(settings)
    await producer.start()
    query = replay_query(settings, statuses=statuses, error_type=error_type, ids=ids)
    total = await letters.count_documents(query)
    total = min(total, limit) if limit is not None else total
    bar = Progress(total, "replaying dead letters") if progress else None
    done = batches = 0
    last: tuple[int, int] | None = None  # (partition, offset) of the last one replayed
    try:
        while done < total:
            page = dict(query)
            if last is not None:
                page["$and"] = [after(*last)]
            size = min(settings.replay_batch, total - done)
            docs = await letters.find(page).sort(TOPIC_ORDER).limit(size).to_list(None)
            if not docs:
                break
            batch_ids = [d["_id"] for d in docs]
            started = datetime.now(timezone.utc)
            await letters.update_many(
                {"_id": {"$in": batch_ids}}, {"$set": {"status": REPLAYING, "replayStartedAt": started}}
            )
            futures = [
                await producer.send(
                    settings.taps_topic,
                    key=replay_key(_bytes(d.get("key")), _bytes(d.get("value"))),
                    value=_bytes(d.get("value")),
                    headers=replay_headers(
                        attempts=int(d["attempts"]), first_failed_ms=_ms(d["firstFailedAt"]), record_id=d["_id"]
                    ),
                )
                for d in docs
            ]
            await asyncio.gather(*futures)
            await letters.update_many(
                {"_id": {"$in": batch_ids}},
                {"$set": {"status": REPLAYED, "replayedAt": datetime.now(timezone.utc)}},
            )
            done += len(docs)
            batches += 1
            last = (int(docs[-1]["partition"]), int(docs[-1]["offset"]))
            if bar:
                bar.advance(len(docs))
    finally:
        if bar:
            bar.close()
        await producer.stop()
        await mongo.close()
    return ReplayResult(done, batches)


def _bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    return bytes(value) if isinstance(value, (bytes, Binary)) else str(value).encode()


async def fix(settings: Settings, record_id: str, value: str) -> None:
    """Replace a dead letter's bytes with a corrected tap and make it pending again.

    The value is judged as the dedup agent will judge it (a tap record with its
    id), so a fix that would only fail again is refused here, with the reasons.
    """
    try:
        decode_tap(value.encode())
    except InvalidTap as exc:
        raise ValueError(f"--value is not a valid tap record ({exc})") from None
    mongo = mongo_client(settings)
    try:
        result = await mongo[settings.mongo_db].dead_letters.update_one(
            {"_id": record_id},
            {"$set": {"value": Binary(value.encode()), "valueText": value, "status": PENDING,
                      "fixedAt": datetime.now(timezone.utc)}},
        )
    finally:
        await mongo.close()
    if result.matched_count == 0:
        raise ValueError(f"no dead letter with _id {record_id!r}")


async def listing(settings: Settings, *, status: str | None, limit: int) -> list[dict[str, Any]]:
    mongo = mongo_client(settings)
    try:
        query = {"status": status} if status else {}
        cursor = mongo[settings.mongo_db].dead_letters.find(query, {"value": 0, "key": 0})
        return await cursor.sort([("topic", 1), *TOPIC_ORDER]).limit(limit).to_list(None)
    finally:
        await mongo.close()
