"""Dedup state in Redis: per school-day integer-set buckets, a per-partition outcome log,
and an atomic check-and-set for whole batches.

Key scheme (everything expires by itself, no cron wipes anything):
    rc:dd:{local date}:{bucket}        set of 63-bit integers: fingerprint * 4 + presence
    rc:dd:log:{topic}:{p}:{chunk}      string of 2-bit outcome codes, one per offset
    rc:dd:next:{topic}:{p}             offset after the partition's last decided record
The bucket and the fingerprint come from one hash of (school, student): 12 bits
pick the bucket and 61 bits are the fingerprint, so at the reference 5 million
students a day each bucket holds about 1,200 as one of Redis's compact integer
sets (8 bytes a student; Redis must allow that many: `INTSET_ENTRIES`). Two
students collide only if all 73 bits agree. The log costs 2 bits a tap and
makes a record read again after a crash get the outcome it got the first time;
each chunk is created at its full size, because a string grown bit by bit
would be over-allocated up to twice.

A batch is one read round trip (Lua: the partitions' marks, every student's
presence, the logged outcome of every record) and one write round trip (Lua:
compare the marks and every state with what was read, then write them all or
nothing). The compare makes the write safe against a second writer (a worker
that lost its partitions in a rebalance but has not noticed yet): on a
mismatch nothing is written and the batch is decided again from fresh state.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import redis.asyncio as aioredis

from agents.rules import BatchDecision, Candidate, Logged, Presence, decide_batch
from pipeline.schoolday import day_end_epoch
from pipeline.settings import Settings
from zoneinfo import ZoneInfo

log = logging.getLogger("rollcall.dedup")

FINGERPRINT_BITS = 61  # fingerprint * 4 + presence stays a positive 64-bit integer
BUCKET_BITS = 12
# Redis's set-max-intset-entries must hold the fullest bucket, or it turns into a
# hash table (still correct, five times the bytes): 2,048 covers 8 million students a day.
INTSET_ENTRIES = 2048
# Offsets per log key: 16,368 bytes of 2-bit codes, which with Redis's string
# header still fits jemalloc's 16 KiB size class (2^16 offsets would take 20 KiB).
LOG_CHUNK_OFFSETS = 65_472
LOG_CHUNK_BYTES = LOG_CHUNK_OFFSETS // 4

# ARGV: p marks, s students, l log slots, then p next keys,
# s x (key, checked-in member, checked-out member), l x (log key, index).
READ_SCRIPT = """
local p, s, l = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
local b = 4
for i = 1, p do
  out[#out + 1] = redis.call('GET', ARGV[b]) or ''
  b = b + 1
end
for i = 1, s do
  if redis.call('SISMEMBER', ARGV[b], ARGV[b + 2]) == 1 then out[#out + 1] = 2
  elseif redis.call('SISMEMBER', ARGV[b], ARGV[b + 1]) == 1 then out[#out + 1] = 1
  else out[#out + 1] = 0 end
  b = b + 3
end
for i = 1, l do
  out[#out + 1] = redis.call('BITFIELD', ARGV[b], 'GET', 'u2', '#' .. ARGV[b + 1])[1]
  b = b + 2
end
return out
"""

# ARGV: ttl, p marks, s states, e expiries, l log codes, then
# p x (next key, expected or '', new), s x (key, in member, out member, expected, new),
# e x (state key, expireat), l x (log key, index, code).
# Returns 0 when written, 1 when a mark or a state changed since it was read.
CAS_SCRIPT = """
local ttl, p, s, e, l = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local b = 6
for i = 1, p do
  if (redis.call('GET', ARGV[b]) or '') ~= ARGV[b + 1] then return 1 end
  b = b + 3
end
for i = 1, s do
  local cur = 0
  if redis.call('SISMEMBER', ARGV[b], ARGV[b + 2]) == 1 then cur = 2
  elseif redis.call('SISMEMBER', ARGV[b], ARGV[b + 1]) == 1 then cur = 1 end
  if cur ~= tonumber(ARGV[b + 3]) then return 1 end
  b = b + 5
end
b = 6
for i = 1, p do
  redis.call('SET', ARGV[b], ARGV[b + 2])
  b = b + 3
end
for i = 1, s do
  local new = ARGV[b + 4]
  if new == '2' then
    redis.call('SREM', ARGV[b], ARGV[b + 1])
    redis.call('SADD', ARGV[b], ARGV[b + 2])
  elseif new == '1' then
    redis.call('SREM', ARGV[b], ARGV[b + 2])
    redis.call('SADD', ARGV[b], ARGV[b + 1])
  end
  b = b + 5
end
for i = 1, e do
  redis.call('EXPIREAT', ARGV[b], ARGV[b + 1])
  b = b + 2
end
local touched = {}
for i = 1, l do
  if not touched[ARGV[b]] then
    touched[ARGV[b]] = true
    if redis.call('EXISTS', ARGV[b]) == 0 then
      redis.call('SETRANGE', ARGV[b], CHUNK_BYTES - 1, '\\0')
    end
    redis.call('EXPIRE', ARGV[b], ttl)
  end
  redis.call('BITFIELD', ARGV[b], 'SET', 'u2', '#' .. ARGV[b + 1], ARGV[b + 2])
  b = b + 3
end
return 0
""".replace("CHUNK_BYTES", str(LOG_CHUNK_BYTES))


# ARGV: ttl seconds, then (tap id, "partition:offset") pairs. 1 = first delivery
# of this tap id (or the same record read again after a crash), 0 = a copy.
FIRST_DELIVERY_SCRIPT = """
local out = {}
for i = 2, #ARGV, 2 do
  local key = 'rc:rp:' .. ARGV[i]
  if redis.call('SET', key, ARGV[i + 1], 'NX', 'EX', ARGV[1]) then
    out[#out + 1] = 1
  elseif redis.call('GET', key) == ARGV[i + 1] then
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class StudentSlot:
    """Where one student's state for one school day lives."""

    key: bytes
    fingerprint: int
    day: str

    def member(self, presence: Presence) -> bytes:
        """The set member that records `presence` (ABSENT has none)."""
        return b"%d" % (self.fingerprint * 4 + int(presence))


@dataclass(frozen=True, slots=True)
class TapAt:
    """A tap to decide: whose day, which type, and its place in the topic."""

    slot: StudentSlot
    tap_type: str
    partition: int
    offset: int


class DedupConflict(RuntimeError):
    """The state changed under us more often than retries allow."""


class RedisDedupStore:
    def __init__(
        self,
        client: aioredis.Redis,
        tz: ZoneInfo,
        *,
        bucket_bits: int = BUCKET_BITS,
        keep_days: int = 8,
        prefix: str = "rc:dd",
    ) -> None:
        if not 1 <= bucket_bits <= 16:
            raise ValueError("bucket_bits must be 1 to 16")
        self._redis = client
        self._tz = tz
        self._mask = (1 << bucket_bits) - 1
        self._keep_s = keep_days * 86400
        self._prefix = prefix.encode()
        self._read = client.register_script(READ_SCRIPT)
        self._cas = client.register_script(CAS_SCRIPT)
        self._first = client.register_script(FIRST_DELIVERY_SCRIPT)

    @classmethod
    def for_settings(cls, client: aioredis.Redis, settings: Settings) -> "RedisDedupStore":
        """The agent's store: a day's state outlives the day by the oldest tap accepted, plus one."""
        return cls(client, settings.tz, keep_days=settings.max_tap_age_days + 1)

    def slot(self, school_id: str, user_id: str, day: str) -> StudentSlot:
        # Length-prefixed, so no choice of ids can make two students one.
        digest = hashlib.blake2b(
            f"{len(school_id)}:{school_id}{user_id}".encode(), digest_size=10
        ).digest()
        bucket = int.from_bytes(digest[:2], "big") & self._mask
        fingerprint = int.from_bytes(digest[2:], "big") >> (64 - FINGERPRINT_BITS)
        key = b"%s:%s:%04x" % (self._prefix, day.encode(), bucket)
        return StudentSlot(key, fingerprint, day)

    def expire_at(self, day: str, now_s: float = 0) -> int:
        """Late uploads (up to MAX_TAP_AGE_DAYS) must still find the day's state.

        Never sooner than the keep period from `now_s` (the write): a tap of an
        older day that reached the topic another way (a replay, another
        producer) would otherwise write state that is gone at once, and the
        student's next tap of that day would count again.
        """
        return max(day_end_epoch(day, self._tz), int(now_s)) + self._keep_s

    async def first_deliveries(self, taps: Sequence[tuple[str, int, int]]) -> list[bool]:
        """For replayed records (tap id, partition, offset): False for a second copy of a tap.

        Replaying a dead letter twice must not change any count, and a copy has
        another offset, so offsets alone cannot tell it from a new tap.
        """
        if not taps:
            return []
        args: list[str | int] = [self._keep_s + 86400]
        for tap_id, partition, offset in taps:
            args += (tap_id, f"{partition}:{offset}")
        return [bool(x) for x in await self._first(args=args)]

    def _next_key(self, topic: str, partition: int) -> bytes:
        return b"%s:next:%s:%d" % (self._prefix, topic.encode(), partition)

    def _log_slot(self, topic: str, partition: int, offset: int) -> tuple[bytes, int]:
        chunk, index = divmod(offset, LOG_CHUNK_OFFSETS)
        return b"%s:log:%s:%d:%d" % (self._prefix, topic.encode(), partition, chunk), index

    async def next_offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int | None]:
        """Per partition, the offset after the last one decided (None: nothing decided yet)."""
        if not partitions:
            return {}
        raw = await self._redis.mget([self._next_key(topic, p) for p in partitions])
        return {p: None if r is None else int(r) for p, r in zip(partitions, raw)}

    async def intset_limit_problem(self) -> str | None:
        """Why the buckets may not stay compact on this Redis (None: they will, or it cannot tell)."""
        try:
            found = await self._redis.config_get("set-max-intset-entries")
        except Exception:  # CONFIG disabled (managed Redis) or Redis unreachable: nothing to say
            return None
        limit = int(next(iter(found.values()), 0) or 0)
        if limit >= INTSET_ENTRIES:
            return None
        return (f"Redis set-max-intset-entries is {limit}; dedup buckets above that size take about five "
                f"times the memory. Set it to {INTSET_ENTRIES} (see docker-compose.yml).")

    async def presence(self, slots: Sequence[StudentSlot]) -> list[Presence]:
        """The stored state of each slot (for checks and tools; the agent reads inside decide)."""
        if not slots:
            return []
        args: list[bytes | int] = [0, len(slots), 0]
        for s in slots:
            args += (s.key, s.member(Presence.CHECKED_IN), s.member(Presence.CHECKED_OUT))
        return [Presence(int(x)) for x in await self._read(args=args)]

    async def decide(
        self,
        taps: Sequence[TapAt],
        *,
        topic: str,
        through: Mapping[int, int] | None = None,
        attempts: int = 5,
    ) -> list[str | None]:
        """Decide a batch atomically; one reason per tap (None: it counts).

        The partitions' decided-up-to marks move in the same atomic write as
        the states and the logged outcomes, so a mark never runs ahead of them.
        `through` (partition -> offset after the batch's last record) moves a
        mark past records that were handled without a decision (dead-lettered,
        or a replayed copy), so the next batch does not take them for a gap.
        """
        through = dict(through or {})
        if not taps and not through:
            return []
        partitions = sorted({t.partition for t in taps} | set(through))
        slots = list({t.slot: None for t in taps})
        log_slots = [self._log_slot(topic, t.partition, t.offset) for t in taps]
        read_args: list[bytes | int] = [len(partitions), len(slots), len(log_slots)]
        read_args += [self._next_key(topic, p) for p in partitions]
        for s in slots:
            read_args += (s.key, s.member(Presence.CHECKED_IN), s.member(Presence.CHECKED_OUT))
        for key, index in log_slots:
            read_args += (key, index)
        candidates = [Candidate(t.slot, t.tap_type, t.partition, t.offset) for t in taps]
        for _ in range(attempts):
            raw = await self._read(args=read_args)
            marks_raw = raw[: len(partitions)]
            marks = {p: None if not r else int(r) for p, r in zip(partitions, marks_raw)}
            known = {s: Presence(int(r)) for s, r in zip(slots, raw[len(partitions): len(partitions) + len(slots)])}
            codes = raw[len(partitions) + len(slots):]
            logged = {(t.partition, t.offset): Logged(int(c)) for t, c in zip(taps, codes)}
            decision = decide_batch(candidates, known, marks, logged)
            for p, after in through.items():
                if (marks[p] is None or after > marks[p]) and after > decision.nexts.get(p, -1):
                    decision.nexts[p] = after
            for c in decision.unlogged:
                log.warning("partition %d offset %d was decided before but its outcome is no longer "
                            "logged; judged again against the current state", c.partition, c.offset)
            if not decision.nexts:
                return decision.reasons
            if await self._cas(args=self._write_args(topic, partitions, marks_raw, known, decision)) == 0:
                return decision.reasons
        raise DedupConflict(f"dedup state kept changing during {attempts} attempts")

    def _write_args(
        self,
        topic: str,
        partitions: list[int],
        marks_raw: list[bytes | str],
        known: dict[StudentSlot, Presence],
        decision: BatchDecision,
    ) -> list[bytes | int | str]:
        marks = [(p, r) for p, r in zip(partitions, marks_raw) if p in decision.nexts]
        expiries: dict[bytes, int] = {}
        now_s = time.time()
        by_day: dict[str, int] = {}  # one calendar computation per day, not per student
        for s in decision.changed:
            if s.key not in expiries:
                if s.day not in by_day:
                    by_day[s.day] = self.expire_at(s.day, now_s)
                expiries[s.key] = by_day[s.day]
        args: list[bytes | int | str] = [
            self._keep_s, len(marks), len(decision.changed), len(expiries), len(decision.logged),
        ]
        for p, r in marks:
            args += (self._next_key(topic, p), r or b"", decision.nexts[p])
        for s, state in decision.changed.items():
            args += (s.key, s.member(Presence.CHECKED_IN), s.member(Presence.CHECKED_OUT),
                     int(known[s]), int(state))
        for key, at in expiries.items():
            args += (key, at)
        for (p, offset), code in decision.logged.items():
            key, index = self._log_slot(topic, p, offset)
            args += (key, index, int(code))
        return args
