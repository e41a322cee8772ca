"""One correction to faust-streaming 0.15.3, applied when the app is imported.

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
from faust.types import TP

_original_new_offset = Consumer._new_offset


def _new_offset(self: Any, tp: TP) -> Optional[int]:
    acked = self._acked[tp]
    if acked and not self._gap[tp]:
        start = self._committed_offset[tp] or 0
        if min(acked) > start:
            return None  # the record at `start` has not been acknowledged
    return _original_new_offset(self, tp)


def apply() -> None:
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
