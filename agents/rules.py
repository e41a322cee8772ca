"""Which taps count: the dedup rules as pure functions.

A student's state for one school day is where they are: absent, checked in, or
checked in and out. That alone decides a new tap. It does not decide a tap read
again after a crash (its own check-in would look like a duplicate of itself),
so every partition also keeps how far it has been decided and, per record, the
outcome it got (a 2-bit code). A record below the decided mark is answered from
that log, never decided twice; only records at or beyond it touch the state.
All of one student's taps share a partition (taps are keyed by school), so a
partition decided strictly in offset order sees each student's taps in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Hashable, Iterable, Mapping

from pipeline.taps import CHECKIN

DUPLICATE_CHECKIN = "duplicate_checkin"
CHECKOUT_WITHOUT_CHECKIN = "checkout_without_checkin"
DUPLICATE_CHECKOUT = "duplicate_checkout"
REJECTION_REASONS = (DUPLICATE_CHECKIN, CHECKOUT_WITHOUT_CHECKIN, DUPLICATE_CHECKOUT)


class Presence(IntEnum):
    """A student's state for one school day."""

    ABSENT = 0
    CHECKED_IN = 1
    CHECKED_OUT = 2  # checked in, then out


class Logged(IntEnum):
    """A decided record's outcome as the per-partition log keeps it (2 bits; 0 = not logged)."""

    UNKNOWN = 0
    COUNTED = 1
    DUPLICATE = 2  # of a check-in or a check-out: the tap's own type says which
    NO_CHECKIN = 3


def decide(state: Presence, tap_type: str) -> tuple[str | None, Presence]:
    """The rejection reason (None when the tap counts) and the state after it."""
    if tap_type == CHECKIN:
        if state == Presence.ABSENT:
            return None, Presence.CHECKED_IN
        return DUPLICATE_CHECKIN, state
    if state == Presence.ABSENT:
        return CHECKOUT_WITHOUT_CHECKIN, state
    if state == Presence.CHECKED_IN:
        return None, Presence.CHECKED_OUT
    return DUPLICATE_CHECKOUT, state


def log_code(reason: str | None) -> Logged:
    if reason is None:
        return Logged.COUNTED
    if reason == CHECKOUT_WITHOUT_CHECKIN:
        return Logged.NO_CHECKIN
    return Logged.DUPLICATE


def reason_from_log(code: Logged, tap_type: str) -> str | None:
    if code == Logged.COUNTED:
        return None
    if code == Logged.NO_CHECKIN:
        return CHECKOUT_WITHOUT_CHECKIN
    if code == Logged.DUPLICATE:
        return DUPLICATE_CHECKIN if tap_type == CHECKIN else DUPLICATE_CHECKOUT
    raise ValueError("no outcome logged")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One tap to decide: whose day it is, what it is, and where it sits in the topic."""

    student: Hashable
    tap_type: str
    partition: int
    offset: int


@dataclass
class BatchDecision:
    """What a batch decided and what the store must write, all or nothing."""

    reasons: list[str | None] = field(default_factory=list)
    changed: dict[Hashable, Presence] = field(default_factory=dict)  # final state per student
    logged: dict[tuple[int, int], Logged] = field(default_factory=dict)  # (partition, offset) -> outcome
    nexts: dict[int, int] = field(default_factory=dict)  # partition -> offset after its last decided
    unlogged: list[Candidate] = field(default_factory=list)  # re-read records whose log had expired


def decide_batch(
    candidates: Iterable[Candidate],
    known: Mapping[Hashable, Presence],
    decided_to: Mapping[int, int | None],
    log: Mapping[tuple[int, int], Logged],
) -> BatchDecision:
    """Decide taps in order; a student's later taps see the earlier ones of the batch.

    `known` is each student's stored state, `decided_to` each partition's
    offset after its last decided record (None: none yet) and `log` the
    stored outcomes of the batch's records. A record below its partition's
    mark gets its logged outcome and changes nothing. One whose outcome is
    not logged any more (the log outlives any uncommitted offset by days) is
    judged against the current state, best effort, and changes nothing.
    """
    states = dict(known)
    out = BatchDecision()
    for c in candidates:
        mark = decided_to.get(c.partition)
        if mark is not None and c.offset < mark:
            code = log.get((c.partition, c.offset), Logged.UNKNOWN)
            if code == Logged.UNKNOWN:
                out.unlogged.append(c)
                out.reasons.append(decide(states.get(c.student, Presence.ABSENT), c.tap_type)[0])
            else:
                out.reasons.append(reason_from_log(code, c.tap_type))
            continue
        before = states.get(c.student, Presence.ABSENT)
        reason, after = decide(before, c.tap_type)
        out.reasons.append(reason)
        out.logged[(c.partition, c.offset)] = log_code(reason)
        out.nexts[c.partition] = max(out.nexts.get(c.partition, 0), c.offset + 1)
        if after != before:
            states[c.student] = after
            out.changed[c.student] = after
    return out


def in_partition_order(
    positions: Iterable[tuple[int, int]], next_offsets: Mapping[int, int | None]
) -> tuple[list[bool], dict[int, int]]:
    """Which records may be decided now, so every partition is decided strictly in order.

    `positions` are (partition, offset) in delivery order; `next_offsets` the
    offset after the last record decided per partition (None: none yet).
    A record below that is a re-delivery (answered from the log); the one at
    it moves the partition on; one beyond it means records in between were
    not delivered (the consumer can skip records around a rebalance), so it
    and the rest of its partition wait until those are read again.
    Returns a keep flag per record and, per partition with a gap, the offset
    to read again from.
    """
    nexts = dict(next_offsets)
    keep: list[bool] = []
    gaps: dict[int, int] = {}
    for partition, offset in positions:
        expected = nexts.get(partition)
        if partition in gaps or (expected is not None and offset > expected):
            keep.append(False)
            gaps.setdefault(partition, expected)  # type: ignore[arg-type]
            continue
        keep.append(True)
        if expected is None or offset >= expected:
            nexts[partition] = offset + 1
    return keep, gaps
