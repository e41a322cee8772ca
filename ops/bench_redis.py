"""Redis bytes per student-day: rollcall's dedup scheme beside the reference design's two.

All three schemes store the same students (MongoDB ObjectId-shaped ids, one
check-in and one check-out each) on a private redis-server that this module
starts on a free port with persistence off, so nothing else's data is counted
and the machine's own Redis is never touched. Each scheme is measured as the
growth of `INFO memory` used_memory from an empty database (FLUSHALL between
schemes is safe only because the server is ours).

- rollcall: `RedisDedupStore.decide` in batches like the agent's, at broker
  offsets a topic reaches after months of the reference load, with everything
  it writes in the same atomic step: the students' integer-set buckets, the
  per-partition outcome log (2 bits a tap) and "decided up to" marks;
- plain keys, as the reference design's README describes them: one key per
  student and tap type, `checkin:{userId}` = "true";
- hash buckets, as its redis-repo.ts writes them: key = `{type}:{userId}`
  without its last two characters, field = those two, value "true", under
  Redis's default listpack settings (rollcall's server differs only in
  set-max-intset-entries, a setting hashes do not use).
The reference keys carry no day and no expiry: it wipes Redis with a daily
cron task instead (which rollcall's design rules out).

Each scheme is filled in two halves; the second half's growth is the marginal
cost per student, which extrapolates to the reference day of 5 million
students (rollcall's 2^14 buckets per day are paid for once, so a straight
per-student scaling would overstate it).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Awaitable, Callable, Sequence
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis
from pipeline.partitioning import partition_of

from agents.dedup_store import BUCKET_BITS, FINGERPRINT_BITS, INTSET_ENTRIES, RedisDedupStore, TapAt
from ops.progress import Progress
from ops.stack import free_port, redis_binary
from pipeline.clients import redis_client
from pipeline.settings import Settings

REFERENCE_STUDENTS = 5_000_000  # 1,000 schools x 5,000 students
STUDENTS_PER_SCHOOL = 5_000
PARTITIONS = 8
# A partition's offsets after ~100 school days of 10M taps/day over 8 partitions
# (the outcome log is keyed by offset).
BASE_OFFSET = 100 * 10_000_000 // PARTITIONS
BATCH = 2000  # the agent's batch size
CHUNK = 5000  # students per Lua call for the reference schemes
FIELD_BITS = FINGERPRINT_BITS  # what tells two students of one bucket apart
SCHEMES = ("rollcall", "plain", "buckets")

PLAIN_SCRIPT = """
for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[1]) end
return #KEYS
"""
BUCKET_SCRIPT = """
for i = 1, #KEYS do redis.call('HSET', KEYS[i], ARGV[i + 1], ARGV[1]) end
return #KEYS
"""


def today() -> str:
    """The state is per school day and expires after it: a past day would vanish at once."""
    return datetime.now(timezone.utc).date().isoformat()


class PrivateRedis:
    """A redis-server of our own on a free port: no persistence, removed on exit."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = Path(tempfile.mkdtemp(prefix="rollcall-bench-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "PrivateRedis":
        self._proc = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self._dir),
             # rollcall's production setting (docker-compose.yml); the reference schemes are
             # hashes, which it does not touch: they keep Redis's default listpack settings.
             "--set-max-intset-entries", str(INTSET_ENTRIES)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}")
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        self.close()
        raise RuntimeError("redis-server did not listen within 10 s")

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(frozen=True)
class Student:
    school: str
    user: str


def object_ids(count: int, seed: int = 7, per_school: int = STUDENTS_PER_SCHOOL) -> list[Student]:
    """Students as the fleet has them: per school one import (time + process), then a counter.

    That is how ObjectIds created in one roster import look, and it is the
    reference buckets' best case: consecutive ids share all but the last two
    characters, so a bucket fills up to 256 students.
    """
    rng = random.Random(seed)
    students: list[Student] = []
    school_no = 0
    while len(students) < count:
        school_no += 1
        school = f"SCH-{school_no:04d}"
        seconds = rng.randint(1_546_300_800, 1_725_148_800)
        process = rng.getrandbits(40)
        counter = rng.getrandbits(24)
        for _ in range(min(per_school, count - len(students))):
            counter = (counter + 1) & 0xFFFFFF
            students.append(Student(school, f"{seconds:08x}{process:010x}{counter:06x}"))
    return students


