"""The commit-position correction, on Faust's own consumer bookkeeping (no broker)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

from intervaltree import IntervalTree

from faust.types import TP
from pipeline import faust_fixes
from pipeline.settings import Settings

TAP = TP("attendance-taps", 0)


def bookkeeping(committed: int | None, acked: list[int]) -> SimpleNamespace:
    return SimpleNamespace(
        _acked=defaultdict(list, {TAP: list(acked)}),
        _acked_index=defaultdict(set, {TAP: set(acked)}),
        _gap=defaultdict(IntervalTree),
        _committed_offset=defaultdict(lambda: None, {TAP: committed}),
    )


def test_original_commits_past_an_unacknowledged_head_record() -> None:
    """The defect itself: record 100 was never acknowledged, yet the commit moves to 201."""
    state = bookkeeping(100, list(range(101, 201)))
    assert faust_fixes._original_new_offset(state, TAP) == 201


def test_fixed_waits_for_the_record_at_the_committed_position() -> None:
    state = bookkeeping(100, list(range(101, 201)))
    assert faust_fixes._new_offset(state, TAP) is None
    state._acked[TAP].insert(0, 100)
    state._acked_index[TAP].add(100)
    assert faust_fixes._new_offset(state, TAP) == 201


def test_fixed_treats_no_commit_as_offset_zero() -> None:
    assert faust_fixes._new_offset(bookkeeping(None, [1, 2, 3]), TAP) is None
    assert faust_fixes._new_offset(bookkeeping(None, [0, 1, 2]), TAP) == 3


def test_fixed_still_stops_at_a_gap_in_the_middle() -> None:
    assert faust_fixes._new_offset(bookkeeping(10, [10, 11, 12, 15, 16]), TAP) == 13


def test_apply_installs_it() -> None:
    from faust.transport.consumer import Consumer

    faust_fixes.apply(Settings())
    assert Consumer._new_offset is faust_fixes._new_offset


def test_the_worker_consumer_waits_at_most_the_configured_fetch_time() -> None:
    """Faust builds its consumer with fetch_max_wait_ms=1500; the fix replaces it before start()."""
    import faust

    async def build() -> int:
        app = faust.App("fetch-wait-test", broker="kafka://127.0.0.1:1", autodiscover=False)
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_max_wait_ms
        finally:
            await consumer._client.close()

    faust_fixes.apply(Settings(fetch_max_wait_ms=77))
    try:
        assert asyncio.run(build()) == 77
    finally:
        faust_fixes.apply(Settings())
