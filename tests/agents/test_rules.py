"""Unit tests for the dedup rules (agents.rules), including the crash-replay property."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Hashable, Sequence

import pytest

from agents.rules import (
    CHECKOUT_WITHOUT_CHECKIN,
    DUPLICATE_CHECKIN,
    DUPLICATE_CHECKOUT,
    REJECTION_REASONS,
    Candidate,
    Logged,
    Presence,
    decide,
    decide_batch,
    in_partition_order,
    log_code,
    reason_from_log,
)

IN, OUT = "checkin", "checkout"
ABSENT, CHECKED_IN, CHECKED_OUT = Presence.ABSENT, Presence.CHECKED_IN, Presence.CHECKED_OUT


def test_reason_names() -> None:
    assert (DUPLICATE_CHECKIN, CHECKOUT_WITHOUT_CHECKIN, DUPLICATE_CHECKOUT) == (
        "duplicate_checkin",
        "checkout_without_checkin",
        "duplicate_checkout",
    )
    assert REJECTION_REASONS == (DUPLICATE_CHECKIN, CHECKOUT_WITHOUT_CHECKIN, DUPLICATE_CHECKOUT)


# --- decide: one tap at a time ---------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "kind", "reason", "after"),
    [
        (ABSENT, IN, None, CHECKED_IN),
        (CHECKED_IN, IN, DUPLICATE_CHECKIN, CHECKED_IN),
        (CHECKED_OUT, IN, DUPLICATE_CHECKIN, CHECKED_OUT),
        (ABSENT, OUT, CHECKOUT_WITHOUT_CHECKIN, ABSENT),
        (CHECKED_IN, OUT, None, CHECKED_OUT),
        (CHECKED_OUT, OUT, DUPLICATE_CHECKOUT, CHECKED_OUT),
    ],
)
def test_decide(state: Presence, kind: str, reason: str | None, after: Presence) -> None:
    assert decide(state, kind) == (reason, after)


def test_decide_accepts_plain_integers_from_the_store() -> None:
    assert decide(0, IN) == (None, CHECKED_IN)  # type: ignore[arg-type]
    assert decide(1, OUT) == (None, CHECKED_OUT)  # type: ignore[arg-type]


def test_checkout_accepted_only_once_in_a_sequence() -> None:
    state = ABSENT
    reasons = []
    for kind in [OUT, IN, IN, OUT, OUT, IN, OUT]:
        reason, state = decide(state, kind)
        reasons.append(reason)
    assert reasons == [
        CHECKOUT_WITHOUT_CHECKIN, None, DUPLICATE_CHECKIN, None, DUPLICATE_CHECKOUT,
        DUPLICATE_CHECKIN, DUPLICATE_CHECKOUT,
    ]
    assert state == CHECKED_OUT


# --- the outcome log's codes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "kind", "code"),
    [
        (None, IN, Logged.COUNTED),
        (None, OUT, Logged.COUNTED),
        (DUPLICATE_CHECKIN, IN, Logged.DUPLICATE),
        (DUPLICATE_CHECKOUT, OUT, Logged.DUPLICATE),
        (CHECKOUT_WITHOUT_CHECKIN, OUT, Logged.NO_CHECKIN),
    ],
)
def test_log_codes_round_trip(reason: str | None, kind: str, code: Logged) -> None:
    assert log_code(reason) == code
    assert reason_from_log(code, kind) == reason
    assert 1 <= int(code) <= 3  # fits the log's 2 bits, 0 meaning "not logged"


def test_unknown_code_has_no_reason() -> None:
    with pytest.raises(ValueError):
        reason_from_log(Logged.UNKNOWN, IN)


# --- decide_batch --------------------------------------------------------------------------


def c(student: str, kind: str, offset: int, partition: int = 0) -> Candidate:
    return Candidate(student, kind, partition, offset)


def test_empty_batch() -> None:
    d = decide_batch([], {"a": CHECKED_IN}, {0: 5}, {})
    assert (d.reasons, d.changed, d.logged, d.nexts, d.unlogged) == ([], {}, {}, {}, [])


def test_one_students_taps_in_one_batch_are_decided_in_order() -> None:
    d = decide_batch([c("a", IN, 1), c("a", IN, 2), c("a", OUT, 3), c("a", OUT, 4)], {}, {}, {})
    assert d.reasons == [None, DUPLICATE_CHECKIN, None, DUPLICATE_CHECKOUT]
    assert d.changed == {"a": CHECKED_OUT}
    assert d.logged == {(0, 1): Logged.COUNTED, (0, 2): Logged.DUPLICATE, (0, 3): Logged.COUNTED,
                        (0, 4): Logged.DUPLICATE}
    assert d.nexts == {0: 5}


def test_checkout_before_checkin_in_one_batch() -> None:
    d = decide_batch([c("a", OUT, 1), c("a", IN, 2)], {}, {}, {})
    assert d.reasons == [CHECKOUT_WITHOUT_CHECKIN, None]
    assert d.changed == {"a": CHECKED_IN}
    assert d.logged[(0, 1)] == Logged.NO_CHECKIN


def test_known_states_are_used_and_only_changes_are_returned() -> None:
    known = {"a": CHECKED_IN, "b": CHECKED_OUT, "idle": CHECKED_IN}
    batch = [c("a", IN, 10), c("a", OUT, 11), c("b", OUT, 12), c("c", OUT, 13)]
    d = decide_batch(batch, known, {0: 10}, {})
    assert d.reasons == [DUPLICATE_CHECKIN, None, DUPLICATE_CHECKOUT, CHECKOUT_WITHOUT_CHECKIN]
    assert d.changed == {"a": CHECKED_OUT}
    assert known == {"a": CHECKED_IN, "b": CHECKED_OUT, "idle": CHECKED_IN}  # not mutated


def test_records_below_the_mark_get_their_logged_outcome_and_change_nothing() -> None:
    # A check-in at 6 counted; read again against a state that already has it, it still counts.
    d = decide_batch([c("a", OUT, 5), c("a", IN, 6), c("a", OUT, 7)], {"a": CHECKED_IN}, {0: 7},
                     {(0, 5): Logged.NO_CHECKIN, (0, 6): Logged.COUNTED})
    assert d.reasons == [CHECKOUT_WITHOUT_CHECKIN, None, None]
    assert d.changed == {"a": CHECKED_OUT}
    assert d.logged == {(0, 7): Logged.COUNTED}  # only the new record is logged
    assert d.nexts == {0: 8}
    assert d.unlogged == []


def test_a_fully_replayed_batch_writes_nothing() -> None:
    d = decide_batch([c("a", IN, 1), c("a", IN, 2)], {"a": CHECKED_IN}, {0: 3},
                     {(0, 1): Logged.COUNTED, (0, 2): Logged.DUPLICATE})
    assert d.reasons == [None, DUPLICATE_CHECKIN]
    assert (d.changed, d.logged, d.nexts) == ({}, {}, {})


def test_a_record_whose_log_expired_is_judged_on_the_state_and_reported() -> None:
    d = decide_batch([c("a", IN, 1)], {"a": CHECKED_IN}, {0: 2}, {})
    assert d.reasons == [DUPLICATE_CHECKIN]
    assert (d.changed, d.logged, d.nexts) == ({}, {}, {})
    assert d.unlogged == [c("a", IN, 1)]


def test_partitions_have_their_own_marks() -> None:
    batch = [c("a", IN, 4, partition=0), c("b", IN, 4, partition=1)]
    d = decide_batch(batch, {"a": CHECKED_IN}, {0: 5, 1: 4}, {(0, 4): Logged.COUNTED})
    assert d.reasons == [None, None]
    assert d.changed == {"b": CHECKED_IN}
    assert d.nexts == {1: 5}


# --- properties: a simulated store, crashes at every batch boundary ----------------------------


@dataclass
class Store:
    """What Redis holds, written all or nothing per batch like RedisDedupStore.decide."""

    states: dict[Hashable, Presence] = field(default_factory=dict)
    log: dict[tuple[int, int], Logged] = field(default_factory=dict)
    marks: dict[int, int] = field(default_factory=dict)

    def copy(self) -> "Store":
        return Store(dict(self.states), dict(self.log), dict(self.marks))

    def decide(self, batch: Sequence[Candidate]) -> list[str | None]:
        d = decide_batch(batch, self.states, self.marks, self.log)
        assert d.unlogged == []
        self.states.update(d.changed)
        self.log.update(d.logged)
        self.marks.update(d.nexts)
        return d.reasons


def run(store: Store, candidates: Sequence[Candidate], cuts: Sequence[int] = ()) -> list[str | None]:
    bounds = [0, *sorted(x for x in set(cuts) if 0 < x < len(candidates)), len(candidates)]
    reasons: list[str | None] = []
    for lo, hi in zip(bounds, bounds[1:]):
        reasons += store.decide(candidates[lo:hi])
    return reasons


def expected_reasons(taps: Sequence[tuple[Hashable, str]]) -> list[str | None]:
    """The rules in plain words: first check-in counts; a check-out counts once, after a counted check-in."""
    checked_in: set[Hashable] = set()
    checked_out: set[Hashable] = set()
    out: list[str | None] = []
    for student, kind in taps:
        if kind == IN:
            out.append(DUPLICATE_CHECKIN if student in checked_in else None)
            checked_in.add(student)
        elif student not in checked_in:
            out.append(CHECKOUT_WITHOUT_CHECKIN)
        elif student in checked_out:
            out.append(DUPLICATE_CHECKOUT)
        else:
            out.append(None)
            checked_out.add(student)
    return out


def check_counts(candidates: Sequence[Candidate], reasons: Sequence[str | None]) -> None:
    accepted = Counter((x.student, x.tap_type) for x, r in zip(candidates, reasons) if r is None)
    for student in {x.student for x in candidates}:
        assert accepted[(student, IN)] <= 1
        assert accepted[(student, OUT)] <= accepted[(student, IN)]


@pytest.mark.parametrize("length", range(1, 9))
def test_every_single_student_sequence_replays_identically(length: int) -> None:
    """Exhaustive: all check-in/check-out sequences up to 8 taps; a crash after any batch
    written replays from any earlier point and gets the first answers and the same store."""
    for kinds in itertools.product((IN, OUT), repeat=length):
        candidates = [c("s", k, off) for off, k in enumerate(kinds)]
        stores = [Store()]
        reasons: list[str | None] = []
        for x in candidates:
            s = stores[-1].copy()
            reasons += s.decide([x])
            stores.append(s)
        assert reasons == expected_reasons([("s", k) for k in kinds])
        check_counts(candidates, reasons)
        for start in range(length):
            for written in range(start, length + 1):
                s = stores[written].copy()
                assert run(s, candidates[start:]) == reasons[start:], (kinds, start, written)
                assert s == stores[-1]


def test_random_sequences_replay_identically() -> None:
    """Random taps over partitions, random batch cuts: replaying any suffix against the
    final store (a crash after the last write) gives the first answers and writes nothing."""
    rng = random.Random(20260310)
    for _ in range(400):
        students = [f"s{i}" for i in range(rng.randint(1, 5))]
        n = rng.randint(1, 40)
        offsets = {0: rng.randint(0, 1000), 1: rng.randint(0, 1000)}
        candidates = []
        for _ in range(n):
            student = rng.choice(students)
            p = int(student[1:]) % 2  # a student's taps share a partition
            candidates.append(c(student, rng.choice((IN, OUT)), offsets[p], partition=p))
            offsets[p] += 1
        store = Store()
        reasons = run(store, candidates, rng.sample(range(1, n + 1), k=rng.randint(0, n)))
        assert reasons == expected_reasons([(x.student, x.tap_type) for x in candidates])
        check_counts(candidates, reasons)
        final = store.copy()
        for start in range(n):
            replay_cuts = rng.sample(range(1, n - start + 1), k=rng.randint(0, n - start))
            again = store.copy()
            assert run(again, candidates[start:], replay_cuts) == reasons[start:]
            assert again == final


def test_random_crash_points_replay_identically() -> None:
    """The store may hold any batch boundary at or after the replay start (the commit lags the write)."""
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(2, 30)
        candidates = [c(rng.choice("abc"), rng.choice((IN, OUT)), 100 + i) for i in range(n)]
        whole = Store()
        reasons = run(whole, candidates)
        start = rng.randint(0, n - 1)
        written = rng.randint(start, n)
        stored = Store()
        run(stored, candidates[:written], rng.sample(range(1, n), k=rng.randint(0, n - 1)))
        assert run(stored, candidates[start:], rng.sample(range(1, n), k=rng.randint(0, n - 1))) == reasons[start:]
        assert stored == whole


def test_without_the_log_a_replay_would_miscount() -> None:
    """Why the log exists: judged on the state alone, a replayed counted check-in is a duplicate."""
    store = Store()
    assert store.decide([c("a", IN, 0)]) == [None]
    assert decide(store.states["a"], IN) == (DUPLICATE_CHECKIN, CHECKED_IN)
    assert store.decide([c("a", IN, 0)]) == [None]


# --- in_partition_order --------------------------------------------------------------------


def test_in_order_records_are_kept() -> None:
    keep, gaps = in_partition_order([(0, 5), (0, 6), (1, 0)], {0: 5, 1: None})
    assert keep == [True, True, True]
    assert gaps == {}


def test_redelivered_records_are_kept() -> None:
    keep, gaps = in_partition_order([(0, 3), (0, 4), (0, 5)], {0: 5})
    assert keep == [True, True, True]
    assert gaps == {}


def test_a_gap_holds_back_the_rest_of_its_partition_only() -> None:
    keep, gaps = in_partition_order([(0, 5), (0, 8), (1, 2), (0, 9), (1, 3)], {0: 5, 1: 2})
    assert keep == [True, False, True, False, True]
    assert gaps == {0: 6}
