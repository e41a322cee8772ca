"""Dedup state in Redis: per school-day hash buckets with an atomic check-and-set.

Key scheme (one day's keys expire by themselves, no cron wipes anything):
    rc:dd:{local date}:{bucket}  ->  hash { fingerprint(7 bytes) : "ci_offset[:co_offset]" }
The bucket and the field come from one 72-bit hash of (school, student): 16
bits pick the bucket (masked to `bucket_bits`) and 56 bits are the field, so
each bucket holds a few hundred students and stays in Redis's compact listpack
encoding. Two students collide only if all of bucket and field agree.

A batch is one read round trip (Lua: HGET every student) and one write round
trip (Lua: compare every state with what was read, then set them all or none).
The compare makes the write safe against a second writer (a worker that lost
its partitions in a rebalance but has not noticed yet): on a mismatch nothing
is written and the batch is decided again from fresh state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import redis.asyncio as aioredis

from agents.rules import Candidate, StudentDay, decide_batch
from pipeline.schoolday import day_end_epoch
from zoneinfo import ZoneInfo

READ_SCRIPT = """
local out = {}
for i = 1, #ARGV, 2 do
  out[#out + 1] = redis.call('HGET', ARGV[i], ARGV[i + 1]) or ''
end
return out
"""

# ARGV: n changes, m expiries, then n x (key, field, expected, new),
# m x (key, expireat), then (partition key, next offset) pairs.
CAS_SCRIPT = """
local n, m = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 0, n - 1 do
  local b = 3 + i * 4
  local cur = redis.call('HGET', ARGV[b], ARGV[b + 1]) or ''
  if cur ~= ARGV[b + 2] then return i + 1 end
end
for i = 0, n - 1 do
  local b = 3 + i * 4
  redis.call('HSET', ARGV[b], ARGV[b + 1], ARGV[b + 3])
end
local e = 3 + n * 4
for j = e, e + 2 * m - 1, 2 do
  redis.call('EXPIREAT', ARGV[j], ARGV[j + 1])
end
for j = e + 2 * m, #ARGV, 2 do
  local cur = tonumber(redis.call('GET', ARGV[j]) or '-1')
  if tonumber(ARGV[j + 1]) > cur then redis.call('SET', ARGV[j], ARGV[j + 1]) end
end
return 0
"""


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
    field: bytes
    day: str


def encode_state(state: StudentDay) -> bytes:
    if state.checkin_offset is None:
        return b""
    if state.checkout_offset is None:
        return b"%d" % state.checkin_offset
    return b"%d:%d" % (state.checkin_offset, state.checkout_offset)


def decode_state(raw: bytes) -> StudentDay:
    if not raw:
        return StudentDay()
    checkin, _, checkout = raw.partition(b":")
    return StudentDay(int(checkin), int(checkout) if checkout else None)


class DedupConflict(RuntimeError):
    """The state changed under us more often than retries allow."""


class RedisDedupStore:
    def __init__(
        self,
        client: aioredis.Redis,
        tz: ZoneInfo,
        *,
        bucket_bits: int = 14,
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

    def slot(self, school_id: str, user_id: str, day: str) -> StudentSlot:
        # Length-prefixed, so no choice of ids can make two students one.
        digest = hashlib.blake2b(
            f"{len(school_id)}:{school_id}{user_id}".encode(), digest_size=9
        ).digest()
        bucket = int.from_bytes(digest[:2], "big") & self._mask
        key = b"%s:%s:%04x" % (self._prefix, day.encode(), bucket)
        return StudentSlot(key, digest[2:], day)

    def expire_at(self, day: str) -> int:
        """Late uploads (up to MAX_TAP_AGE_DAYS) must still find the day's state."""
        return day_end_epoch(day, self._tz) + self._keep_s

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

    async def next_offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int | None]:
        """Per partition, the offset after the last one decided (None: nothing decided yet)."""
        if not partitions:
            return {}
        raw = await self._redis.mget([self._next_key(topic, p) for p in partitions])
        return {p: None if r is None else int(r) for p, r in zip(partitions, raw)}

    async def decide(
        self,
        taps: Sequence[tuple[StudentSlot, str, int]],
        *,
        topic: str = "",
        next_offsets: dict[int, int] | None = None,
        attempts: int = 5,
    ) -> list[str | None]:
        """Decide a batch of (slot, tap type, offset) atomically; one reason per tap.

        `next_offsets` (partition -> offset after the batch) is recorded in the
        same atomic write, so "decided up to here" never runs ahead of the states.
        """
        slots = list({t[0]: None for t in taps})
        nexts = [(self._next_key(topic, p), o) for p, o in (next_offsets or {}).items()]
        for _ in range(attempts):
            flat: list[bytes] = []
            for s in slots:
                flat += (s.key, s.field)
            raw = await self._read(args=flat) if flat else []
            known = {s: decode_state(r) for s, r in zip(slots, raw)}
            before = {s: r for s, r in zip(slots, raw)}
            reasons, changed = decide_batch(
                (Candidate(s, kind, off) for s, kind, off in taps), known
            )
            if not changed and not nexts:
                return reasons
            expiries: dict[bytes, int] = {}
            for s in changed:
                expiries.setdefault(s.key, self.expire_at(s.day))
            args: list[bytes | int] = [len(changed), len(expiries)]
            for s, state in changed.items():
                args += (s.key, s.field, before[s], encode_state(state))
            for key, at in expiries.items():
                args += (key, at)
            for key, offset in nexts:
                args += (key, offset)
            if await self._cas(args=args) == 0:
                return reasons
        raise DedupConflict(f"dedup state kept changing during {attempts} attempts")
