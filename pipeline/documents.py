"""MongoDB document shapes, as pure functions: attendances and dead letters.

- `attendances`: one document per (student, school-local date); a re-delivered
  outcome sets the same fields to the same values, so writes are idempotent.
- `dead_letters`: `_id` is the failed record's topic:partition:offset, inserted
  only if absent, so a re-delivered DLQ record is stored once and a document
  that was already replayed keeps its status.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from bson import Binary
from pymongo import UpdateOne

from pipeline.dead_letters import DeadLetter
from pipeline.outcomes import Outcome
from pipeline.taps import CHECKIN

PENDING, REPLAYING, REPLAYED, FAILED = "pending", "replaying", "replayed", "failed"


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def attendance_id(school_id: str, user_id: str, day: str) -> str:
    return f"{school_id}|{user_id}|{day}"


def attendance_upsert(o: Outcome) -> UpdateOne:
    """Only accepted taps belong to the attendance record."""
    tap = o.tap
    side = "checkin" if tap.type == CHECKIN else "checkout"
    return UpdateOne(
        {"_id": attendance_id(tap.schoolId, tap.userId, o.date)},
        {
            "$setOnInsert": {"userId": tap.userId, "schoolId": tap.schoolId, "date": o.date},
            "$set": {
                side: {
                    "timestamp": utc(tap.timestamp),
                    "temperature": tap.temperature,
                    "image": tap.image,
                    "tapId": tap.id,
                }
            },
        },
        upsert=True,
    )


def _text(data: bytes | None) -> str | None:
    """Readable (and queryable) copy of bytes when they are UTF-8; the bytes stay authoritative."""
    try:
        return None if data is None else data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def dead_letter_doc(d: DeadLetter, *, max_attempts: int) -> dict[str, Any]:
    """`failed` once a record has failed `max_attempts` times: replay stops looping on it."""
    return {
        "_id": d.record_id,
        "topic": d.topic,
        "partition": d.partition,
        "offset": d.offset,
        "key": None if d.key is None else Binary(d.key),
        "value": None if d.value is None else Binary(d.value),
        "keyText": _text(d.key),
        "valueText": _text(d.value),
        "error": {"stage": d.stage, "type": d.error_type, "message": d.error_message},
        "attempts": d.attempts,
        "firstFailedAt": utc(d.first_failed_ms),
        "lastFailedAt": utc(d.last_failed_ms),
        "status": FAILED if d.attempts >= max_attempts else PENDING,
        "replayOf": d.replay_of,
        "replayedAt": None,
    }


def dead_letter_insert(doc: dict[str, Any]) -> UpdateOne:
    return UpdateOne({"_id": doc["_id"]}, {"$setOnInsert": doc}, upsert=True)
