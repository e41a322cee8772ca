"""Unit tests for the tap rules and codec (pipeline.taps): the ingress HTTP contract."""

from __future__ import annotations

import math
import re
from typing import Any

import orjson
import pytest

from pipeline.taps import (
    FieldError,
    InvalidTap,
    Tap,
    decode_tap,
    encode_tap,
    field_errors,
    tap_from_body,
)

NOW = 1_773_100_800_000  # 2026-03-10T00:00:00Z
MINUTE_MS = 60_000
DAY_MS = 86_400_000
MAX_AGE = 7
DEVICE_KEYS = ["type", "userId", "schoolId", "timestamp", "temperature", "image"]


def body(**changes: Any) -> dict[str, Any]:
    """A valid device body with `changes` applied."""
    b: dict[str, Any] = {
        "type": "checkin",
        "userId": "65f1c0ffee0000000000abcd",
        "schoolId": "SCH-001",
        "timestamp": NOW - 10 * MINUTE_MS,
        "temperature": 36.6,
        "image": "https://img.example/abc.jpg",
    }
    b.update(changes)
    return b


def errors_of(b: Any, *, now_ms: int | None = NOW, max_age_days: int = MAX_AGE) -> list[tuple[str, str]]:
    """The (field, message) pairs field_errors reports for `b`."""
    return [(e.field, e.message) for e in field_errors(b, now_ms=now_ms, max_age_days=max_age_days)]


def record(**changes: Any) -> dict[str, Any]:
    """A valid `attendance-taps` record body (device body plus tap id)."""
    r = body(id="0123456789abcdef0123456789abcdef")
    r.update(changes)
    return r


# --- a valid body ------------------------------------------------------------


def test_valid_body_has_no_errors() -> None:
    assert errors_of(body()) == []


@pytest.mark.parametrize("kind", ["checkin", "checkout"])
def test_both_tap_types_are_accepted(kind: str) -> None:
    assert errors_of(body(type=kind)) == []


# --- type --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["CHECKIN", "Checkout", "check-in", "", " checkin", None, 1, ["checkin"], {"a": 1}])
def test_type_outside_the_enum_is_rejected(kind: Any) -> None:
    assert errors_of(body(type=kind)) == [("type", "must be 'checkin' or 'checkout'")]


# --- userId / schoolId ---------------------------------------------------------


@pytest.mark.parametrize("name", ["userId", "schoolId"])
@pytest.mark.parametrize("value", ["x", "a" * 64, "é" * 64, "学校" * 32])
def test_ids_of_1_to_64_characters_are_accepted(name: str, value: str) -> None:
    assert errors_of(body(**{name: value})) == []


@pytest.mark.parametrize("name", ["userId", "schoolId"])
@pytest.mark.parametrize("value", ["", "a" * 65, "é" * 65])
def test_ids_outside_1_to_64_characters_are_rejected(name: str, value: str) -> None:
    assert errors_of(body(**{name: value})) == [(name, "must be 1 to 64 characters")]


@pytest.mark.parametrize("name", ["userId", "schoolId"])
@pytest.mark.parametrize("value", [" ", "   ", "\t", "a\x00b", "line\nbreak", "del\x7f"])
def test_blank_ids_and_control_characters_are_rejected(name: str, value: str) -> None:
    assert errors_of(body(**{name: value})) == [(name, "must not be blank or hold control characters")]


@pytest.mark.parametrize("name", ["userId", "schoolId"])
@pytest.mark.parametrize("value", [123, 0, None, True, 1.5, ["abc"], {"id": "abc"}])
def test_ids_must_be_strings(name: str, value: Any) -> None:
    assert errors_of(body(**{name: value})) == [(name, "must be a string")]


# --- timestamp -------------------------------------------------------------------


@pytest.mark.parametrize("ts", [True, False, 1_773_100_000_000.0, 1.5, "1773100000000", None, [1], {"ms": 1}])
def test_timestamp_must_be_an_integer(ts: Any) -> None:
    assert errors_of(body(timestamp=ts)) == [("timestamp", "must be an integer (epoch milliseconds)")]


@pytest.mark.parametrize("ts", [0, -1, -NOW])
def test_timestamp_must_be_positive(ts: int) -> None:
    # Checked before the age window, whichever clock is used.
    assert errors_of(body(timestamp=ts)) == [("timestamp", "must be greater than 0")]
    assert errors_of(body(timestamp=ts), now_ms=None) == [("timestamp", "must be greater than 0")]


