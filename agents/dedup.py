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

from faust.types import TP, EventT, StreamT
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agents.dead_lettering import dead_letter
from agents.dedup_store import RedisDedupStore, TapAt
from agents.rules import in_partition_order
from pipeline.app import app, events_topic, settings, taps_topic
from pipeline.clients import redis_client
from pipeline.health import retrying
from pipeline.dead_letters import headers_dict, replay_history
from pipeline.outcomes import Outcome, encode_outcome
from pipeline.partitioning import MisroutedTap, check_routing
from pipeline.schoolday import local_date
from pipeline.taps import InvalidTap, Tap, decode_tap
from tables.counts import count

log = logging.getLogger("rollcall.dedup")
redis = redis_client(settings)
store = RedisDedupStore.for_settings(redis, settings)
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


async def drop_replayed_copies(taps: list[tuple[EventT, Tap, str]]) -> list[tuple[EventT, Tap, str]]:
    """A dead letter replayed twice arrives twice under one tap id: keep the first."""
    replayed = [i for i, (event, _, _) in enumerate(taps) if is_replay(event)]
    if not replayed:
        return taps
    entries = [(taps[i][1].id, taps[i][0].message.partition, taps[i][0].message.offset) for i in replayed]
    first = await retrying("redis", lambda: store.first_deliveries(entries), retry_on=REDIS_DOWN)
    copies = {i for i, ok in zip(replayed, first) if not ok}
    for i in copies:
        log.info("tap %s was replayed before; this copy is not counted", taps[i][1].id)
    return [t for i, t in enumerate(taps) if i not in copies]


def is_replay(event: EventT) -> bool:
    return replay_history(headers_dict(event.message.headers)).replay_of is not None


async def in_order(events: Sequence[EventT]) -> list[EventT]:
    """The events that may be decided now; ask the consumer to read the gaps again."""
    topic = settings.taps_topic
    partitions = sorted({e.message.partition for e in events})
    stored = await retrying("redis", lambda: store.next_offsets(topic, partitions), retry_on=REDIS_DOWN)
    keep, gaps = in_partition_order(((e.message.partition, e.message.offset) for e in events), stored)
    for partition, offset in gaps.items():
        log.warning("partition %d: records from offset %d were not delivered; reading them again",
                    partition, offset)
        try:
            await app.consumer.seek(TP(topic, partition), offset)
        except Exception as exc:  # no longer ours (rebalanced): its new owner reads from the commit
            log.warning("partition %d: cannot seek (%s); leaving it to its owner", partition, exc)
    return [e for e, k in zip(events, keep) if k]


async def decide_taps(events: Sequence[EventT]) -> None:
    events = await in_order(events)
    pending: list[Awaitable[object]] = []
    taps: list[tuple[EventT, Tap, str]] = []
    for event in events:
        try:
            tap = decode_tap(event.message.value)
            day = local_date(tap.timestamp, settings.tz)
        except (InvalidTap, ValueError, OverflowError) as exc:
            pending.append(await dead_letter(event, stage="dedup.decode", error=exc))
            continue
        try:
            check_routing(event.message.key, event.message.partition, tap.schoolId, settings.topic_partitions)
        except MisroutedTap as exc:
            pending.append(await dead_letter(event, stage="dedup.route", error=exc))
            continue
        taps.append((event, tap, day))
    taps = await drop_replayed_copies(taps)
    batch = [
        TapAt(store.slot(tap.schoolId, tap.userId, day), tap.type, event.message.partition, event.message.offset)
        for event, tap, day in taps
    ]
    through = {}
    for event in events:
        through[event.message.partition] = max(through.get(event.message.partition, 0), event.message.offset + 1)
    reasons = await retrying(
        "redis", lambda: store.decide(batch, topic=settings.taps_topic, through=through), retry_on=REDIS_DOWN
    )
    decided = [
        (event, Outcome(tap, day, reason, (event.message.partition, event.message.offset)))
        for (event, tap, day), reason in zip(taps, reasons)
    ]
    # Outcomes go out while the table is written: one broker round trip less per batch.
    # Nothing is committed before all of it was acknowledged (the gather below).
    topic = events_topic.get_topic_name()
    for _, outcome in decided:
        pending.append(
            await app.producer.send(
                topic, outcome.tap.schoolId.encode(), encode_outcome(outcome), None, None, None
            )
        )
    await count(decided)
    await asyncio.gather(*pending)


async def decide_safely(events: Sequence[EventT]) -> None:
    try:
        await decide_taps(events)
        return
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("batch of %d failed; retrying record by record", len(events))
    for event in events:
        try:
            await decide_taps([event])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("record %s:%s failed", event.message.partition, event.message.offset)
            await (await dead_letter(event, stage="dedup.unexpected", error=exc))


@app.agent(taps_topic)
async def dedup(stream: StreamT) -> None:
    problem = await store.intset_limit_problem()
    if problem:
        log.warning(problem)
    async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
        await decide_safely(events)
