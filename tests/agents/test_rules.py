"""Unit tests for the dedup rules (agents.rules), including the crash-replay property."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from typing import Hashable, Sequence

import pytest

from agents.rules import (
    CHECKOUT_WITHOUT_CHECKIN,
    DUPLICATE_CHECKIN,
    DUPLICATE_CHECKOUT,
    EMPTY,
    REJECTION_REASONS,
    Candidate,
    StudentDay,
    decide,
    decide_batch,
)

IN, OUT = "checkin", "checkout"


def test_reason_names() -> None:
    assert (DUPLICATE_CHECKIN, CHECKOUT_WITHOUT_CHECKIN, DUPLICATE_CHECKOUT) == (
        "duplicate_checkin",
        "checkout_without_checkin",
        "duplicate_checkout",
    )
    assert REJECTION_REASONS == (DUPLICATE_CHECKIN, CHECKOUT_WITHOUT_CHECKIN, DUPLICATE_CHECKOUT)
    assert EMPTY == StudentDay(None, None)


# --- decide: one tap at a time ---------------------------------------------------------


def test_first_checkin_is_accepted() -> None:
    assert decide(EMPTY, IN, 10) == (None, StudentDay(10, None))


def test_first_checkin_at_offset_zero_is_accepted() -> None:
    assert decide(EMPTY, IN, 0) == (None, StudentDay(0, None))


def test_second_checkin_is_a_duplicate() -> None:
    state = StudentDay(10, None)
    assert decide(state, IN, 11) == (DUPLICATE_CHECKIN, state)


def test_checkin_after_checkout_is_a_duplicate() -> None:
    state = StudentDay(10, 12)
    assert decide(state, IN, 13) == (DUPLICATE_CHECKIN, state)


def test_checkout_without_checkin_is_rejected() -> None:
    assert decide(EMPTY, OUT, 5) == (CHECKOUT_WITHOUT_CHECKIN, EMPTY)


def test_checkout_after_checkin_is_accepted() -> None:
    assert decide(StudentDay(10, None), OUT, 20) == (None, StudentDay(10, 20))


def test_second_checkout_is_a_duplicate() -> None:
    state = StudentDay(10, 20)
    assert decide(state, OUT, 21) == (DUPLICATE_CHECKOUT, state)


def test_checkout_accepted_only_once_in_a_sequence() -> None:
    state = EMPTY
    reasons = []
    for offset, kind in enumerate([OUT, IN, IN, OUT, OUT, IN, OUT]):
        reason, state = decide(state, kind, offset)
        reasons.append(reason)
    assert reasons == [
        CHECKOUT_WITHOUT_CHECKIN, None, DUPLICATE_CHECKIN, None, DUPLICATE_CHECKOUT,
        DUPLICATE_CHECKIN, DUPLICATE_CHECKOUT,
    ]
    assert state == StudentDay(1, 3)


# --- decide: replay safety ---------------------------------------------------------------


def test_replayed_accepted_checkin_is_accepted_again() -> None:
    reason, after = decide(EMPTY, IN, 10)
    assert decide(after, IN, 10) == (reason, after) == (None, StudentDay(10, None))


def test_replayed_accepted_checkin_after_the_checkout_is_accepted_again() -> None:
    state = StudentDay(10, 20)
    assert decide(state, IN, 10) == (None, state)


def test_replayed_duplicate_checkin_stays_a_duplicate() -> None:
    _, state = decide(EMPTY, IN, 10)
    first = decide(state, IN, 11)
    assert first == (DUPLICATE_CHECKIN, state)
    assert decide(state, IN, 11) == first


def test_replayed_accepted_checkout_is_accepted_again() -> None:
    reason, after = decide(StudentDay(10, None), OUT, 20)
    assert reason is None
    assert decide(after, OUT, 20) == (None, after)


def test_replayed_duplicate_checkout_stays_a_duplicate() -> None:
    state = StudentDay(10, 20)
    assert decide(state, OUT, 25) == (DUPLICATE_CHECKOUT, state)
    assert decide(state, OUT, 25) == (DUPLICATE_CHECKOUT, state)


def test_early_checkout_stays_rejected_when_replayed_after_the_checkin() -> None:
    """A check-out at offset 5 came before the check-in at 6; after a crash both are replayed
    against the state that already records the check-in: the check-out must not count now."""
    reason, state = decide(EMPTY, OUT, 5)
    assert reason == CHECKOUT_WITHOUT_CHECKIN
    _, state = decide(state, IN, 6)
    assert state == StudentDay(6, None)
    assert decide(state, OUT, 5) == (CHECKOUT_WITHOUT_CHECKIN, state)


def test_early_checkout_stays_rejected_after_a_later_checkout_counted() -> None:
    state = StudentDay(6, 9)
    assert decide(state, OUT, 5) == (CHECKOUT_WITHOUT_CHECKIN, state)


def test_replayed_early_checkin_duplicate_stays_a_duplicate() -> None:
    # Check-in 3 counted, 4 was a duplicate; replaying 4 against (3, 8) is still a duplicate.
    assert decide(StudentDay(3, 8), IN, 4) == (DUPLICATE_CHECKIN, StudentDay(3, 8))


# --- decide_batch --------------------------------------------------------------------------


def test_empty_batch() -> None:
    assert decide_batch([], {"a": StudentDay(1, None)}) == ([], {})


def test_one_students_taps_in_one_batch_are_decided_in_order() -> None:
    batch = [Candidate("a", IN, 1), Candidate("a", IN, 2), Candidate("a", OUT, 3), Candidate("a", OUT, 4)]
    reasons, changed = decide_batch(batch, {})
    assert reasons == [None, DUPLICATE_CHECKIN, None, DUPLICATE_CHECKOUT]
    assert changed == {"a": StudentDay(1, 3)}


def test_checkout_before_checkin_in_one_batch() -> None:
    reasons, changed = decide_batch([Candidate("a", OUT, 1), Candidate("a", IN, 2)], {})
    assert reasons == [CHECKOUT_WITHOUT_CHECKIN, None]
    assert changed == {"a": StudentDay(2, None)}


def test_students_are_independent() -> None:
    batch = [
        Candidate("a", IN, 1),
        Candidate("b", OUT, 2),
        Candidate("b", IN, 3),
        Candidate("a", IN, 4),
        Candidate("c", IN, 5),
        Candidate("b", OUT, 6),
        Candidate("a", OUT, 7),
        Candidate("c", IN, 8),
    ]
    reasons, changed = decide_batch(batch, {})
    assert reasons == [None, CHECKOUT_WITHOUT_CHECKIN, None, DUPLICATE_CHECKIN, None, None, None, DUPLICATE_CHECKIN]
    assert changed == {"a": StudentDay(1, 7), "b": StudentDay(3, 6), "c": StudentDay(5, None)}


def test_known_states_are_used() -> None:
    known = {"a": StudentDay(1, None), "b": StudentDay(2, 3)}
    batch = [Candidate("a", IN, 10), Candidate("a", OUT, 11), Candidate("b", OUT, 12), Candidate("c", OUT, 13)]
    reasons, changed = decide_batch(batch, known)
    assert reasons == [DUPLICATE_CHECKIN, None, DUPLICATE_CHECKOUT, CHECKOUT_WITHOUT_CHECKIN]
    assert changed == {"a": StudentDay(1, 11)}


def test_changed_holds_only_changed_states() -> None:
    known = {"a": StudentDay(1, 2), "b": StudentDay(3, None), "idle": StudentDay(4, None)}
    batch = [Candidate("a", IN, 5), Candidate("a", OUT, 6), Candidate("b", IN, 7), Candidate("c", OUT, 8)]
    reasons, changed = decide_batch(batch, known)
    assert reasons == [DUPLICATE_CHECKIN, DUPLICATE_CHECKOUT, DUPLICATE_CHECKIN, CHECKOUT_WITHOUT_CHECKIN]
    assert changed == {}


def test_changed_holds_the_final_state_of_a_student() -> None:
    _, changed = decide_batch([Candidate("a", IN, 1), Candidate("a", OUT, 2)], {})
    assert changed == {"a": StudentDay(1, 2)}


def test_known_mapping_is_not_mutated() -> None:
    known = {"a": StudentDay(1, None)}
    decide_batch([Candidate("a", OUT, 2), Candidate("b", IN, 3)], known)
    assert known == {"a": StudentDay(1, None)}


def test_replaying_a_batch_against_its_result_gives_the_same_reasons_and_no_change() -> None:
    batch = [
        Candidate("a", OUT, 1), Candidate("a", IN, 2), Candidate("b", IN, 3), Candidate("a", IN, 4),
        Candidate("a", OUT, 5), Candidate("b", OUT, 6), Candidate("a", OUT, 7),
    ]
    reasons, changed = decide_batch(batch, {})
    again, changed_again = decide_batch(batch, changed)
    assert again == reasons
    assert changed_again == {}


def test_candidates_may_be_a_generator() -> None:
    reasons, changed = decide_batch((Candidate(s, IN, i) for i, s in enumerate("aab")), {})
    assert reasons == [None, DUPLICATE_CHECKIN, None]
    assert changed == {"a": StudentDay(0, None), "b": StudentDay(2, None)}


# --- properties -----------------------------------------------------------------------------


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


def run(
    candidates: Sequence[Candidate], state: dict[Hashable, StudentDay], cuts: Sequence[int] = ()
) -> tuple[list[str | None], dict[Hashable, StudentDay]]:
    """Decide `candidates` in batches split at `cuts`, writing each batch's changes like the store does."""
    state = dict(state)
    reasons: list[str | None] = []
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(candidates)), len(candidates)]
    for lo, hi in zip(bounds, bounds[1:]):
        got, changed = decide_batch(candidates[lo:hi], state)
        reasons += got
        state.update(changed)
    return reasons, state