def test_timestamp_exactly_five_minutes_ahead_is_accepted() -> None:
    assert errors_of(body(timestamp=NOW + 5 * MINUTE_MS)) == []


def test_timestamp_more_than_five_minutes_ahead_is_rejected() -> None:
    assert errors_of(body(timestamp=NOW + 5 * MINUTE_MS + 1)) == [
        ("timestamp", "is more than 5 minutes in the future")
    ]
    assert errors_of(body(timestamp=NOW + DAY_MS)) == [("timestamp", "is more than 5 minutes in the future")]


def test_timestamp_now_is_accepted() -> None:
    assert errors_of(body(timestamp=NOW)) == []


def test_timestamp_exactly_max_age_old_is_accepted() -> None:
    assert errors_of(body(timestamp=NOW - MAX_AGE * DAY_MS)) == []


def test_timestamp_older_than_max_age_is_rejected() -> None:
    assert errors_of(body(timestamp=NOW - MAX_AGE * DAY_MS - 1)) == [("timestamp", "is older than 7 days")]


@pytest.mark.parametrize("days", [1, 3, 30])
def test_age_window_follows_max_age_days(days: int) -> None:
    assert errors_of(body(timestamp=NOW - days * DAY_MS), max_age_days=days) == []
    assert errors_of(body(timestamp=NOW - days * DAY_MS - 1), max_age_days=days) == [
        ("timestamp", f"is older than {days} days")
    ]


def test_without_a_clock_there_is_no_age_window() -> None:
    assert errors_of(body(timestamp=1), now_ms=None, max_age_days=0) == []
    assert errors_of(body(timestamp=NOW + 365 * DAY_MS), now_ms=None, max_age_days=0) == []


# --- temperature -------------------------------------------------------------------


@pytest.mark.parametrize("temp", [30, 30.0, 45, 45.0, 36, 36.6, 37.95, 38, 44.999])
def test_temperatures_in_range_are_accepted(temp: float) -> None:
    assert errors_of(body(temperature=temp)) == []


@pytest.mark.parametrize("temp", [29.999, 29, 45.001, 46, 0, -36.6, 100.0])
def test_temperatures_out_of_range_are_rejected(temp: float) -> None:
    assert errors_of(body(temperature=temp)) == [("temperature", "must be between 30.0 and 45.0")]


@pytest.mark.parametrize(
    "temp", [True, False, math.nan, math.inf, -math.inf, "36.6", None, [36.6], {"c": 36.6}]
)
def test_temperature_must_be_a_finite_number(temp: Any) -> None:
    assert errors_of(body(temperature=temp)) == [("temperature", "must be a number (degrees Celsius)")]


# --- image ----------------------------------------------------------------------------


@pytest.mark.parametrize("image", ["", "x", "x" * 2048, "é" * 2048])
def test_images_up_to_2048_characters_are_accepted(image: str) -> None:
    assert errors_of(body(image=image)) == []


def test_image_over_2048_characters_is_rejected() -> None:
    assert errors_of(body(image="x" * 2049)) == [("image", "must be at most 2048 characters")]


@pytest.mark.parametrize("image", [None, 0, False, ["a"], {"url": "a"}])
def test_image_must_be_a_string(image: Any) -> None:
    assert errors_of(body(image=image)) == [("image", "must be a string")]


# --- unknown and missing fields ---------------------------------------------------------


@pytest.mark.parametrize("name", ["id", "extra", "userid", "Type", ""])
def test_unknown_fields_are_rejected(name: str) -> None:
    assert errors_of(body(**{name: "x"})) == [(name, "is not a known field")]


def test_id_from_a_device_is_an_unknown_field() -> None:
    assert errors_of(body(id="0123456789abcdef0123456789abcdef")) == [("id", "is not a known field")]


@pytest.mark.parametrize("name", DEVICE_KEYS)
def test_each_missing_field_is_reported(name: str) -> None:
    b = body()
    del b[name]
    assert errors_of(b) == [(name, "is required")]


def test_empty_object_reports_every_field_as_required() -> None:
    assert errors_of({}) == [(name, "is required") for name in DEVICE_KEYS]


# --- all errors together ------------------------------------------------------------------


