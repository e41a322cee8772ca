"""The one place that builds clients for Kafka, Redis and MongoDB from the settings."""

from __future__ import annotations

import aiokafka
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient

from pipeline.partitioning import kafka_partitioner
from pipeline.settings import Settings


def redis_client(settings: Settings) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.redis_url, socket_timeout=5, socket_connect_timeout=3, health_check_interval=30
    )


def mongo_client(settings: Settings) -> AsyncMongoClient:
    return AsyncMongoClient(settings.mongo_url, serverSelectionTimeoutMS=3000, tz_aware=True)


def kafka_producer(settings: Settings, **overrides: object) -> aiokafka.AIOKafkaProducer:
    """acks=all and a short linger: concurrent requests share broker round trips."""
    options: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "acks": "all",
        "linger_ms": 5,
        "request_timeout_ms": int(settings.produce_timeout_s * 1000),
        "max_batch_size": 256 * 1024,
        "partitioner": kafka_partitioner,
    }
    options.update(overrides)
    return aiokafka.AIOKafkaProducer(**options)


def kafka_admin(settings: Settings) -> aiokafka.admin.AIOKafkaAdminClient:
    return aiokafka.admin.AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)


def kafka_consumer(settings: Settings, topic: str, group_id: str) -> aiokafka.AIOKafkaConsumer:
    """Manual commits: a sink commits only what its store acknowledged."""
    return aiokafka.AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(settings.session_timeout_s * 1000),
        heartbeat_interval_ms=int(max(1.0, settings.session_timeout_s / 5) * 1000),
        max_poll_records=2000,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
