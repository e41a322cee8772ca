"""Unit tests for the outcome and dead-letter codecs (pipeline.outcomes, pipeline.dead_letters)."""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
import pytest

from pipeline.dead_letters import (
    ATTEMPTS_HEADER,
    FIRST_FAILED_HEADER,
    REPLAY_OF_HEADER,
    DeadLetter,
    ReplayHistory,
    dead_letter_for,
    decode_dead_letter,
    encode_dead_letter,
    headers_dict,
    replay_headers,
    replay_history,
)
from pipeline.outcomes import ACCEPTED, REJECTED, Outcome, decode_outcome, encode_outcome
from pipeline.taps import FieldError, InvalidTap, Tap

TAP = Tap(
    id="0123456789abcdef0123456789abcdef",
    type="checkin",
    userId="65f1c0ffee0000000000abcd",
    schoolId="SCH|001",
    timestamp=1_773_110_000_000,
    temperature=38.2,
    image="https://img.example/é.jpg",
)


# --- outcomes -------------------------------------------------------------------------


def test_outcome_constants() -> None:
    assert (ACCEPTED, REJECTED) == ("accepted", "rejected")


def test_accepted_outcome_encodes_every_field() -> None:
    o = Outcome(TAP, "2026-03-10", None, (3, 1234))
    assert o.accepted is True
    assert orjson.loads(encode_outcome(o)) == {
        **TAP.as_json(),
        "date": "2026-03-10",
        "outcome": "accepted",
        "reason": None,
        "source": [3, 1234],
    }


def test_rejected_outcome_encodes_its_reason() -> None:
    o = Outcome(TAP, "2026-03-10", "duplicate_checkin", (0, 7))
    assert o.accepted is False
    body = orjson.loads(encode_outcome(o))
    assert (body["outcome"], body["reason"], body["source"]) == ("rejected", "duplicate_checkin", [0, 7])


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome(TAP, "2026-03-10", None, (0, 0)),
        Outcome(TAP, "2026-03-10", "duplicate_checkin", (7, 2**40)),
        Outcome(Tap("x", "checkout", "u", "s", 1, 30.0, ""), "1970-01-01", "checkout_without_checkin", (1, 5)),
        Outcome(Tap("y", "checkout", "u", "s", 2, 45.0, "i" * 2048), "2026-12-31", "duplicate_checkout", (2, 9)),
    ],
)
def test_outcome_round_trip(outcome: Outcome) -> None:
    back = decode_outcome(encode_outcome(outcome))
    assert back == outcome
    assert type(back.source) is tuple


def _outcome_body(**changes: Any) -> bytes:
    body = orjson.loads(encode_outcome(Outcome(TAP, "2026-03-10", None, (0, 1))))
    body.update(changes)
    return orjson.dumps(body)


def test_decode_outcome_rejects_accepted_with_a_reason() -> None:
    with pytest.raises(ValueError, match="outcome and reason disagree"):
        decode_outcome(_outcome_body(outcome="accepted", reason="duplicate_checkin"))


def test_decode_outcome_rejects_rejected_without_a_reason() -> None:
    with pytest.raises(ValueError, match="outcome and reason disagree"):
        decode_outcome(_outcome_body(outcome="rejected", reason=None))


def test_decode_outcome_accepts_consistent_rejection() -> None:
    o = decode_outcome(_outcome_body(outcome="rejected", reason="duplicate_checkout"))
    assert o.reason == "duplicate_checkout"
    assert o.accepted is False


def test_decode_outcome_rejects_an_unknown_outcome_value() -> None:
    with pytest.raises(ValueError):
        decode_outcome(_outcome_body(outcome="maybe", reason="duplicate_checkin"))


@pytest.mark.parametrize("missing", ["id", "type", "timestamp", "date", "outcome", "reason", "source"])
def test_decode_outcome_rejects_missing_fields(missing: str) -> None:
    body = orjson.loads(_outcome_body())
    del body[missing]
    with pytest.raises((ValueError, KeyError, TypeError)):
        decode_outcome(orjson.dumps(body))


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b"null", b'"x"'])
def test_decode_outcome_rejects_non_outcomes(raw: bytes) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        decode_outcome(raw)