def test_all_errors_are_reported_together() -> None:
    bad = {
        "type": "arrive",
        "userId": "",
        "schoolId": 7,
        "timestamp": 1.5,
        "temperature": 50,
        "image": "x" * 3000,
        "extra": 1,
        "id": "abc",
    }
    assert sorted(errors_of(bad)) == sorted(
        [
            ("extra", "is not a known field"),
            ("id", "is not a known field"),
            ("type", "must be 'checkin' or 'checkout'"),
            ("userId", "must be 1 to 64 characters"),
            ("schoolId", "must be a string"),
            ("timestamp", "must be an integer (epoch milliseconds)"),
            ("temperature", "must be between 30.0 and 45.0"),
            ("image", "must be at most 2048 characters"),
        ]
    )


def test_missing_and_invalid_fields_are_reported_together() -> None:
    bad = {"type": "checkin", "userId": "u", "timestamp": NOW + DAY_MS, "temperature": "hot", "colour": "red"}
    assert sorted(errors_of(bad)) == sorted(
        [
            ("schoolId", "is required"),
            ("image", "is required"),
            ("colour", "is not a known field"),
            ("timestamp", "is more than 5 minutes in the future"),
            ("temperature", "must be a number (degrees Celsius)"),
        ]
    )


# --- non-object bodies ----------------------------------------------------------------------


@pytest.mark.parametrize("b", [[], [body()], "checkin", "", 0, 42, 3.5, True, None])
def test_non_object_bodies_give_one_body_error(b: Any) -> None:
    assert errors_of(b) == [("body", "must be a JSON object")]


# --- FieldError / InvalidTap -------------------------------------------------------------------


def test_field_error_as_json() -> None:
    assert FieldError("userId", "is required").as_json() == {"field": "userId", "message": "is required"}


def test_invalid_tap_carries_every_error_and_a_readable_message() -> None:
    errs = [FieldError("type", "is required"), FieldError("image", "must be a string")]
    exc = InvalidTap(errs)
    assert isinstance(exc, ValueError)
    assert exc.errors == errs
    assert str(exc) == "type: is required; image: must be a string"


# --- tap_from_body ---------------------------------------------------------------------------


def test_tap_from_body_builds_the_tap_with_a_fresh_id() -> None:
    tap = tap_from_body(body(), now_ms=NOW, max_age_days=MAX_AGE)
    assert re.fullmatch(r"[0-9a-f]{32}", tap.id)
    assert tap == Tap(
        id=tap.id,
        type="checkin",
        userId="65f1c0ffee0000000000abcd",
        schoolId="SCH-001",
        timestamp=NOW - 10 * MINUTE_MS,
        temperature=36.6,
        image="https://img.example/abc.jpg",
    )


def test_tap_from_body_gives_every_tap_its_own_id() -> None:
    ids = {tap_from_body(body(), now_ms=NOW, max_age_days=MAX_AGE).id for _ in range(50)}
    assert len(ids) == 50


def test_tap_from_body_stores_integer_temperature_as_float() -> None:
    tap = tap_from_body(body(temperature=37), now_ms=NOW, max_age_days=MAX_AGE)
    assert tap.temperature == 37.0
    assert type(tap.temperature) is float


def test_tap_from_body_raises_with_all_errors() -> None:
    with pytest.raises(InvalidTap) as info:
        tap_from_body(body(type="in", temperature=20, extra=True), now_ms=NOW, max_age_days=MAX_AGE)
    assert sorted((e.field, e.message) for e in info.value.errors) == [
        ("extra", "is not a known field"),
        ("temperature", "must be between 30.0 and 45.0"),
        ("type", "must be 'checkin' or 'checkout'"),
    ]


def test_tap_from_body_applies_the_age_window() -> None:
    with pytest.raises(InvalidTap) as info:
        tap_from_body(body(timestamp=NOW - 8 * DAY_MS), now_ms=NOW, max_age_days=MAX_AGE)
    assert [(e.field, e.message) for e in info.value.errors] == [("timestamp", "is older than 7 days")]


def test_tap_from_body_rejects_a_device_supplied_id() -> None:
    with pytest.raises(InvalidTap) as info:
        tap_from_body(body(id="mine"), now_ms=NOW, max_age_days=MAX_AGE)
    assert [(e.field, e.message) for e in info.value.errors] == [("id", "is not a known field")]


def test_tap_from_body_rejects_non_objects() -> None:
    with pytest.raises(InvalidTap) as info:
        tap_from_body([body()], now_ms=NOW, max_age_days=MAX_AGE)
    assert [(e.field, e.message) for e in info.value.errors] == [("body", "must be a JSON object")]


# --- encode_tap / decode_tap -------------------------------------------------------------------


