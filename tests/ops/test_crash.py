"""The crash harness on the shared stack: SIGKILLs mid-stream, a join and a leave, zero differences."""

from __future__ import annotations

import asyncio
from zoneinfo import ZoneInfo

import pytest

from conftest import TEST_TZ, RunningStack
from ops.crash import Harness, Truth, apply_truth

pytestmark = pytest.mark.integration


def test_kills_joins_and_leaves_leave_every_counter_exact(stack: RunningStack) -> None:
    harness = Harness(stack.stack, schools=5, students=30, kills=3, seed=7, tz=ZoneInfo(TEST_TZ))
    report = asyncio.run(harness.run(settle_timeout_s=120))
    print(report.summary())
    stack.wait_for_sole_worker()
    assert report.kills == 3 and report.restarts == 3 and report.joins == 1 and report.leaves == 1
    assert report.taps > 1000, "the stream must still be flowing while workers die"
    assert report.counters_compared >= 5 * 7 and report.states_compared > 150
    assert report.differences == []
    assert sorted(n for n in stack.stack.running() if n.startswith("worker-")) == ["worker-1"]


def test_ground_truth_reads_the_rules_plainly() -> None:
    """The harness's own model, checked by hand, so a harness bug cannot hide a pipeline bug."""
    tz = ZoneInfo("UTC")
    truth = Truth()
    ts = 1_780_000_000_000
    for kind in ("checkout", "checkin", "checkin", "checkout", "checkout"):
        apply_truth(truth, "S", "u", kind, ts, 38.5, tz)
    key = ("S", "2026-05-28")
    assert truth.checkins[key] == 1 and truth.checkouts[key] == 1 and truth.fevers[key] == 1
    assert dict(truth.rejected[key]) == {
        "checkout_without_checkin": 1, "duplicate_checkin": 1, "duplicate_checkout": 1}
