"""Replay against the embedded stack: dead letters go back in the order they had on the topic."""

from __future__ import annotations

import asyncio
import uuid

import aiokafka
import orjson
import pytest
from aiokafka.admin import NewTopic
from pymongo import MongoClient

from conftest import RunningStack
from ops import dlq
from pipeline.dead_letters import dead_letter_for
from pipeline.documents import REPLAYED, dead_letter_doc
from pipeline.settings import Settings
from pipeline.taps import InvalidTap

pytestmark = pytest.mark.integration


async def _read_all(bootstrap: str, topic: str, n: int) -> list[bytes]:
    consumer = aiokafka.AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got: list[bytes] = []
    try:
        while len(got) < n:
            batches = await consumer.getmany(timeout_ms=2000)
            if not batches:
                break
            got += [r.value for part in batches.values() for r in sorted(part, key=lambda r: r.offset)]
    finally:
        await consumer.stop()
    return got


async def _create_topic(bootstrap: str, topic: str) -> None:
    admin = aiokafka.admin.AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()


def test_replay_follows_topic_order_across_pages_not_the_text_of_the_id(stack: RunningStack) -> None:
    """Offsets 9, 10, 99, 100 of one partition: as text the _ids sort 10, 100, 9, 99."""
    topic, db = f"replay-order-{uuid.uuid4().hex[:8]}", f"replay_{uuid.uuid4().hex[:8]}"
    settings = Settings(kafka_broker=f"kafka://{stack.kafka_bootstrap}", mongo_url=stack.mongo_url,
                        mongo_db=db, taps_topic=topic, replay_batch=2, dlq_replay_cron="")
    positions = [(0, 100), (1, 5), (0, 9), (0, 99), (0, 10)]
    letters = MongoClient(stack.mongo_url)[db].dead_letters
    for partition, offset in positions:
        value = orjson.dumps({"schoolId": "S-1", "n": f"{partition}:{offset}"})
        letter = dead_letter_for(topic=topic, partition=partition, offset=offset, key=b"S-1", value=value,
                                 stage="dedup.decode", error=InvalidTap([]))
        letters.insert_one(dead_letter_doc(letter, max_attempts=3))
    asyncio.run(_create_topic(stack.kafka_bootstrap, topic))

    result = asyncio.run(dlq.replay(settings, progress=False))

    assert (result.replayed, result.batches) == (5, 3)
    sent = [orjson.loads(v)["n"] for v in asyncio.run(_read_all(stack.kafka_bootstrap, topic, 5))]
    assert sent == ["0:9", "0:10", "0:99", "0:100", "1:5"]
    assert letters.count_documents({"status": REPLAYED}) == 5