def test_encode_tap_writes_the_seven_fields() -> None:
    tap = Tap("abc", "checkout", "u1", "s1", NOW, 37.0, "")
    assert orjson.loads(encode_tap(tap)) == {
        "id": "abc",
        "type": "checkout",
        "userId": "u1",
        "schoolId": "s1",
        "timestamp": NOW,
        "temperature": 37.0,
        "image": "",
    }


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"type": "checkout", "temperature": 30},
        {"temperature": 45.0, "image": ""},
        {"userId": "ü" * 64, "schoolId": "学校|1", "image": "é" * 2048},
        {"timestamp": NOW + 5 * MINUTE_MS},
    ],
)
def test_round_trip(changes: dict[str, Any]) -> None:
    tap = tap_from_body(body(**changes), now_ms=NOW, max_age_days=MAX_AGE)
    assert decode_tap(encode_tap(tap)) == tap


def test_decode_tap_accepts_a_valid_record() -> None:
    tap = decode_tap(orjson.dumps(record(temperature=38)))
    assert tap == Tap(
        "0123456789abcdef0123456789abcdef",
        "checkin",
        "65f1c0ffee0000000000abcd",
        "SCH-001",
        NOW - 10 * MINUTE_MS,
        38.0,
        "https://img.example/abc.jpg",
    )
    assert type(tap.temperature) is float


def test_decode_tap_does_not_apply_the_age_window() -> None:
    """A record replayed long after the ingress accepted it is still a tap."""
    assert decode_tap(orjson.dumps(record(timestamp=1))).timestamp == 1


def test_decode_tap_of_none() -> None:
    with pytest.raises(InvalidTap) as info:
        decode_tap(None)
    assert info.value.errors == [FieldError("body", "record has no value")]


@pytest.mark.parametrize("raw", [b"", b"not json", b"{", b"{'type': 'checkin'}", b"\xff\xfe\x00\x01", b"\x80abc"])
def test_decode_tap_of_non_json(raw: bytes) -> None:
    with pytest.raises(InvalidTap) as info:
        decode_tap(raw)
    assert len(info.value.errors) == 1
    err = info.value.errors[0]
    assert err.field == "body"
    assert err.message.startswith("is not JSON: ")


@pytest.mark.parametrize("raw", [b"[]", b"[1, 2]", b'"checkin"', b"42", b"null", b"true"])
def test_decode_tap_of_json_that_is_not_an_object(raw: bytes) -> None:
    with pytest.raises(InvalidTap) as info:
        decode_tap(raw)
    assert info.value.errors == [FieldError("body", "must be a JSON object")]


def test_decode_tap_of_an_empty_object_reports_every_missing_field() -> None:
    with pytest.raises(InvalidTap) as info:
        decode_tap(b"{}")
    assert [(e.field, e.message) for e in info.value.errors] == [
        *[(name, "is required") for name in DEVICE_KEYS],
        ("id", "must be a string of 1 to 64 characters"),
    ]


def test_decode_tap_requires_the_tap_id() -> None:
    with pytest.raises(InvalidTap) as info:
        decode_tap(orjson.dumps(body()))
    assert info.value.errors == [FieldError("id", "must be a string of 1 to 64 characters")]


@pytest.mark.parametrize("tap_id", ["", "x" * 65, 5, None, ["a"]])
def test_decode_tap_rejects_bad_tap_ids(tap_id: Any) -> None:
    with pytest.raises(InvalidTap) as info:
        decode_tap(orjson.dumps(record(id=tap_id)))
    assert info.value.errors == [FieldError("id", "must be a string of 1 to 64 characters")]


def test_decode_tap_applies_the_device_rules() -> None:
    with pytest.raises(InvalidTap) as info:
        decode_tap(orjson.dumps(record(type="enter", temperature=True, extra=1)))
    assert sorted((e.field, e.message) for e in info.value.errors) == [
        ("extra", "is not a known field"),
        ("temperature", "must be a number (degrees Celsius)"),
        ("type", "must be 'checkin' or 'checkout'"),
    ]


def test_decode_tap_message_names_the_fields() -> None:
    with pytest.raises(InvalidTap, match=r"^userId: is required; schoolId: must be a string$"):
        decode_tap(orjson.dumps({k: v for k, v in record(schoolId=1).items() if k != "userId"}))


def test_decode_tap_rejects_a_timestamp_beyond_the_calendar() -> None:
    with pytest.raises(InvalidTap) as info:
        decode_tap(orjson.dumps(record(timestamp=10**15)))
    assert [e.field for e in info.value.errors] == ["timestamp"]
