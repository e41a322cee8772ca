"""The tap as gate devices send it: validation rules and the one codec for taps.

Everything here is pure: the ingress and the dedup agent both call it, so a
record that reaches the topic by another route (a replay, `kcat`) is judged by
exactly the rules the ingress applies.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any

import orjson

CHECKIN = "checkin"
CHECKOUT = "checkout"
TAP_TYPES = (CHECKIN, CHECKOUT)
ID_MAX = 64
IMAGE_MAX = 2048
TEMP_MIN, TEMP_MAX = 30.0, 45.0
FUTURE_SLACK_MS = 5 * 60 * 1000
DAY_MS = 24 * 3600 * 1000
TIMESTAMP_MAX = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: beyond it there is no calendar day
SECONDS_LOOK_BELOW = 100_000_000_000  # as milliseconds that is March 1973; as seconds, year 5138
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")  # an id with a NUL or a newline is a broken reader
DEVICE_FIELDS = ("type", "userId", "schoolId", "timestamp", "temperature", "image")


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(frozen=True, slots=True)
class Tap:
    id: str
    type: str
    userId: str
    schoolId: str
    timestamp: int
    temperature: float
    image: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "userId": self.userId,
            "schoolId": self.schoolId,
            "timestamp": self.timestamp,
            "temperature": self.temperature,
            "image": self.image,
        }


class InvalidTap(ValueError):
    """A record that is not a tap; carries every field error, not just the first."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    if _is_int(value):
        return abs(value) < 10**6  # a float conversion of a huge int would overflow
    return isinstance(value, float) and math.isfinite(value)


def _check_id(body: dict[str, Any], name: str, errors: list[FieldError]) -> None:
    value = body[name]
    if not isinstance(value, str):
        errors.append(FieldError(name, "must be a string"))
    elif not 1 <= len(value) <= ID_MAX:
        errors.append(FieldError(name, f"must be 1 to {ID_MAX} characters"))
    elif value.isspace() or CONTROL_CHARACTERS.search(value):
        errors.append(FieldError(name, "must not be blank or hold control characters"))


def field_errors(
    body: Any, *, now_ms: int | None, max_age_days: int, with_id: bool = False
) -> list[FieldError]:
    """Every reason `body` is not a valid device tap; empty when it is one.

    `now_ms=None` skips the age window: records already accepted by the
    ingress are not re-judged against a later clock. `with_id` expects the
    server-assigned tap id that records on the topic carry.
    """
    if not isinstance(body, dict):
        return [FieldError("body", "must be a JSON object")]
    errors: list[FieldError] = []
    for name in DEVICE_FIELDS:
        if name not in body:
            errors.append(FieldError(name, "is required"))
    for name in body:
        if name not in DEVICE_FIELDS and not (with_id and name == "id"):
            errors.append(FieldError(str(name), "is not a known field"))
    if with_id:
        tap_id = body.get("id")
        if not isinstance(tap_id, str) or not 1 <= len(tap_id) <= ID_MAX:
            errors.append(FieldError("id", f"must be a string of 1 to {ID_MAX} characters"))
    if "type" in body and body["type"] not in TAP_TYPES:
        errors.append(FieldError("type", "must be 'checkin' or 'checkout'"))
    for name in ("userId", "schoolId"):
        if name in body:
            _check_id(body, name, errors)
    if "timestamp" in body:
        ts = body["timestamp"]
        if not _is_int(ts):
            errors.append(FieldError("timestamp", "must be an integer (epoch milliseconds)"))
        elif ts <= 0:
            errors.append(FieldError("timestamp", "must be greater than 0"))
        elif ts > TIMESTAMP_MAX:
            errors.append(FieldError("timestamp", "is beyond the year 9999 (epoch milliseconds expected)"))
        elif now_ms is not None and ts > now_ms + FUTURE_SLACK_MS:
            errors.append(FieldError("timestamp", "is more than 5 minutes in the future"))
        elif now_ms is not None and ts < now_ms - max_age_days * DAY_MS:
            hint = "; it looks like epoch seconds, send milliseconds" if ts < SECONDS_LOOK_BELOW else ""
            errors.append(FieldError("timestamp", f"is older than {max_age_days} days{hint}"))
    if "temperature" in body:
        temp = body["temperature"]
        if not _is_number(temp):
            errors.append(FieldError("temperature", "must be a number (degrees Celsius)"))
        elif not TEMP_MIN <= temp <= TEMP_MAX:
            errors.append(FieldError("temperature", f"must be between {TEMP_MIN} and {TEMP_MAX}"))
    if "image" in body:
        image = body["image"]
        if not isinstance(image, str):
            errors.append(FieldError("image", "must be a string"))
        elif len(image) > IMAGE_MAX:
            errors.append(FieldError("image", f"must be at most {IMAGE_MAX} characters"))
    return errors


def new_tap_id() -> str:
    """128 random bits as 32 hex digits (uuid4's form without its version bits, a fifth of its cost)."""
    return os.urandom(16).hex()


def tap_from_body(body: Any, *, now_ms: int, max_age_days: int) -> Tap:
    """A device body as accepted by the ingress, with a fresh tap id."""
    errors = field_errors(body, now_ms=now_ms, max_age_days=max_age_days)
    if errors:
        raise InvalidTap(errors)
    return _tap(body, new_tap_id())


def _tap(body: dict[str, Any], tap_id: str) -> Tap:
    return Tap(
        id=tap_id,
        type=body["type"],
        userId=body["userId"],
        schoolId=body["schoolId"],
        timestamp=body["timestamp"],
        temperature=float(body["temperature"]),
        image=body["image"],
    )


def encode_tap(tap: Tap) -> bytes:
    return orjson.dumps(tap.as_json())


def decode_tap(raw: bytes | None) -> Tap:
    """A record from `attendance-taps`; raises InvalidTap for anything else."""
    if raw is None:
        raise InvalidTap([FieldError("body", "record has no value")])
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidTap([FieldError("body", f"is not JSON: {exc}")]) from None
    errors = field_errors(body, now_ms=None, max_age_days=0, with_id=True)
    if errors:
        raise InvalidTap(errors)
    return _tap(body, body["id"])
