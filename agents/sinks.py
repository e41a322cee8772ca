"""The two MongoDB sinks: outcomes into `attendances`, dead letters into `dead_letters`.

Both run in every worker as consumer-group members (see agents.batch_sink) and
retry on their own while MongoDB is unreachable: nothing is skipped, nothing is
committed before MongoDB acknowledged the bulk write.
"""

from __future__ import annotations

import logging
from typing import Sequence

from aiokafka import ConsumerRecord
from pymongo.errors import BulkWriteError, PyMongoError

from agents.batch_sink import TopicSink
from pipeline.app import app, settings
from pipeline.clients import mongo_client
from pipeline.dead_letters import DeadLetter, dead_letter_for, decode_dead_letter
from pipeline.documents import attendance_upsert, dead_letter_doc, dead_letter_insert
from pipeline.health import retrying
from pipeline.outcomes import decode_outcome

log = logging.getLogger("rollcall.sinks")
mongo = mongo_client(settings)
db = mongo[settings.mongo_db]


async def bulk_write(collection: str, ops: list) -> None:
    """Write until acknowledged; a duplicate-key race between upserts is not an error."""
    if not ops:
        return

    async def write() -> None:
        try:
            await db[collection].bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
            if others:
                raise

    await retrying("mongo", write, retry_on=(PyMongoError,), max_delay_s=5.0)


async def archive(records: Sequence[ConsumerRecord]) -> None:
    ops = []
    for r in records:
        try:
            outcome = decode_outcome(r.value)
        except (ValueError, KeyError, TypeError) as exc:  # not ours: keep going, say so
            log.error("undecodable outcome at %s:%s:%s: %s", r.topic, r.partition, r.offset, exc)
            continue
        if outcome.accepted:
            ops.append(attendance_upsert(outcome))
    await bulk_write("attendances", ops)


def _letter(r: ConsumerRecord) -> DeadLetter:
    try:
        return decode_dead_letter(r.value)
    except (ValueError, KeyError, TypeError) as exc:  # a DLQ record that is itself broken
        return dead_letter_for(
            topic=r.topic, partition=r.partition, offset=r.offset, key=r.key, value=r.value,
            stage="dlq.decode", error=exc,
        )


async def store_dead_letters(records: Sequence[ConsumerRecord]) -> None:
    ops = [
        dead_letter_insert(dead_letter_doc(_letter(r), max_attempts=settings.dlq_max_attempts))
        for r in records
    ]
    await bulk_write("dead_letters", ops)


@app.service
class ArchiveSink(TopicSink):
    def __init__(self, **_: object) -> None:
        super().__init__(settings, topic=settings.events_topic, group_id="rollcall-archive", handle=archive)


@app.service
class DeadLetterSink(TopicSink):
    def __init__(self, **_: object) -> None:
        super().__init__(settings, topic=settings.dlq_topic, group_id="rollcall-dead-letters", handle=store_dead_letters)
