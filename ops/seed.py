"""Writes the deterministic roster (ops.roster) into MongoDB's `schools` and `students`.

Run by the operator command `faust -A pipeline.app seed --schools N --students M`.
Writes go in bulk (unordered `insert_many` in chunks) and are idempotent: the
documents' `_id`s are deterministic, so a re-run, or a run resumed after a
crash, meets duplicate-key errors for what is already there, counts them as
present and carries on. Any other write error is raised.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterable, TextIO

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from ops import roster
from ops.progress import Progress
from pipeline.clients import mongo_client
from pipeline.settings import Settings

SCHOOLS = "schools"
STUDENTS = "students"
DUPLICATE_KEY = 11000

MAX_SCHOOLS = 100_000
MAX_STUDENTS_PER_SCHOOL = 100_000
MAX_STUDENTS = 50_000_000  # ten times the reference scale (1,000 x 5,000)
MAX_BATCH = 100_000  # MongoDB's maxWriteBatchSize
# Two batches in flight: the next one is encoded and sent while the server stores the last.
IN_FLIGHT = 2


@dataclass(frozen=True)
class SeedResult:
    """What one seeding run did: new documents, documents already there, time taken."""

    schools_written: int
    schools_present: int
    students_written: int
    students_present: int
    seconds: float

    @property
    def students(self) -> int:
        return self.students_written + self.students_present

    @property
    def students_per_s(self) -> float:
        return self.students / self.seconds if self.seconds > 0 else 0.0


def _whole(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:,} and {high:,}, got {value:,}")
    return value


def validate(schools: object, students_per_school: object, seed: object, batch: object) -> None:
    """Refuse bad arguments before touching the database, with the operator's option names."""
    _whole("--schools", schools, 1, MAX_SCHOOLS)
    _whole("--students (per school)", students_per_school, 1, MAX_STUDENTS_PER_SCHOOL)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be a whole number, got {seed!r}")
    _whole("batch", batch, 1, MAX_BATCH)
    total = schools * students_per_school  # type: ignore[operator]
    if total > MAX_STUDENTS:
        raise ValueError(
            f"{schools:,} schools x {students_per_school:,} students = {total:,} students, "
            f"more than the {MAX_STUDENTS:,} this command seeds in one run"
        )


async def _insert(collection: AsyncCollection, docs: list[dict[str, Any]]) -> tuple[int, int]:
    """Insert unordered; return (written, already present). Only duplicate keys are forgiven."""
    try:
        result = await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        details = exc.details
        errors = details.get("writeErrors", [])
        if details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        return int(details.get("nInserted", 0)), len(errors)
    return len(result.inserted_ids), 0


async def _write_all(
    collection: AsyncCollection,
    chunks: Iterable[list[dict[str, Any]]],
    bar: Progress | None,
) -> tuple[int, int]:
    """Keep up to IN_FLIGHT chunks in flight; the first failure cancels the rest and is raised."""
    written = present = 0
    pending: set[asyncio.Task[tuple[int, int]]] = set()
    sizes: dict[asyncio.Task[tuple[int, int]], int] = {}

    def collect(done: set[asyncio.Task[tuple[int, int]]]) -> None:
        nonlocal written, present
        failures = [exc for task in done if (exc := task.exception()) is not None]
        if failures:
            raise failures[0]  # a non-duplicate write error (each one is retrieved, none left dangling)
        for task in done:
            new, old = task.result()
            written += new
            present += old
            if bar is not None:
                bar.advance(sizes.pop(task))

    try:
        for chunk in chunks:
            task = asyncio.create_task(_insert(collection, chunk))
            sizes[task] = len(chunk)
            pending.add(task)
            if len(pending) >= IN_FLIGHT:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                collect(done)
        if pending:
            done, pending = await asyncio.wait(pending)
            collect(done)
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    return written, present


async def seed_roster(
    settings: Settings,
    *,
    schools: int,
    students_per_school: int,
    seed: int = 1,
    batch: int = 10_000,
    progress: bool = True,
    stream: TextIO | None = None,
) -> SeedResult:
    """Write `schools` schools and `students_per_school` students each; safe to re-run.

    The same seed always writes the same ids, so re-running adds nothing and
    a larger `--students` only adds the missing ones. Raises ValueError for bad
    arguments before connecting.
    """
    validate(schools, students_per_school, seed, batch)
    started = time.monotonic()
    client = mongo_client(settings)
    try:
        db = client[settings.mongo_db]
        schools_written, schools_present = await _write_all(
            db[SCHOOLS], roster.school_docs(schools, settings.school_tz, chunk=batch), None
        )
        total = schools * students_per_school
        bar = Progress(total, "students", stream or sys.stderr) if progress else None
        try:
            students_written, students_present = await _write_all(
                db[STUDENTS], roster.student_docs(schools, students_per_school, seed, chunk=batch), bar
            )
        finally:
            if bar is not None:
                bar.close()
        # Built once after the bulk load (cheaper than maintaining it per insert); a no-op
        # when it exists. roster_sample reads a school's students through it.
        await db[STUDENTS].create_index("schoolId")
    finally:
        await client.close()
    return SeedResult(
        schools_written=schools_written,
        schools_present=schools_present,
        students_written=students_written,
        students_present=students_present,
        seconds=time.monotonic() - started,
    )


async def roster_sample(
    settings: Settings, limit: int = 100, *, schools: int | None = None
) -> dict[str, list[str]]:
    """Up to `limit` student ids per school, read back from the database.

    For the load generator: it draws user ids from the roster that is really
    there, whoever seeded it. `schools` caps how many schools (in id order) are read.
    """
    _whole("limit", limit, 1, MAX_STUDENTS_PER_SCHOOL)
    if schools is not None:
        _whole("schools", schools, 1, MAX_SCHOOLS)
    client = mongo_client(settings)
    try:
        db = client[settings.mongo_db]
        cursor = db[SCHOOLS].find({}, {"_id": 1}).sort("_id", 1)
        if schools is not None:
            cursor = cursor.limit(schools)
        school_ids = [doc["_id"] async for doc in cursor]
        sample: dict[str, list[str]] = {}
        for school in school_ids:
            students = db[STUDENTS].find({"schoolId": school}, {"_id": 1}).limit(limit)
            sample[school] = [doc["_id"] async for doc in students]
        return sample
    finally:
        await client.close()