async def used_memory(client: aioredis.Redis) -> int:
    info = await client.info("memory")
    return int(info["used_memory"])


def _partition(school: str) -> int:
    return partition_of(school.encode(), PARTITIONS)


OnBatch = Callable[[int], None] | None


class RollcallFill:
    """Drives the store's own atomic decide: every student checks in, later checks out."""

    def __init__(self, client: aioredis.Redis, day: str | None = None, seed: int = 11) -> None:
        self.store = RedisDedupStore(client, ZoneInfo("UTC"), bucket_bits=BUCKET_BITS)
        self.day = day or today()
        self.nexts = {p: BASE_OFFSET for p in range(PARTITIONS)}
        self.rng = random.Random(seed)

    async def __call__(self, students: Sequence[Student], on_batch: OnBatch = None) -> None:
        slots = [self.store.slot(s.school, s.user, self.day) for s in students]
        parts = [_partition(s.school) for s in students]
        for kind in ("checkin", "checkout"):
            order = list(range(len(students)))
            self.rng.shuffle(order)  # taps of all schools interleave at the gates
            for start in range(0, len(order), BATCH):
                batch = []
                for i in order[start:start + BATCH]:
                    p = parts[i]
                    batch.append(TapAt(slots[i], kind, p, self.nexts[p]))
                    self.nexts[p] += 1
                reasons = await self.store.decide(batch, topic="attendance-taps")
                if any(reasons):
                    raise RuntimeError(f"unexpected rejections in the memory run: {set(reasons)}")
                if on_batch:
                    on_batch(len(batch))


def _fill_share(
    url: str, share: list[tuple[str, str]], day: str, nexts: dict[int, int], seed: int, done: Any
) -> None:
    """One process's part of ParallelRollcallFill."""

    def tick(n: int) -> None:
        with done.get_lock():
            done.value += n

    async def run() -> None:
        client = redis_client(Settings(redis_url=url))
        try:
            fill = RollcallFill(client, day, seed)
            fill.nexts.update(nexts)
            await fill([Student(school, user) for school, user in share], tick)
        finally:
            await client.aclose()

    asyncio.run(run())


class ParallelRollcallFill:
    """RollcallFill from several processes, each owning a share of the partitions as workers do.

    One process is limited by redis-py's pure-Python command packing and reply
    parsing, not by Redis; the state written is the same either way.
    """

    def __init__(self, url: str, processes: int, day: str | None = None, seed: int = 11) -> None:
        self.url = url
        self.processes = max(1, processes)
        self.day = day or today()
        self.seed = seed
        self.nexts = {p: BASE_OFFSET for p in range(PARTITIONS)}

    async def __call__(self, students: Sequence[Student], on_batch: OnBatch = None) -> None:
        shares: list[list[tuple[str, str]]] = [[] for _ in range(self.processes)]
        for s in students:
            shares[_partition(s.school) % self.processes].append((s.school, s.user))
        # spawn, not fork: the bench may be starting the stack from another thread meanwhile.
        ctx = multiprocessing.get_context("spawn")
        done = ctx.Value("q", 0)
        procs = [
            ctx.Process(target=_fill_share, args=(self.url, share, self.day, dict(self.nexts), self.seed + k, done))
            for k, share in enumerate(shares) if share
        ]
        for proc in procs:
            proc.start()
        reported = 0
        try:
            while any(proc.is_alive() for proc in procs):
                await asyncio.sleep(0.2)
                if on_batch and done.value > reported:
                    on_batch(done.value - reported)
                    reported = done.value
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
                proc.join()
        if on_batch and done.value > reported:
            on_batch(done.value - reported)
        failed = [proc.exitcode for proc in procs if proc.exitcode != 0]
        if failed:
            raise RuntimeError(f"rollcall fill processes failed with exit codes {failed}")
        for s in students:  # a check-in and a check-out each: the next half continues from here
            self.nexts[_partition(s.school)] += 2


