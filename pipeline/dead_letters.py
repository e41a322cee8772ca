"""Records on `attendance-dlq`: the original bytes and why they could not be processed."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    stage: str
    error_type: str
    error_message: str
    attempts: int
    first_failed_ms: int
    last_failed_ms: int

    @property
    def record_id(self) -> str:
        """Deterministic: a re-delivered record maps to the same document."""
        return f"{self.topic}:{self.partition}:{self.offset}"


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def dead_letter_for(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    stage: str,
    error: BaseException,
    attempts: int = 1,
    now_ms: int | None = None,
) -> DeadLetter:
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    return DeadLetter(
        topic, partition, offset, key, value, stage,
        type(error).__name__, str(error)[:2000], attempts, now, now,
    )


def encode_dead_letter(d: DeadLetter) -> bytes:
    body: dict[str, Any] = {
        "topic": d.topic,
        "partition": d.partition,
        "offset": d.offset,
        "key": _b64(d.key),
        "value": _b64(d.value),
        "error": {"stage": d.stage, "type": d.error_type, "message": d.error_message},
        "attempts": d.attempts,
        "firstFailedAt": d.first_failed_ms,
        "lastFailedAt": d.last_failed_ms,
    }
    return orjson.dumps(body)


def decode_dead_letter(raw: bytes) -> DeadLetter:
    body = orjson.loads(raw)
    err = body["error"]
    return DeadLetter(
        str(body["topic"]), int(body["partition"]), int(body["offset"]),
        _unb64(body["key"]), _unb64(body["value"]),
        str(err["stage"]), str(err["type"]), str(err["message"]),
        int(body["attempts"]), int(body["firstFailedAt"]), int(body["lastFailedAt"]),
    )
