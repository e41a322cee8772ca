"""Unit tests for the per-school-day counters (tables.school_day)."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from pipeline.outcomes import Outcome
from pipeline.taps import Tap
from tables.school_day import already_applied, detail, empty, fold, ranked, split_key, table_key, totals

KOLKATA = ZoneInfo("Asia/Kolkata")
BERLIN = ZoneInfo("Europe/Berlin")
THRESHOLD = 38.0


def epoch_s(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


def ms(iso: str) -> int:
    return epoch_s(iso) * 1000


# 08:15 and 09:10 in Kolkata (UTC+05:30); their local hours start at 02:30Z and 03:30Z.
T0815 = ms("2026-03-10T02:45:00+00:00")
T0910 = ms("2026-03-10T03:40:00+00:00")
H08 = str(epoch_s("2026-03-10T02:30:00+00:00"))
H09 = str(epoch_s("2026-03-10T03:30:00+00:00"))


def outcome(
    offset: int,
    kind: str = "checkin",
    *,
    ts: int = T0815,
    temp: float = 36.6,
    reason: str | None = None,
    partition: int = 0,
    user: str = "u",
) -> Outcome:
    tap = Tap(f"id{offset}", kind, user, "SCH-001", ts, temp, "")
    return Outcome(tap, "2026-03-10", reason, (partition, offset))


def run(outcomes: list[Outcome], value: dict[str, Any] | None = None, tz: ZoneInfo = KOLKATA,
        threshold: float = THRESHOLD) -> dict[str, Any]:
    return fold(value, outcomes, tz=tz, fever_threshold=threshold)


# --- fold: counting ---------------------------------------------------------------------------


def test_empty_value() -> None:
    assert empty() == {"checkins": 0, "checkouts": 0, "fevers": 0, "rejected": {}, "hours": {}, "applied": None}


def test_fold_of_nothing() -> None:
    assert run([]) == empty()


def test_fold_counts_checkins_checkouts_fevers_and_rejections() -> None:
    outcomes = [
        outcome(1, user="a"),
        outcome(2, user="b", temp=38.5),
        outcome(3, user="a", reason="duplicate_checkin", temp=39.0),
        outcome(4, "checkout", user="c", reason="checkout_without_checkin"),
        outcome(5, "checkout", user="a", ts=T0910, temp=40.0),
        outcome(6, "checkout", user="a", ts=T0910, reason="duplicate_checkout"),
        outcome(7, user="d", ts=T0910, temp=38.0),
        outcome(8, user="d", ts=T0910, reason="duplicate_checkin"),
    ]
    assert run(outcomes) == {
        "checkins": 3,
        "checkouts": 1,
        "fevers": 2,
        "rejected": {"duplicate_checkin": 2, "checkout_without_checkin": 1, "duplicate_checkout": 1},
        "hours": {H08: [2, 0, 1], H09: [1, 1, 1]},
        "applied": [0, 8],
    }


@pytest.mark.parametrize(("temp", "fever"), [(37.9, 0), (37.99, 0), (38.0, 1), (38.01, 1), (45.0, 1)])
def test_fever_threshold_is_inclusive(temp: float, fever: int) -> None:
    value = run([outcome(1, temp=temp)])
    assert value["fevers"] == fever
    assert value["hours"][H08] == [1, 0, fever]


def test_fever_threshold_is_configurable() -> None:
    outs = [outcome(1, temp=37.5, user="a"), outcome(2, temp=37.4, user="b")]
    assert run(outs, threshold=37.5)["fevers"] == 1
    assert run(outs, threshold=39.0)["fevers"] == 0


def test_only_accepted_checkins_count_fevers() -> None:
    value = run([
        outcome(1, temp=39.5, reason="duplicate_checkin"),
        outcome(2, "checkout", temp=39.5),
        outcome(3, "checkout", temp=39.5, reason="duplicate_checkout"),
    ])
    assert (value["fevers"], value["checkins"], value["checkouts"]) == (0, 0, 1)
    assert value["hours"] == {H08: [0, 1, 0]}


def test_rejections_do_not_create_hour_buckets() -> None:
    value = run([outcome(1, reason="duplicate_checkin"), outcome(2, "checkout", reason="checkout_without_checkin")])
    assert value["hours"] == {}
    assert value["rejected"] == {"duplicate_checkin": 1, "checkout_without_checkin": 1}
    assert value["applied"] == [0, 2]


def test_hours_are_local_hour_starts() -> None:
    value = run([
        outcome(1, ts=ms("2026-03-10T02:30:00+00:00")),  # 08:00:00 IST
        outcome(2, ts=ms("2026-03-10T03:29:59+00:00")),  # 08:59:59 IST
        outcome(3, ts=ms("2026-03-10T03:30:00+00:00")),  # 09:00:00 IST
    ])
    assert value["hours"] == {H08: [2, 0, 0], H09: [1, 0, 0]}
    assert all(int(h) % 3600 == 1800 for h in value["hours"])


def test_hours_in_utc_start_on_the_hour() -> None:
    value = run([outcome(1, ts=T0815)], tz=ZoneInfo("UTC"))
    assert value["hours"] == {str(epoch_s("2026-03-10T02:00:00+00:00")): [1, 0, 0]}


def test_repeated_dst_hour_gets_two_buckets() -> None:
    value = run(
        [
            outcome(1, ts=ms("2026-10-25T00:15:00+00:00"), user="a"),  # 02:15 CEST
            outcome(2, ts=ms("2026-10-25T01:15:00+00:00"), user="b"),  # 02:15 CET
        ],
        tz=BERLIN,
    )
    assert value["hours"] == {
        str(epoch_s("2026-10-25T00:00:00+00:00")): [1, 0, 0],
        str(epoch_s("2026-10-25T01:00:00+00:00")): [1, 0, 0],
    }


# --- fold: re-deliveries ----------------------------------------------------------------------


def test_redelivered_batch_is_skipped() -> None:
    outs = [outcome(10, user="a", temp=38.5), outcome(11, "checkout", user="a"), outcome(12, reason="duplicate_checkin")]
    once = run(outs)
    assert run(outs, once) == once


def test_redelivery_of_a_lower_offset_is_skipped() -> None:
    once = run([outcome(10, user="a"), outcome(20, user="b")])
    assert run([outcome(15, user="c"), outcome(5, user="d")], once) == once


def test_partly_applied_batch_counts_only_the_new_outcomes() -> None:
    first = run([outcome(3, user="a"), outcome(4, user="b")])
    value = run([outcome(3, user="a"), outcome(4, user="b"), outcome(5, user="c"), outcome(6, "checkout", user="a")], first)
    assert value == {
        "checkins": 3,
        "checkouts": 1,
        "fevers": 0,
        "rejected": {},
        "hours": {H08: [3, 1, 0]},
        "applied": [0, 6],
    }


def test_redelivery_within_one_fold_is_skipped() -> None:
    value = run([outcome(1, user="a"), outcome(2, user="b"), outcome(2, user="b"), outcome(1, user="a")])
    assert value["checkins"] == 2
    assert value["applied"] == [0, 2]


def test_applied_offset_zero_is_remembered() -> None:
    value = run([outcome(0)])
    assert value["applied"] == [0, 0]
    assert run([outcome(0)], value) == value


def test_already_applied() -> None:
    value = {**empty(), "applied": [2, 50]}
    assert already_applied(value, (2, 50)) is True
    assert already_applied(value, (2, 49)) is True
    assert already_applied(value, (2, 51)) is False
    assert already_applied(empty(), (0, 0)) is False
    assert already_applied({"checkins": 0}, (0, 0)) is False


def test_fold_accepts_a_value_that_went_through_json() -> None:
    """Table values are stored as JSON: tuples come back as lists."""
    value = run([outcome(1, user="a"), outcome(2, "checkout", user="a")])
    stored = orjson.loads(orjson.dumps(value))
    more = [outcome(3, user="b", temp=38.0), outcome(2, "checkout", user="a")]
    assert run(more, stored) == run(more, value)
    assert run(more, stored)["hours"] == {H08: [2, 1, 1]}


# --- fold: purity ---------------------------------------------------------------------------------


def test_fold_does_not_mutate_its_input() -> None:
    value = run([outcome(1, user="a"), outcome(2, reason="duplicate_checkin")])
    snapshot = copy.deepcopy(value)
    after = run(
        [outcome(3, user="b", temp=39.0), outcome(4, reason="duplicate_checkin"),
         outcome(5, "checkout", user="a", ts=T0910), outcome(6, "checkout", reason="duplicate_checkout")],
        value,
    )
    assert value == snapshot
    assert after != snapshot
    after["hours"][H08][0] = 999
    after["rejected"]["duplicate_checkin"] = 999
    assert value == snapshot


def test_fold_of_none_does_not_share_state_between_calls() -> None:
    a = run([outcome(1)])
    b = run([outcome(1)])
    a["hours"][H08][0] = 5
    a["rejected"]["x"] = 1
    assert b == run([outcome(1)])
    assert empty()["rejected"] == {}


# --- totals / detail ----------------------------------------------------------------------------------


def test_totals() -> None:
    value = run([
        outcome(1, user="a", temp=38.2), outcome(2, user="b"), outcome(3, user="c"),
        outcome(4, "checkout", user="a"), outcome(5, reason="duplicate_checkin"),
        outcome(6, "checkout", reason="checkout_without_checkin"), outcome(7, "checkout", reason="duplicate_checkout"),
    ])
    assert totals("SCH-001", "2026-03-10", value) == {
        "schoolId": "SCH-001",
        "date": "2026-03-10",
        "checkins": 3,
        "checkouts": 1,
        "present": 2,
        "fevers": 1,
        "rejected": 3,
    }


def test_totals_of_no_value() -> None:
    assert totals("SCH-9", "2026-03-10", None) == {
        "schoolId": "SCH-9", "date": "2026-03-10", "checkins": 0, "checkouts": 0,
        "present": 0, "fevers": 0, "rejected": 0,
    }


def test_detail_hours_sorted_with_local_iso_starts() -> None:
    value = run([
        outcome(1, user="a", ts=T0910, temp=38.4),
        outcome(2, user="b", ts=T0815),
        outcome(3, "checkout", user="b", ts=ms("2026-03-10T10:00:00+00:00")),  # 15:30 IST
        outcome(4, reason="duplicate_checkin"),
        outcome(5, "checkout", reason="checkout_without_checkin"),
        outcome(6, reason="duplicate_checkin"),
    ])
    assert detail("SCH-001", "2026-03-10", value, KOLKATA) == {
        "schoolId": "SCH-001",
        "date": "2026-03-10",
        "checkins": 2,
        "checkouts": 1,
        "present": 1,
        "fevers": 1,
        "rejected": 3,
        "rejectedByReason": {"checkout_without_checkin": 1, "duplicate_checkin": 2},
        "hours": [
            {"start": "2026-03-10T08:00:00+05:30", "checkins": 1, "checkouts": 0, "fevers": 0},
            {"start": "2026-03-10T09:00:00+05:30", "checkins": 1, "checkouts": 0, "fevers": 1},
            {"start": "2026-03-10T15:00:00+05:30", "checkins": 0, "checkouts": 1, "fevers": 0},
        ],
    }


def test_detail_sorts_hours_numerically_not_as_text() -> None:
    value = {**empty(), "hours": {"36000": [1, 0, 0], "7200": [2, 0, 0], "100000": [3, 0, 0]}}
    hours = detail("S", "1970-01-01", value, ZoneInfo("UTC"))["hours"]
    assert [h["start"] for h in hours] == [
        "1970-01-01T02:00:00+00:00", "1970-01-01T10:00:00+00:00", "1970-01-02T03:46:40+00:00",
    ]
    assert [h["checkins"] for h in hours] == [2, 1, 3]


def test_detail_of_no_value() -> None:
    out = detail("S", "2026-03-10", None, KOLKATA)
    assert out["hours"] == []
    assert out["rejectedByReason"] == {}
    assert out["present"] == 0


# --- ranked ------------------------------------------------------------------------------------------------


def row(school: str, fevers: int, checkins: int) -> dict[str, Any]:
    return {"schoolId": school, "fevers": fevers, "checkins": checkins}


def test_ranked_by_fevers_then_checkins_descending() -> None:
    rows = [row("A", 0, 500), row("B", 3, 10), row("C", 3, 200), row("D", 1, 1000), row("E", 0, 900)]
    assert [r["schoolId"] for r in ranked(rows, 100)] == ["C", "B", "D", "E", "A"]


def test_ranked_ties_are_stable_by_school_id() -> None:
    rows = [row("Z", 1, 5), row("M", 1, 5), row("A", 1, 5)]
    assert [r["schoolId"] for r in ranked(rows, 10)] == ["A", "M", "Z"]


def test_ranked_applies_the_limit() -> None:
    rows = [row(f"S{i:02d}", i % 3, i) for i in range(20)]
    top = ranked(rows, 5)
    assert [r["schoolId"] for r in top] == ["S17", "S14", "S11", "S08", "S05"]
    assert ranked(rows, 0) == []
    assert len(ranked(rows, 100)) == 20


def test_ranked_accepts_a_generator_and_keeps_rows_whole() -> None:
    rows = [totals("A", "2026-03-10", None), totals("B", "2026-03-10", {**empty(), "checkins": 4, "fevers": 1})]
    out = ranked((r for r in rows), 10)
    assert out[0] == rows[1]
    assert out[1] == rows[0]


# --- keys ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("school", ["SCH-001", "a|b", "|", "||x||", "", "学校|1"])
def test_table_key_round_trip(school: str) -> None:
    key = table_key(school, "2026-03-10")
    assert split_key(key) == (school, "2026-03-10")


def test_table_key_layout() -> None:
    assert table_key("a|b", "2026-03-10") == "2026-03-10|a|b"