@pytest.mark.parametrize("source", [[1], [1, 2, 3], None, 5])
def test_decode_outcome_rejects_a_malformed_source(source: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        decode_outcome(_outcome_body(source=source))


# --- dead letters ------------------------------------------------------------------------


def _letter(**changes: Any) -> DeadLetter:
    fields: dict[str, Any] = dict(
        topic="attendance-taps",
        partition=3,
        offset=42,
        key=b"SCH-001",
        value=b'{"type": "checkin"',
        stage="dedup.decode",
        error_type="InvalidTap",
        error_message="body: is not JSON",
        attempts=1,
        first_failed_ms=1_773_110_000_000,
        last_failed_ms=1_773_110_000_000,
    )
    fields.update(changes)
    return DeadLetter(**fields)


def test_record_id_is_topic_partition_offset() -> None:
    assert _letter().record_id == "attendance-taps:3:42"


def test_record_id_is_deterministic_for_a_redelivered_record() -> None:
    first = _letter()
    again = _letter(
        stage="dedup.decide", error_type="ConnectionError", error_message="other",
        attempts=5, first_failed_ms=1, last_failed_ms=2, value=b"other bytes", replay_of="x:0:1",
    )
    assert again.record_id == first.record_id


@pytest.mark.parametrize(
    "other", [dict(offset=43), dict(partition=4), dict(topic="attendance-events"), dict(partition=34, offset=2)]
)
def test_record_id_differs_for_other_records(other: dict[str, Any]) -> None:
    assert _letter(**other).record_id != _letter().record_id


def test_record_id_from_dead_letter_for() -> None:
    d = dead_letter_for(
        topic="attendance-taps", partition=0, offset=0, key=None, value=None, stage="s", error=ValueError("x"),
    )
    assert d.record_id == "attendance-taps:0:0"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"SCH-001", b'{"type": "checkin"}'),
        (None, None),
        (None, b"\xff\xfe\x00\x80 not utf-8 \xc3\x28"),
        (b"\x00\xff", b""),
        (b"", None),
        (bytes(range(256)), bytes(range(255, -1, -1)) * 10),
    ],
)
def test_dead_letter_round_trip_keeps_the_original_bytes(key: bytes | None, value: bytes | None) -> None:
    d = _letter(key=key, value=value)
    raw = encode_dead_letter(d)
    raw.decode("utf-8")  # the encoded record itself is valid UTF-8 JSON
    back = decode_dead_letter(raw)
    assert back == d
    assert back.key == key
    assert back.value == value


def test_dead_letter_round_trip_keeps_the_replay_link() -> None:
    d = _letter(replay_of="attendance-taps:1:7", attempts=3)
    assert decode_dead_letter(encode_dead_letter(d)) == d


def test_empty_bytes_and_none_stay_distinct() -> None:
    assert decode_dead_letter(encode_dead_letter(_letter(value=b""))).value == b""
    assert decode_dead_letter(encode_dead_letter(_letter(value=None))).value is None


def test_encoded_dead_letter_layout() -> None:
    d = _letter(value=b"\xff\x00", key=None, attempts=3, first_failed_ms=10, last_failed_ms=20)
    assert orjson.loads(encode_dead_letter(d)) == {
        "topic": "attendance-taps",
        "partition": 3,
        "offset": 42,
        "key": None,
        "value": base64.b64encode(b"\xff\x00").decode(),
        "error": {"stage": "dedup.decode", "type": "InvalidTap", "message": "body: is not JSON"},
        "attempts": 3,
        "firstFailedAt": 10,
        "lastFailedAt": 20,
        "replayOf": None,
    }


def test_decode_dead_letter_without_replay_link() -> None:
    """A record written before replays were linked still decodes."""
    body = orjson.loads(encode_dead_letter(_letter()))
    del body["replayOf"]
    assert decode_dead_letter(orjson.dumps(body)) == _letter()


def test_dead_letter_for_records_the_error() -> None:
    err = InvalidTap([FieldError("type", "is required"), FieldError("image", "is required")])
    d = dead_letter_for(
        topic="attendance-taps", partition=2, offset=99, key=b"k", value=b"\x80",
        stage="dedup.decode", error=err, now_ms=1234,
    )
    assert d == DeadLetter(
        "attendance-taps", 2, 99, b"k", b"\x80", "dedup.decode",
        "InvalidTap", "type: is required; image: is required", 1, 1234, 1234, None,
    )


