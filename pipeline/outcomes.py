"""Records on `attendance-events`: a tap with its decision, and the one codec for them."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from pipeline.taps import Tap

ACCEPTED = "accepted"
REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Outcome:
    """A decided tap. `source` is (partition, offset) of the tap record, so
    consumers can recognise an outcome they have already applied."""

    tap: Tap
    date: str
    reason: str | None
    source: tuple[int, int]

    @property
    def accepted(self) -> bool:
        return self.reason is None


def encode_outcome(o: Outcome) -> bytes:
    body = o.tap.as_json()
    body["date"] = o.date
    body["outcome"] = ACCEPTED if o.reason is None else REJECTED
    body["reason"] = o.reason
    body["source"] = list(o.source)
    return orjson.dumps(body)


def decode_outcome(raw: bytes) -> Outcome:
    """Raises ValueError (or KeyError/TypeError) for a record that is not an outcome."""
    body = orjson.loads(raw)
    tap = Tap(
        id=str(body["id"]),
        type=str(body["type"]),
        userId=str(body["userId"]),
        schoolId=str(body["schoolId"]),
        timestamp=int(body["timestamp"]),
        temperature=float(body["temperature"]),
        image=str(body["image"]),
    )
    reason = body["reason"]
    if body["outcome"] not in (ACCEPTED, REJECTED):
        raise ValueError(f"unknown outcome {body['outcome']!r}")
    if (body["outcome"] == ACCEPTED) != (reason is None):
        raise ValueError("outcome and reason disagree")
    partition, offset = body["source"]
    return Outcome(tap, str(body["date"]), reason, (int(partition), int(offset)))
