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