def test_dead_letter_for_truncates_long_messages() -> None:
    d = dead_letter_for(
        topic="t", partition=0, offset=1, key=None, value=None, stage="s",
        error=RuntimeError("x" * 5000), now_ms=1,
    )
    assert d.error_message == "x" * 2000
    assert d.error_type == "RuntimeError"
    assert d.attempts == 1


def test_dead_letter_for_defaults_to_the_clock() -> None:
    before = int(time.time() * 1000)
    d = dead_letter_for(topic="t", partition=0, offset=1, key=None, value=None, stage="s", error=KeyError("k"))
    after = int(time.time() * 1000)
    assert before <= d.first_failed_ms == d.last_failed_ms <= after


def test_dead_letter_for_round_trip_of_undecodable_bytes() -> None:
    raw_value = b"\x89PNG\r\n\x1a\n\x00\x00"
    d = dead_letter_for(
        topic="attendance-taps", partition=1, offset=5, key=None, value=raw_value,
        stage="dedup.decode", error=ValueError("bad"), now_ms=5,
    )
    assert decode_dead_letter(encode_dead_letter(d)).value == raw_value


# --- replay history in headers ------------------------------------------------------------------


def test_replayed_record_continues_its_history() -> None:
    headers = dict(replay_headers(attempts=2, first_failed_ms=1000, record_id="attendance-taps:3:42"))
    d = dead_letter_for(
        topic="attendance-taps", partition=5, offset=900, key=b"k", value=b"v",
        stage="dedup.decode", error=ValueError("still bad"), headers=headers, now_ms=5000,
    )
    assert (d.attempts, d.first_failed_ms, d.last_failed_ms, d.replay_of) == (3, 1000, 5000, "attendance-taps:3:42")
    assert d.record_id == "attendance-taps:5:900"


def test_replay_headers_layout() -> None:
    assert replay_headers(attempts=2, first_failed_ms=1000, record_id="t:1:2") == [
        (ATTEMPTS_HEADER, b"2"),
        (FIRST_FAILED_HEADER, b"1000"),
        (REPLAY_OF_HEADER, b"t:1:2"),
    ]


def test_replay_history_round_trip() -> None:
    headers = dict(replay_headers(attempts=4, first_failed_ms=77, record_id="t:0:9"))
    assert replay_history(headers) == ReplayHistory(4, 77, "t:0:9")


def test_replay_history_of_no_headers() -> None:
    assert replay_history({}) == ReplayHistory(0, None, None)


@pytest.mark.parametrize("bad", [b"", b"three", b"3.0", b"\xff", b"-2"])
def test_replay_history_ignores_bad_attempt_counts(bad: bytes) -> None:
    assert replay_history({ATTEMPTS_HEADER: bad}).attempts == 0


def test_replay_history_ignores_a_bad_first_failure_time() -> None:
    assert replay_history({FIRST_FAILED_HEADER: b"yesterday"}).first_failed_ms is None


def test_replay_history_tolerates_non_utf8_replay_link() -> None:
    assert replay_history({REPLAY_OF_HEADER: b"t:\xff:1"}).replay_of == "t:\ufffd:1"


def test_dead_letter_for_with_bad_headers_starts_a_fresh_history() -> None:
    d = dead_letter_for(
        topic="t", partition=0, offset=1, key=None, value=None, stage="s", error=ValueError("x"),
        headers={ATTEMPTS_HEADER: b"many", FIRST_FAILED_HEADER: b"never"}, now_ms=50,
    )
    assert (d.attempts, d.first_failed_ms, d.last_failed_ms, d.replay_of) == (1, 50, 50, None)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (None, {}),
        ([], {}),
        ({}, {}),
        ([("a", b"1"), ("b", b"2")], {"a": b"1", "b": b"2"}),
        ([("a", b"1"), ("a", b"2")], {"a": b"2"}),
        ([("a", None)], {"a": b""}),
        ({"a": b"x"}, {"a": b"x"}),
        ((("a", bytearray(b"y")),), {"a": b"y"}),
    ],
)
def test_headers_dict(headers: Any, expected: dict[str, bytes]) -> None:
    assert headers_dict(headers) == expected