class PlainFill:
    """Reference (a): a key per student and tap type."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.script = client.register_script(PLAIN_SCRIPT)

    async def __call__(self, students: Sequence[Student], on_batch: OnBatch = None) -> None:
        for kind in ("checkin", "checkout"):
            keys = [f"{kind}:{s.user}" for s in students]
            for start in range(0, len(keys), CHUNK):
                await self.script(keys=keys[start:start + CHUNK], args=["true"])
                if on_batch:
                    on_batch(len(keys[start:start + CHUNK]))


class BucketFill:
    """Reference (b): `{type}:{id[:-2]}` hashes with the id's last two characters as fields."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.script = client.register_script(BUCKET_SCRIPT)

    async def __call__(self, students: Sequence[Student], on_batch: OnBatch = None) -> None:
        for kind in ("checkin", "checkout"):
            flat = [f"{kind}:{s.user}" for s in students]
            for start in range(0, len(flat), CHUNK):
                chunk = flat[start:start + CHUNK]
                await self.script(keys=[k[:-2] for k in chunk], args=["true", *(k[-2:] for k in chunk)])
                if on_batch:
                    on_batch(len(chunk))


def false_duplicate_pairs(students: int, bucket_bits: int = BUCKET_BITS, field_bits: int = FIELD_BITS) -> float:
    """Expected pairs of one day's students that share bucket and field: n(n-1)/2 / 2^(bits).

    Such a pair would share one state, so the second student's first check-in
    would be taken for a duplicate. While it is small it is also the
    probability that a day has any such pair at all.
    """
    return students * (students - 1) / 2 / 2 ** (bucket_bits + field_bits)


COLLISION_FORMULA = "n(n-1)/2 / 2^(bucket_bits + field_bits)"


@dataclass(frozen=True)
class SchemeBytes:
    """used_memory growth after half and after all of the students."""

    half: int
    full: int


@dataclass(frozen=True)
class RedisMemory:
    students: int
    schemes: dict[str, SchemeBytes]
    rollcall_keys: int
    seconds: float

    def per_student(self, scheme: str) -> float:
        return self.schemes[scheme].full / self.students

    def marginal(self, scheme: str) -> float:
        """Bytes per student of the second half: the cost once fixed overheads are paid."""
        s = self.schemes[scheme]
        return (s.full - s.half) / (self.students - self.students // 2)

    def extrapolated(self, scheme: str, students: int = REFERENCE_STUDENTS) -> float:
        """Bytes at `students`: measured bytes plus the marginal cost of the rest."""
        return self.schemes[scheme].full + self.marginal(scheme) * (students - self.students)

    def ratio(self, scheme: str) -> float:
        """Against the reference hash buckets, as measured."""
        return self.schemes[scheme].full / self.schemes["buckets"].full

    def ratio_extrapolated(self, scheme: str, students: int = REFERENCE_STUDENTS) -> float:
        return self.extrapolated(scheme, students) / self.extrapolated("buckets", students)


async def measure_memory(
    url: str, students: int, *, show_progress: bool = True, processes: int | None = None
) -> RedisMemory:
    """Fill each scheme into the empty database at `url`; the server must be a private one.

    `processes` drive rollcall's decide in parallel (default: one per core, at most 2).
    """
    processes = processes or min(2, os.cpu_count() or 1)
    started = time.monotonic()
    client = redis_client(Settings(redis_url=url))
    try:
        roster = object_ids(students)
        half = students // 2
        fills: dict[str, Callable[[Sequence[Student], OnBatch], Awaitable[None]]] = {
            "rollcall": ParallelRollcallFill(url, processes),
            "plain": PlainFill(client),
            "buckets": BucketFill(client),
        }
        # Load the Lua scripts first: the script cache is not any scheme's state.
        for warm in (RollcallFill(client), fills["plain"], fills["buckets"]):
            await warm(object_ids(1, seed=99), None)
        sizes: dict[str, SchemeBytes] = {}
        rollcall_keys = 0
        for name, fill in fills.items():
            await client.flushall()
            before = await used_memory(client)
            bar = Progress(2 * students, f"  redis {name}") if show_progress else None
            try:
                await fill(roster[:half], bar.advance if bar else None)
                middle = await used_memory(client)
                await fill(roster[half:], bar.advance if bar else None)
                sizes[name] = SchemeBytes(middle - before, await used_memory(client) - before)
            finally:
                if bar:
                    bar.close()
            if name == "rollcall":
                rollcall_keys = await client.dbsize()
        await client.flushall()
    finally:
        await client.aclose()
    return RedisMemory(students, sizes, rollcall_keys, time.monotonic() - started)
