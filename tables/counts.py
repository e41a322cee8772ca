"""The Faust table of per-school-day counters, and how a decided batch is counted into it.

Faust ties a table write to the stream event being processed (its changelog
partition and RocksDB partition come from that event). Batches from
`take_events` have no current event, so `in_partition_of` makes one of the
batch's own events current for the write: the value lands in the partition its
source taps came from, exactly as a per-event write would. The table is
co-partitioned with `attendance-taps` (both keyed by school).
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterable, Iterator

from faust.streams import _current_event
from faust.types import EventT

from pipeline.app import app, settings
from pipeline.outcomes import Outcome
from tables.school_day import fold, table_key

school_days = app.Table(
    "school-days",
    default=None,
    partitions=settings.topic_partitions,
    help="Counters per (local day, school), with hourly buckets.",
)


@contextmanager
def in_partition_of(event: EventT) -> Iterator[None]:
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def count(decided: Iterable[tuple[EventT, Outcome]]) -> None:
    """One table write per (partition, school, day) for the whole batch."""
    groups: dict[tuple[int, str], list[tuple[EventT, Outcome]]] = defaultdict(list)
    for event, outcome in decided:
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
