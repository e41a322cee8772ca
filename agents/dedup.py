"""Dedup agent: taps in; each tap decided, counted, and published as an outcome.

Per batch: decode every record (what does not decode goes to the DLQ), decide
the whole batch against Redis in one atomic check-and-set, count the outcomes
into the school-day table (one write per school and day), publish them on
`attendance-events`, and only after the broker acknowledged them let the
batch's offsets be committed. Counting here rather than in a second agent
reading `attendance-events` halves Faust's per-record work, which is what
limits a worker. A crash anywhere replays the batch: Redis gives the same
decisions (agents.rules) and the table skips what it already applied
(tables.school_day), so nothing counts twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Sequence

from faust.types import EventT, StreamT
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agents.dead_lettering import dead_letter
from agents.dedup_store import RedisDedupStore
from pipeline.app import app, events_topic, settings, taps_topic
from pipeline.clients import redis_client
from pipeline.health import retrying
from pipeline.outcomes import Outcome, encode_outcome
from pipeline.schoolday import local_date
from pipeline.taps import InvalidTap, Tap, decode_tap
from tables.counts import count

log = logging.getLogger("rollcall.dedup")
redis = redis_client(settings)
store = RedisDedupStore(redis, settings.tz)
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


async def decide_taps(events: Sequence[EventT]) -> None:
    pending: list[Awaitable[object]] = []
    taps: list[tuple[EventT, Tap, str]] = []
    for event in events:
        try:
            tap = decode_tap(event.message.value)
        except InvalidTap as exc:
            pending.append(await dead_letter(event, stage="dedup.decode", error=exc))
            continue
        taps.append((event, tap, local_date(tap.timestamp, settings.tz)))
    batch = [
        (store.slot(tap.schoolId, tap.userId, day), tap.type, event.message.offset)
        for event, tap, day in taps
    ]
    reasons = await retrying("redis", lambda: store.decide(batch), retry_on=REDIS_DOWN)
    decided = [
        (event, Outcome(tap, day, reason, (event.message.partition, event.message.offset)))
        for (event, tap, day), reason in zip(taps, reasons)
    ]
    count(decided)
    topic = events_topic.get_topic_name()
    for event, outcome in decided:
        pending.append(
            await app.producer.send(
                topic, outcome.tap.schoolId.encode(), encode_outcome(outcome),
                event.message.partition, None, None,
            )
        )
    await asyncio.gather(*pending)


@app.agent(taps_topic)
async def dedup(stream: StreamT) -> None:
    async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
        await decide_taps(events)