def check_counts(candidates: Sequence[Candidate], reasons: Sequence[str | None]) -> None:
    accepted = Counter((c.student, c.tap_type) for c, r in zip(candidates, reasons) if r is None)
    for student in {c.student for c in candidates}:
        assert accepted[(student, IN)] <= 1
        assert accepted[(student, OUT)] <= accepted[(student, IN)]


def check_states(states: dict[Hashable, StudentDay]) -> None:
    """A stored state never has a check-out without an earlier check-in."""
    for s in states.values():
        if s.checkout_offset is not None:
            assert s.checkin_offset is not None
            assert s.checkin_offset < s.checkout_offset


@pytest.mark.parametrize("length", range(1, 9))
def test_every_single_student_sequence_replays_identically(length: int) -> None:
    """Exhaustive: all check-in/check-out sequences up to 8 taps, every suffix replayed
    against every state the store could hold after the suffix started."""
    for kinds in itertools.product((IN, OUT), repeat=length):
        candidates = [Candidate("s", k, off) for off, k in enumerate(kinds)]
        states_after: list[dict[Hashable, StudentDay]] = [{}]
        reasons: list[str | None] = []
        for c in candidates:
            got, state = run([c], states_after[-1])
            reasons += got
            states_after.append(state)
        assert reasons == expected_reasons([("s", k) for k in kinds])
        check_counts(candidates, reasons)
        check_states(states_after[-1])
        for start in range(length):
            for written in range(start, length + 1):
                replayed, _ = run(candidates[start:], states_after[written])
                assert replayed == reasons[start:], (kinds, start, written)


