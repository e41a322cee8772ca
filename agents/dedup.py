"""Dedup agent: taps in, one decided outcome per tap out.

Per batch: decode every record (what does not decode goes to the DLQ), decide
the whole batch against Redis in one atomic check-and-set, send the outcomes,
and only then let the batch's offsets be committed. Outcomes go to the same
partition number as their tap, so the counting agent and its table share the
partition with the dedup state of the same school.
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
    for (event, tap, day), reason in zip(taps, reasons):
        msg = event.message
        outcome = Outcome(tap, day, reason, (msg.partition, msg.offset))
        pending.append(
            await events_topic.send(
                key=tap.schoolId.encode(),
                value=encode_outcome(outcome),
                partition=msg.partition,
                force=True,
            )
        )
    await asyncio.gather(*pending)


@app.agent(taps_topic)
async def dedup(stream: StreamT) -> None:
    async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
        await decide_taps(events)
