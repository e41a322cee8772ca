"""Seeding the roster into the embedded MongoDB: exact counts, safe re-runs, clear refusals."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from pymongo.errors import BulkWriteError

from conftest import RunningStack
from ops import roster, seed
from ops.seed import roster_sample, seed_roster
from pipeline.clients import mongo_client
from pipeline.settings import Settings

pytestmark = pytest.mark.integration


def settings_for(stack: RunningStack) -> Settings:
    """A database of its own per test, so counts are exact whatever else ran."""
    return Settings(mongo_url=stack.mongo_url, mongo_db=f"seed-{uuid.uuid4().hex[:12]}")


async def counts(settings: Settings) -> tuple[int, int]:
    client = mongo_client(settings)
    try:
        db = client[settings.mongo_db]
        return await db.schools.count_documents({}), await db.students.count_documents({})
    finally:
        await client.close()


async def test_seeds_exactly_the_requested_roster(stack: RunningStack) -> None:
    settings = settings_for(stack)
    out = io.StringIO()
    result = await seed_roster(settings, schools=3, students_per_school=50, batch=40, stream=out)
    assert (result.schools_written, result.students_written) == (3, 150)
    assert (result.schools_present, result.students_present) == (0, 0)
    assert result.seconds > 0
    assert await counts(settings) == (3, 150)
    assert "150/150" in out.getvalue() and "100.0%" in out.getvalue()

    client = mongo_client(settings)
    try:
        db = client[settings.mongo_db]
        school = await db.schools.find_one({"_id": "SCH-0002"})
        assert school is not None and school["tz"] == settings.school_tz
        stored = sorted([d["_id"] async for d in db.students.find({"schoolId": "SCH-0002"})])
        assert stored == sorted(roster.student_ids(2, 50, seed=1))
    finally:
        await client.close()


async def test_rerunning_adds_nothing_and_does_not_fail(stack: RunningStack) -> None:
    settings = settings_for(stack)
    await seed_roster(settings, schools=3, students_per_school=50, progress=False)
    again = await seed_roster(settings, schools=3, students_per_school=50, progress=False)
    assert (again.schools_written, again.students_written) == (0, 0)
    assert (again.schools_present, again.students_present) == (3, 150)
    assert await counts(settings) == (3, 150)


async def test_a_larger_rerun_adds_only_what_is_missing(stack: RunningStack) -> None:
    """A run interrupted half way, or a roster that grew, completes without duplicates."""
    settings = settings_for(stack)
    await seed_roster(settings, schools=2, students_per_school=20, progress=False)
    more = await seed_roster(settings, schools=3, students_per_school=30, batch=25, progress=False)
    assert (more.schools_written, more.schools_present) == (1, 2)
    assert (more.students_written, more.students_present) == (90 - 40, 40)
    assert await counts(settings) == (3, 90)


async def test_roster_sample_reads_ids_back_per_school(stack: RunningStack) -> None:
    settings = settings_for(stack)
    await seed_roster(settings, schools=3, students_per_school=50, seed=5, progress=False)
    sample = await roster_sample(settings, 10)
    assert sorted(sample) == ["SCH-0001", "SCH-0002", "SCH-0003"]
    for number, (school, ids) in enumerate(sorted(sample.items()), start=1):
        assert len(ids) == 10
        assert set(ids) <= set(roster.student_ids(number, 50, seed=5)), school
    assert list(await roster_sample(settings, 100, schools=2)) == ["SCH-0001", "SCH-0002"]
    assert all(len(ids) == 50 for ids in (await roster_sample(settings, 100)).values())


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"schools": 0, "students_per_school": 50}, "--schools must be between 1"),
        ({"schools": -3, "students_per_school": 50}, "--schools must be between 1"),
        ({"schools": 3, "students_per_school": 0}, "--students"),
        ({"schools": seed.MAX_SCHOOLS + 1, "students_per_school": 1}, "--schools"),
        ({"schools": 1, "students_per_school": seed.MAX_STUDENTS_PER_SCHOOL + 1}, "--students"),
        ({"schools": 100_000, "students_per_school": 100_000}, "more than the"),
        ({"schools": "3", "students_per_school": 50}, "whole number"),
        ({"schools": 3, "students_per_school": 2.5}, "whole number"),
        ({"schools": 3, "students_per_school": 50, "batch": 0}, "batch"),
        ({"schools": 3, "students_per_school": 50, "seed": "x"}, "seed"),
    ],
)
async def test_bad_arguments_are_refused_before_writing(
    stack: RunningStack, arguments: dict[str, Any], message: str
) -> None:
    settings = settings_for(stack)
    with pytest.raises(ValueError, match=message):
        await seed_roster(settings, progress=False, **arguments)
    assert await counts(settings) == (0, 0)


async def test_roster_sample_refuses_a_bad_limit(stack: RunningStack) -> None:
    with pytest.raises(ValueError, match="limit"):
        await roster_sample(settings_for(stack), 0)


# The server under test reports every SQLite integrity failure as a duplicate key, so
# the "only duplicates are forgiven" rule is checked against a collection double.
class FailingCollection:
    def __init__(self, codes: list[int], inserted: int) -> None:
        self.codes, self.inserted = codes, inserted

    async def insert_many(self, docs: list[dict[str, Any]], ordered: bool = True) -> None:
        assert ordered is False
        errors = [{"index": i, "code": code, "errmsg": "x"} for i, code in enumerate(self.codes)]
        raise BulkWriteError({"writeErrors": errors, "writeConcernErrors": [], "nInserted": self.inserted})


async def test_duplicate_keys_count_as_already_present() -> None:
    written, present = await seed._insert(FailingCollection([11000, 11000], 8), [{}] * 10)  # type: ignore[arg-type]
    assert (written, present) == (8, 2)


async def test_any_other_write_error_is_raised() -> None:
    with pytest.raises(BulkWriteError):
        await seed._insert(FailingCollection([11000, 121], 8), [{}] * 10)  # type: ignore[arg-type]


class OneBadChunk:
    """Inserts every chunk except the second, which fails with a validation error (121)."""

    def __init__(self) -> None:
        self.calls = 0

    async def insert_many(self, docs: list[dict[str, Any]], ordered: bool = True) -> Any:
        self.calls += 1
        if self.calls == 2:
            raise BulkWriteError({"writeErrors": [{"index": 0, "code": 121, "errmsg": "invalid"}],
                                  "writeConcernErrors": [], "nInserted": len(docs) - 1})
        return type("Result", (), {"inserted_ids": [d["_id"] for d in docs]})()


async def test_a_failing_chunk_stops_the_run_with_its_error() -> None:
    chunks = roster.student_docs(2, 50, chunk=10)
    with pytest.raises(BulkWriteError):
        await seed._write_all(OneBadChunk(), chunks, None)  # type: ignore[arg-type]
    assert next(chunks)  # the run stopped early: chunks were left unwritten
