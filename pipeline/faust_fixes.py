"""Two corrections to faust-streaming 0.15.3, applied when the app is imported.

1. The worker's consumer waits at most FETCH_MAX_WAIT_MS for a fetch.
Faust hard-codes `fetch_max_wait_ms=1500`. A Kafka broker answers a fetch as
soon as data arrives, but the development broker holds it for the wait:
measured with a plain aiokafka consumer at 10 records/s, 1,500 ms gave a
p50 of 360 ms from produce to consume, 100 ms gave 26 ms and 20 ms gave 9 ms.
Every tap crosses that hop before it is counted.

2. Commits never skip an unacknowledged record.

The consumer commits "the first run of consecutive acknowledged offsets".
Before it does, it checks that the run starts where the last commit left off,
but off by one, and not at all when nothing was committed yet (offset 0 reads
as "nothing"):

    if committed_offset:
        if min(acked) - committed_offset > 1:   # lets min(acked) == committed + 1 through
            return None

A Kafka commit names the *next* offset to read, so a run starting at
committed + 1 skips the record at `committed`. That record exists: after a
restart or rebalance Faust drops ("skips") records fetched under the previous
group generation without acknowledging them, and the next acknowledged records
then carried the commit past it. The crash harness saw exactly that: one tap
per SIGKILL missing from the counts, its student's state absent from Redis.

The fix commits a run only if it starts exactly at the committed position
(0 when there is none yet). A record that was skipped is then read again from
the committed position after the next rebalance or restart; everything after
it that was already processed is decided again, which the rules and the table
make harmless (agents.rules, tables.school_day).
"""

from __future__ import annotations

from typing import Any, Optional

from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

from pipeline.settings import Settings

_original_new_offset = Consumer._new_offset
_original_create_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer


def _new_offset(self: Any, tp: TP) -> Optional[int]:
    acked = self._acked[tp]
    if acked and not self._gap[tp]:
        start = self._committed_offset[tp] or 0
        if min(acked) > start:
            return None  # the record at `start` has not been acknowledged
    return _original_new_offset(self, tp)


def apply(settings: Settings) -> None:
    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = _original_create_worker_consumer(self, transport)
        # aiokafka hands this to its fetcher in start(), which has not run yet.
        consumer._fetch_max_wait_ms = settings.fetch_max_wait_ms
        return consumer

    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
