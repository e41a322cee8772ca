"""Counting agent: outcomes in, per-school-day counters out (one write per school-day per batch)."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Awaitable, Sequence

from faust.types import EventT, StreamT

from agents.dead_lettering import dead_letter
from pipeline.app import app, events_topic, settings
from pipeline.outcomes import Outcome, decode_outcome
from tables.counts import in_partition_of, school_days
from tables.school_day import fold, table_key

log = logging.getLogger("rollcall.counting")


async def count_outcomes(events: Sequence[EventT]) -> None:
    pending: list[Awaitable[object]] = []
    groups: dict[tuple[int, str], list[tuple[EventT, Outcome]]] = defaultdict(list)
    for event in events:
        try:
            outcome = decode_outcome(event.message.value)
        except (ValueError, KeyError, TypeError) as exc:
            pending.append(await dead_letter(event, stage="counting.decode", error=exc))
            continue
        key = table_key(outcome.tap.schoolId, outcome.date)
        groups[(event.message.partition, key)].append((event, outcome))
    for (_, key), items in groups.items():
        with in_partition_of(items[-1][0]):
            school_days[key] = fold(
                school_days.get(key),
                (o for _, o in items),
                tz=settings.tz,
                fever_threshold=settings.fever_threshold,
            )
    if pending:
        await asyncio.gather(*pending)


@app.agent(events_topic)
async def count(stream: StreamT) -> None:
    async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
        await count_outcomes(events)
