"""Which partition a school's records go to: Kafka's default partitioner, remembered.

Taps, outcomes and the school-day table are all keyed by school and must
agree on its partition, so every producer and the dashboard's routing use this
one function. It is murmur2 exactly as Kafka's and aiokafka's default
partitioners compute it; aiokafka's is pure Python and ran once per record,
while a fleet has a few thousand schools: the answer is cached per key.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

from aiokafka.partitioner import DefaultPartitioner, murmur2


@lru_cache(maxsize=65_536)
def partition_of(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def kafka_partitioner(key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
    """aiokafka's `partitioner` hook: the default partitioner's answer, from the cache."""
    if key is None:  # never for rollcall's records; keep the default's behaviour anyway
        return DefaultPartitioner()(key, all_partitions, available)
    return all_partitions[partition_of(key, len(all_partitions))]


class MisroutedTap(ValueError):
    """A tap on the wrong key or partition: counting it would split its school across partitions."""


def check_routing(key: bytes | None, partition: int, school_id: str, partitions: int) -> None:
    """Raise MisroutedTap unless the record sits where rollcall's own producers would put it.

    Another client (kcat's default partitioner is not Kafka's) can put a school's
    tap in another partition; the school's counters and its students' order
    live in one partition only, so such a record is dead-lettered, and replay
    re-publishes it under its school's key.
    """
    want = school_id.encode()
    if key != want:
        raise MisroutedTap(f"record key {key!r} is not the tap's schoolId {school_id!r}")
    home = partition_of(want, partitions)
    if partition != home:
        raise MisroutedTap(f"school {school_id!r} belongs in partition {home} (Kafka's default "
                           f"partitioner over {partitions}), not {partition}")
