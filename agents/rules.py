"""Which taps count: the dedup rules as pure functions.

A student's state for one school day is the broker offsets of the check-in and
check-out that counted. Offsets make every decision a function of the record
itself, so reprocessing a batch after a crash gives the same answers:
- the check-in that counted is recognised by its own offset, not taken for a
  duplicate of itself;
- a check-out that came before any check-in stays rejected even when the
  check-in has been recorded since (its offset is lower than the check-in's).
All of one student's taps share a partition (taps are keyed by school), so
their offsets are comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Iterable, Mapping

from pipeline.taps import CHECKIN

DUPLICATE_CHECKIN = "duplicate_checkin"
CHECKOUT_WITHOUT_CHECKIN = "checkout_without_checkin"
DUPLICATE_CHECKOUT = "duplicate_checkout"
REJECTION_REASONS = (DUPLICATE_CHECKIN, CHECKOUT_WITHOUT_CHECKIN, DUPLICATE_CHECKOUT)


@dataclass(frozen=True, slots=True)
class StudentDay:
    checkin_offset: int | None = None
    checkout_offset: int | None = None


EMPTY = StudentDay()


def decide(state: StudentDay, tap_type: str, offset: int) -> tuple[str | None, StudentDay]:
    """The rejection reason (None when the tap counts) and the state after it."""
    if tap_type == CHECKIN:
        if state.checkin_offset is None:
            return None, StudentDay(offset, state.checkout_offset)
        if state.checkin_offset == offset:
            return None, state
        return DUPLICATE_CHECKIN, state
    if state.checkin_offset is None or state.checkin_offset > offset:
        return CHECKOUT_WITHOUT_CHECKIN, state
    if state.checkout_offset is None:
        return None, StudentDay(state.checkin_offset, offset)
    if state.checkout_offset == offset:
        return None, state
    return DUPLICATE_CHECKOUT, state


@dataclass(frozen=True, slots=True)
class Candidate:
    """One tap to decide: whose day it is, what it is, and where it sits in its partition."""

    student: Hashable
    tap_type: str
    offset: int


def decide_batch(
    candidates: Iterable[Candidate], known: Mapping[Hashable, StudentDay]
) -> tuple[list[str | None], dict[Hashable, StudentDay]]:
    """Decide taps in order; a student's later taps see the earlier ones of the batch.

    Returns one reason (or None) per candidate and the states that changed.
    """
    states = dict(known)
    changed: dict[Hashable, StudentDay] = {}
    reasons: list[str | None] = []
    for c in candidates:
        before = states.get(c.student, EMPTY)
        reason, after = decide(before, c.tap_type, c.offset)
        reasons.append(reason)
        if after != before:
            states[c.student] = after
            changed[c.student] = after
    return reasons, changed


def in_partition_order(
    positions: Iterable[tuple[int, int]], next_offsets: Mapping[int, int | None]
) -> tuple[list[bool], dict[int, int], dict[int, int]]:
    """Which records may be decided now, so every partition is decided strictly in order.

    `positions` are (partition, offset) in delivery order; `next_offsets` the
    offset after the last record decided per partition (None: none yet).
    A record below that is a re-delivery (decided again, harmlessly); the one
    at it moves the partition on; one beyond it means records in between were
    not delivered (the consumer can skip records around a rebalance), so it
    and the rest of its partition wait until those are read again.
    Returns a keep flag per record, the new next offset per partition, and
    the offset to read again from per partition that has a gap.
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
    moved = {p: o for p, o in nexts.items() if o is not None and o != next_offsets.get(p)}
    return keep, moved, gaps
