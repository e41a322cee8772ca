"""The roster generator (pure) and the progress bar the seeding command shows."""

from __future__ import annotations

import io
import itertools
import re
import types

import pytest

from ops import roster
from ops.progress import Progress

OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")


# ----- ids -------------------------------------------------------------------------
def test_school_ids_are_zero_padded_to_four_digits() -> None:
    assert roster.school_id(1) == "SCH-0001"
    assert roster.school_id(42) == "SCH-0042"
    assert roster.school_id(1000) == "SCH-1000"
    assert roster.school_id(12345) == "SCH-12345"


@pytest.mark.parametrize("number", [0, -1, 1 << 40])
def test_school_numbers_outside_the_id_space_are_refused(number: int) -> None:
    with pytest.raises(ValueError, match="school numbers"):
        roster.school_id(number)


def test_student_ids_look_like_object_ids() -> None:
    ids = roster.student_ids(1, 500, seed=7)
    assert len(ids) == 500
    assert all(OBJECT_ID.match(i) for i in ids)
    # The leading 4 bytes are a plausible creation time (2019..2024), as in the fleet.
    seconds = int(ids[0][:8], 16)
    assert 1_546_300_800 <= seconds <= 1_725_148_800


def test_same_seed_same_roster_other_seed_other_roster() -> None:
    assert roster.student_ids(3, 100, seed=1) == roster.student_ids(3, 100, seed=1)
    assert set(roster.student_ids(3, 100, seed=1)).isdisjoint(roster.student_ids(3, 100, seed=2))


def test_more_students_extends_the_same_roster() -> None:
    """A re-run with a larger --students only adds ids; the first ones stay the same."""
    assert roster.student_ids(5, 200, seed=1)[:50] == roster.student_ids(5, 50, seed=1)


def test_student_ids_are_unique_across_schools() -> None:
    seen: set[str] = set()
    total = 0
    for number in range(1, 201):
        ids = roster.student_ids(number, 250, seed=1)
        total += len(ids)
        seen.update(ids)
    assert len(seen) == total == 200 * 250


def test_unique_where_a_school_counter_wraps_around() -> None:
    """The 3-byte counter starts anywhere and wraps; ids still never repeat within a school."""
    count = 300_000
    ids = roster.student_ids(9, count, seed=11)
    assert len(set(ids)) == count


def test_too_many_students_for_the_counter_are_refused() -> None:
    with pytest.raises(ValueError, match="students"):
        next(roster.iter_student_ids(1, roster.MAX_STUDENTS_PER_SCHOOL + 1))


def test_process_field_never_repeats_between_schools() -> None:
    """Uniqueness across schools comes from a bijection, not from luck: check many schools."""
    fields = {roster.student_ids(n, 1, seed=3)[0][8:18] for n in range(1, 20_001)}
    assert len(fields) == 20_000


# ----- documents -------------------------------------------------------------------
def test_documents_stay_small() -> None:
    school = roster.school_doc(7, "Asia/Kolkata")
    assert school["_id"] == "SCH-0007" and school["tz"] == "Asia/Kolkata" and school["name"]
    sid = roster.student_ids(7, 1)[0]
    assert roster.student_doc(sid, "SCH-0007") == {"_id": sid, "schoolId": "SCH-0007"}


def test_student_docs_cover_every_school_in_bounded_chunks() -> None:
    chunks = list(roster.student_docs(3, 50, seed=1, chunk=40))
    assert [len(c) for c in chunks] == [40, 40, 40, 30]
    docs = [d for c in chunks for d in c]
    assert len({d["_id"] for d in docs}) == 150
    assert {d["schoolId"] for d in docs} == {"SCH-0001", "SCH-0002", "SCH-0003"}
    assert [d["_id"] for d in docs if d["schoolId"] == "SCH-0002"] == roster.student_ids(2, 50, seed=1)


def test_school_docs_in_chunks() -> None:
    chunks = list(roster.school_docs(5, "UTC", chunk=2))
    assert [[d["_id"] for d in c] for c in chunks] == [
        ["SCH-0001", "SCH-0002"], ["SCH-0003", "SCH-0004"], ["SCH-0005"],
    ]


def test_reference_scale_is_lazy() -> None:
    """5,000,000 students are produced chunk by chunk, never built up front."""
    chunks = roster.student_docs(1_000, 5_000, seed=1, chunk=10_000)
    assert isinstance(chunks, types.GeneratorType)
    first, second = itertools.islice(chunks, 2)
    assert len(first) == len(second) == 10_000
    assert first[0]["schoolId"] == "SCH-0001" and second[-1]["schoolId"] == "SCH-0004"
    assert isinstance(roster.iter_student_docs(1_000, 5_000), types.GeneratorType)
    assert isinstance(roster.iter_student_ids(1, 5_000), types.GeneratorType)


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk"):
        roster.student_docs(1, 1, chunk=0)


# ----- progress bar ----------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_redraws_in_place_at_most_ten_times_a_second() -> None:
    clock, out = FakeClock(), FakeTTY()
    bar = Progress(1000, "students", out, clock=clock)
    for _ in range(1000):  # 1,000 advances within 0.5 s
        clock.now += 0.0005
        bar.advance(1)
    bar.close()
    text = out.getvalue()
    assert text.count("\r") <= 8  # ~5 timed redraws plus the final one
    assert text.endswith("\n") and text.count("\n") == 1
    final = text.rsplit("\r", 1)[1]
    assert "1,000/1,000" in final and "100.0%" in final and "2,000/s" in final


def test_progress_line_shows_rate_and_eta() -> None:
    clock = FakeClock()
    bar = Progress(10_000, "students", io.StringIO(), clock=clock)
    clock.now += 2.0
    bar.advance(2_500)
    line = bar.render()
    assert "2,500/10,000" in line and "25.0%" in line and "1,250/s" in line and "ETA 6s" in line


def test_progress_in_a_log_prints_a_plain_line_every_ten_percent() -> None:
    clock, out = FakeClock(), io.StringIO()
    with Progress(1000, "students", out, clock=clock) as bar:
        for _ in range(100):
            clock.now += 0.01
            bar.advance(10)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 11  # 10%, 20%, ... 100%, then the elapsed time
    assert "10.0%" in lines[0] and "100.0%" in lines[9]
    assert lines[-1] == "students: done in 1s"


def test_progress_closed_early_says_how_far_it_got() -> None:
    out = io.StringIO()
    bar = Progress(100, "students", out, clock=FakeClock())
    bar.advance(5)
    bar.close()
    bar.close()  # idempotent
    assert out.getvalue().count("\n") == 1 and "5/100" in out.getvalue()


def test_progress_of_nothing() -> None:
    out = io.StringIO()
    with Progress(0, "students", out, clock=FakeClock()):
        pass
    assert "0/0" in out.getvalue() and "100.0%" in out.getvalue()
