"""The Faust table of per-school-day counters, and how a batch writes to it.

Faust ties a table write to the stream event being processed (its changelog
partition and RocksDB partition come from that event). Batches from
`take_events` have no current event, so `in_partition_of` makes one of the
batch's own events current for the write: the value lands in the partition
its source records came from, exactly as a per-event write would.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import Iterator

from faust.streams import _current_event
from faust.types import EventT

from pipeline.app import app, settings

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
