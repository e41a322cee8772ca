"""send_keyed against the embedded broker: every record where a per-record send puts it, in order, once."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import aiokafka
import pytest
from aiokafka.admin import NewTopic

from pipeline.partitioning import partition_of
from pipeline.produce import send_keyed

pytestmark = pytest.mark.integration
PARTITIONS = 8


async def _produce_and_read(bootstrap: str, records: list[tuple[bytes, bytes]], **producer_options: object):
    topic = f"produce-test-{uuid.uuid4().hex[:8]}"
    admin = aiokafka.admin.AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **producer_options)
    await producer.start()
    try:
        futures = await send_keyed(producer, topic, records)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    consumer = aiokafka.AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got = []
    try:
        while len(got) < len(records):
            batches = await consumer.getmany(timeout_ms=2000)
            if not batches:
                break
            got += [r for part in batches.values() for r in part]
    finally:
        await consumer.stop()
    return futures, got


def test_records_land_in_their_keys_partition_in_order_once(stack) -> None:
    keys = [f"SCH-{i:04d}".encode() for i in range(40)]
    records = [(keys[i % len(keys)], b'{"n":%d}' % i) for i in range(3000)]
    # A small batch size forces full batches to be sent and new ones started.
    futures, got = asyncio.run(_produce_and_read(stack.kafka_bootstrap, records, max_batch_size=4096))

    assert len(futures) > PARTITIONS  # some partitions needed several batches
    assert sorted(r.value for r in got) == sorted(v for _, v in records)
    per_key: dict[bytes, list[bytes]] = defaultdict(list)
    for r in sorted(got, key=lambda r: (r.partition, r.offset)):
        assert r.partition == partition_of(r.key, PARTITIONS), r.key
        per_key[r.key].append(r.value)
    for key in keys:
        assert per_key[key] == [v for k, v in records if k == key]
