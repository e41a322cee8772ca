"""The one settings object: every knob comes from the environment with a working default."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class SettingsError(ValueError):
    """A configuration value is unusable; raised at start-up, never mid-stream."""


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _number(
    name: str, default: str, kind: type, minimum: float, maximum: float = float("inf")
) -> int | float:
    raw = _env(name, default)
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a {kind.__name__}") from None
    if not math.isfinite(value):
        raise SettingsError(f"{name}={raw!r} must be a finite number")
    if not minimum <= value <= maximum:
        raise SettingsError(f"{name}={raw!r} must be from {minimum} to {maximum}")
    return value


@dataclass(frozen=True)
class Settings:
    kafka_broker: str = "kafka://127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    mongo_url: str = "mongodb://127.0.0.1:27017"
    mongo_db: str = "rollcall"
    ingress_port: int = 8080
    web_port: int = 6066
    topic_partitions: int = 8
    school_tz: str = "UTC"
    fever_threshold: float = 38.0
    max_tap_age_days: int = 7
    data_dir: str = "./worker-data"
    taps_topic: str = "attendance-taps"
    events_topic: str = "attendance-events"
    dlq_topic: str = "attendance-dlq"
    batch_size: int = 2000
    batch_within_s: float = 0.05
    produce_timeout_s: float = 3.0
    session_timeout_s: float = 10.0
    fetch_max_wait_ms: int = 50
    dlq_max_attempts: int = 3
    replay_batch: int = 500
    dlq_replay_cron: str = "0 * * * *"
    worker_url: str = ""
    batch_max_taps: int = 1000
    batch_max_bytes: int = 4 * 1024 * 1024  # 1,000 taps with 2,048-character image URLs fit
    tz: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "tz", ZoneInfo(self.school_tz))
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise SettingsError(f"SCHOOL_TZ={self.school_tz!r} is not an IANA time zone") from None

    @property
    def kafka_bootstrap(self) -> str:
        """The broker list without Faust's URL scheme, for plain aiokafka clients."""
        return ",".join(
            part.split("://", 1)[-1] for part in self.kafka_broker.split(",") if part.strip()
        )

    @classmethod
    def from_env(cls) -> "Settings":
        broker = _env("KAFKA_BROKER", cls.kafka_broker)
        if "://" not in broker:
            broker = "kafka://" + broker
        return cls(
            kafka_broker=broker,
            redis_url=_env("REDIS_URL", cls.redis_url),
            mongo_url=_env("MONGO_URL", cls.mongo_url),
            mongo_db=_env("MONGO_DB", cls.mongo_db),
            ingress_port=int(_number("INGRESS_PORT", "8080", int, 1, 65535)),
            web_port=int(_number("WEB_PORT", "6066", int, 1, 65535)),
            topic_partitions=int(_number("TOPIC_PARTITIONS", "8", int, 1)),
            school_tz=_env("SCHOOL_TZ", "UTC"),
            fever_threshold=float(_number("FEVER_THRESHOLD", "38.0", float, 0)),
            max_tap_age_days=int(_number("MAX_TAP_AGE_DAYS", "7", int, 1)),
            data_dir=_env("WORKER_DATA_DIR", cls.data_dir),
            batch_size=int(_number("BATCH_SIZE", "2000", int, 1)),
            produce_timeout_s=float(_number("PRODUCE_TIMEOUT_S", "3", float, 0.1)),
            session_timeout_s=float(_number("BROKER_SESSION_TIMEOUT_S", "10", float, 1)),
            fetch_max_wait_ms=int(_number("FETCH_MAX_WAIT_MS", "50", int, 1, 30_000)),
            dlq_max_attempts=int(_number("DLQ_MAX_ATTEMPTS", "3", int, 1)),
            dlq_replay_cron=os.environ.get("DLQ_REPLAY_CRON", "0 * * * *").strip(),
            worker_url=_env("WORKER_URL", ""),
            batch_max_taps=int(_number("INGRESS_BATCH_MAX_TAPS", "1000", int, 1, 100_000)),
            batch_max_bytes=int(_number("INGRESS_BATCH_MAX_BYTES", str(4 * 1024 * 1024), int, 1024)),
        )
