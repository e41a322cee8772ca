"""Records on `attendance-dlq`: the original bytes and why they could not be processed."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any, Mapping

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
    replay_of: str | None = None

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
    headers: Mapping[str, bytes] | None = None,
    now_ms: int | None = None,
) -> DeadLetter:
    """A failure of one record; a replayed record carries its history in headers."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    history = replay_history(headers or {})
    return DeadLetter(
        topic, partition, offset, key, value, stage,
        type(error).__name__, str(error)[:2000],
        history.attempts + 1, history.first_failed_ms or now, now, history.replay_of,
    )


ATTEMPTS_HEADER = "rollcall-attempts"
FIRST_FAILED_HEADER = "rollcall-first-failed"
REPLAY_OF_HEADER = "rollcall-replay-of"


@dataclass(frozen=True, slots=True)
class ReplayHistory:
    attempts: int = 0
    first_failed_ms: int | None = None
    replay_of: str | None = None


def replay_headers(*, attempts: int, first_failed_ms: int, record_id: str) -> list[tuple[str, bytes]]:
    """Headers a replayed record carries, so a repeat failure raises the attempt count."""
    return [
        (ATTEMPTS_HEADER, str(attempts).encode()),
        (FIRST_FAILED_HEADER, str(first_failed_ms).encode()),
        (REPLAY_OF_HEADER, record_id.encode()),
    ]


def replay_history(headers: Mapping[str, bytes]) -> ReplayHistory:
    """Tolerant: a header another client set badly is ignored, never fatal."""
    def number(name: str) -> int | None:
        raw = headers.get(name)
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            return None

    replay_of = headers.get(REPLAY_OF_HEADER)
    first = number(FIRST_FAILED_HEADER)
    return ReplayHistory(
        attempts=max(0, number(ATTEMPTS_HEADER) or 0),
        first_failed_ms=first if first is not None and first > 0 else None,
        replay_of=replay_of.decode("utf-8", "replace") if replay_of else None,
    )


def headers_dict(headers: Any) -> dict[str, bytes]:
    """Kafka headers come as a list of pairs (or a mapping from Faust); later ones win."""
    if not headers:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {str(k): bytes(v) if v is not None else b"" for k, v in items}


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
        "replayOf": d.replay_of,
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
        body.get("replayOf"),
    )


def replay_key(key: bytes | None, value: bytes | None) -> bytes | None:
    """The key a dead letter is re-published under: its tap's school when the value names one.

    A tap dead-lettered for its key or partition (pipeline.partitioning) then
    lands where it belongs; anything else keeps the key it came with.
    """
    try:
        body = orjson.loads(value) if value else None
    except orjson.JSONDecodeError:
        return key
    school = body.get("schoolId") if isinstance(body, dict) else None
    return school.encode() if isinstance(school, str) and school else key
