"""A deterministic school roster: the same seed always gives the same schools and students.

Pure: no clock, no network, no files. The seeding command writes what this
module generates, and a load run with the same seed can regenerate the same ids
without reading them back.

Student ids look like the fleet's MongoDB ObjectIds (24 lowercase hex
characters: 4-byte time, 5-byte "process" field, 3-byte counter) and are unique
by construction, not by luck:

* the 5-byte field is a keyed bijection of the school number, so two schools
  never share it;
* the 3-byte counter runs from a per-school start, so the students of one
  school never share it (up to 2**24 students per school).

Ids are stored as strings, as the gate devices send them (`userId`), so the
roster and the `attendances` collection join on plain string equality.

Everything that can be large is a generator: 5,000,000 students never sit in
memory at once.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterator

Doc = dict[str, Any]

SCHOOL_PREFIX = "SCH-"  # the same ids the load generator (ops.workload) uses
MAX_STUDENTS_PER_SCHOOL = 1 << 24  # the 3-byte counter
MAX_SCHOOL_NUMBER = (1 << 40) - 1  # the 5-byte field

_MASK40 = (1 << 40) - 1
_MASK24 = (1 << 24) - 1
# Rosters imported between 2019-01-01 and 2024-09-01: plausible ObjectId times.
_ENROLLED_FROM_S = 1_546_300_800
_ENROLLED_SPAN_S = 1_725_148_800 - _ENROLLED_FROM_S
_TOWNS = ("Northfield", "Riverside", "Hillcrest", "Lakeview", "Oakwood", "Eastgate", "Westbrook")


def _digest(*parts: object, size: int = 16) -> bytes:
    """A stable hash (Python's `hash` of a str changes per process, this does not)."""
    return hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=size).digest()


def _check_school(number: int) -> None:
    if not 1 <= number <= MAX_SCHOOL_NUMBER:
        raise ValueError(f"school numbers start at 1 and stay below 2**40, got {number}")


def school_id(number: int) -> str:
    """`SCH-0001` for school 1: zero-padded to at least four digits."""
    _check_school(number)
    return f"{SCHOOL_PREFIX}{number:04d}"


def school_doc(number: int, tz: str = "UTC") -> Doc:
    """A small school document: id, a readable name, the school's IANA time zone."""
    town = _TOWNS[(number - 1) % len(_TOWNS)]
    return {"_id": school_id(number), "name": f"{town} School {number}", "tz": tz}


def student_doc(student_id: str, school: str) -> Doc:
    """Only what the pipeline joins on: small documents write fastest."""
    return {"_id": student_id, "schoolId": school}


def _permute40(value: int, key: bytes) -> int:
    """A keyed bijection on 40-bit integers: distinct inputs give distinct outputs.

    XOR with a constant, multiplication by an odd number modulo 2**40 and
    xor-shift to the right are each invertible, so their composition is too.
    """
    k1 = int.from_bytes(key[0:5], "big")
    k2 = int.from_bytes(key[5:10], "big")
    x = (value ^ k1) & _MASK40
    x = (x * 0x9E3779B97F) & _MASK40  # odd
    x ^= x >> 19
    x = (x * 0xC2B2AE3D27) & _MASK40  # odd
    x ^= x >> 17
    return x ^ k2


def _school_prefix(number: int, seed: int) -> tuple[str, int]:
    """The 18 hex characters every student of one school shares, and its counter start."""
    _check_school(number)
    school_hash = _digest("roster", seed, number)
    seconds = _ENROLLED_FROM_S + int.from_bytes(school_hash[0:4], "big") % _ENROLLED_SPAN_S
    counter_start = int.from_bytes(school_hash[4:7], "big")
    process = _permute40(number, _digest("process", seed))
    return f"{seconds:08x}{process:010x}", counter_start


def iter_student_ids(school: int, count: int, seed: int = 1) -> Iterator[str]:
    """The ids of school number `school`'s `count` students, one at a time."""
    if not 0 <= count <= MAX_STUDENTS_PER_SCHOOL:
        raise ValueError(f"a school has 0 to {MAX_STUDENTS_PER_SCHOOL:,} students, got {count}")
    prefix, start = _school_prefix(school, seed)
    for index in range(count):
        yield f"{prefix}{(start + index) & _MASK24:06x}"


def student_ids(school: int, count: int, seed: int = 1) -> list[str]:
    """The ids of one school's students (one school's worth is small enough for a list)."""
    return list(iter_student_ids(school, count, seed))


def _check_chunk(size: int) -> None:
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")


def _chunks(items: Iterator[Doc], size: int) -> Iterator[list[Doc]]:
    chunk: list[Doc] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def school_docs(schools: int, tz: str = "UTC", *, chunk: int = 10_000) -> Iterator[list[Doc]]:
    """School documents 1..`schools`, in lists of at most `chunk`."""
    _check_chunk(chunk)
    return _chunks((school_doc(n, tz) for n in range(1, schools + 1)), chunk)


def iter_student_docs(schools: int, students_per_school: int, seed: int = 1) -> Iterator[Doc]:
    """Every student document, school by school, one at a time."""
    for number in range(1, schools + 1):
        school = school_id(number)
        for sid in iter_student_ids(number, students_per_school, seed):
            yield {"_id": sid, "schoolId": school}


def student_docs(
    schools: int, students_per_school: int, seed: int = 1, *, chunk: int = 10_000
) -> Iterator[list[Doc]]:
    """Student documents in lists of at most `chunk`; only one list exists at a time."""
    _check_chunk(chunk)
    return _chunks(iter_student_docs(schools, students_per_school, seed), chunk)