def test_random_sequences_replay_identically() -> None:
    """Random taps for a few students, random batch cuts, random offset gaps: replaying any
    suffix against the final state (a crash after the last write) gives the first answers."""
    rng = random.Random(20260310)
    for _ in range(400):
        students = [f"s{i}" for i in range(rng.randint(1, 5))]
        n = rng.randint(1, 40)
        offset = rng.randint(0, 1000)
        candidates = []
        for _ in range(n):
            offset += rng.randint(1, 3)
            candidates.append(Candidate(rng.choice(students), rng.choice((IN, OUT)), offset))
        cuts = rng.sample(range(1, n + 1), k=rng.randint(0, n))
        reasons, final = run(candidates, {}, cuts)

        assert reasons == expected_reasons([(c.student, c.tap_type) for c in candidates])
        check_counts(candidates, reasons)
        check_states(final)

        for start in range(n):
            replay_cuts = rng.sample(range(1, n - start + 1), k=rng.randint(0, n - start))
            replayed, after_replay = run(candidates[start:], final, replay_cuts)
            assert replayed == reasons[start:]
            assert after_replay == final


def test_random_crash_points_replay_identically() -> None:
    """The store may hold any batch boundary at or after the replay start (the commit lags the write)."""
    rng = random.Random(7)
    for _ in range(300):
        students = ["a", "b", "c"]
        n = rng.randint(2, 30)
        candidates = [Candidate(rng.choice(students), rng.choice((IN, OUT)), 100 + 2 * i) for i in range(n)]
        reasons, _ = run(candidates, {})
        start = rng.randint(0, n - 1)
        written = rng.randint(start, n)
        _, stored = run(candidates[:written], {})
        replayed, final = run(candidates[start:], stored, rng.sample(range(1, n), k=rng.randint(0, n - 1)))
        assert replayed == reasons[start:]
        assert final == run(candidates, {})[1]
