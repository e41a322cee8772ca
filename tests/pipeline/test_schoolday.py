"""Unit tests for the school-local calendar (pipeline.schoolday)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from pipeline.schoolday import (
    day_end_epoch,
    hour_start_iso,
    local_date,
    local_datetime,
    local_hour_start,
    parse_day,
    today,
)

KOLKATA = ZoneInfo("Asia/Kolkata")  # UTC+05:30, no DST
BERLIN = ZoneInfo("Europe/Berlin")  # CET/CEST
UTC = ZoneInfo("UTC")


def epoch_s(iso: str) -> int:
    """Epoch seconds of an ISO timestamp with an explicit offset."""
    return int(datetime.fromisoformat(iso).timestamp())


def epoch_ms(iso: str) -> int:
    return epoch_s(iso) * 1000


# --- local_date ------------------------------------------------------------------


def test_kolkata_last_second_before_local_midnight_is_the_same_day() -> None:
    assert local_date(epoch_ms("2026-03-10T18:29:59+00:00"), KOLKATA) == "2026-03-10"


def test_kolkata_last_millisecond_before_local_midnight_is_the_same_day() -> None:
    assert local_date(epoch_ms("2026-03-10T18:30:00+00:00") - 1, KOLKATA) == "2026-03-10"


def test_kolkata_local_midnight_is_the_next_day() -> None:
    assert local_date(epoch_ms("2026-03-10T18:30:00+00:00"), KOLKATA) == "2026-03-11"


def test_kolkata_early_utc_morning_is_already_local_day() -> None:
    # 2026-03-10T00:00Z is 05:30 local on the same date; 2026-03-09T19:00Z is 00:30 local on the 10th.
    assert local_date(epoch_ms("2026-03-10T00:00:00+00:00"), KOLKATA) == "2026-03-10"
    assert local_date(epoch_ms("2026-03-09T19:00:00+00:00"), KOLKATA) == "2026-03-10"


def test_utc_day_boundary() -> None:
    assert local_date(epoch_ms("2026-03-10T23:59:59+00:00"), UTC) == "2026-03-10"
    assert local_date(epoch_ms("2026-03-11T00:00:00+00:00"), UTC) == "2026-03-11"


def test_local_date_across_a_year_end() -> None:
    assert local_date(epoch_ms("2026-12-31T18:30:00+00:00"), KOLKATA) == "2027-01-01"
    assert local_date(epoch_ms("2026-12-31T18:29:59+00:00"), KOLKATA) == "2026-12-31"


def test_local_datetime_is_aware_and_in_the_zone() -> None:
    dt = local_datetime(epoch_ms("2026-03-10T02:45:00+00:00") + 250, KOLKATA)
    assert dt.utcoffset() == timedelta(hours=5, minutes=30)
    assert (dt.hour, dt.minute, dt.second, dt.microsecond) == (8, 15, 0, 250_000)


# --- local_hour_start ------------------------------------------------------------


@pytest.mark.parametrize(
    ("tap_utc", "hour_utc"),
    [
        ("2026-03-10T02:30:00+00:00", "2026-03-10T02:30:00+00:00"),  # 08:00 IST exactly
        ("2026-03-10T02:45:00+00:00", "2026-03-10T02:30:00+00:00"),  # 08:15 IST
        ("2026-03-10T03:29:59+00:00", "2026-03-10T02:30:00+00:00"),  # 08:59:59 IST
        ("2026-03-10T03:30:00+00:00", "2026-03-10T03:30:00+00:00"),  # 09:00 IST
        ("2026-03-10T18:45:00+00:00", "2026-03-10T18:30:00+00:00"),  # 00:15 IST next day
    ],
)
def test_kolkata_hours_start_at_half_past_utc(tap_utc: str, hour_utc: str) -> None:
    start = local_hour_start(epoch_ms(tap_utc), KOLKATA)
    assert start == epoch_s(hour_utc)
    assert start % 3600 == 1800


def test_kolkata_last_millisecond_of_an_hour() -> None:
    assert local_hour_start(epoch_ms("2026-03-10T03:30:00+00:00") - 1, KOLKATA) == epoch_s("2026-03-10T02:30:00+00:00")


def test_utc_hours_start_on_the_hour() -> None:
    assert local_hour_start(epoch_ms("2026-03-10T07:59:59+00:00"), UTC) == epoch_s("2026-03-10T07:00:00+00:00")


def test_dst_autumn_repeated_hour_gets_two_distinct_starts() -> None:
    # Berlin 2026-10-25: 03:00 CEST falls back to 02:00 CET at 01:00 UTC; 02:xx local happens twice.
    first = local_hour_start(epoch_ms("2026-10-25T00:15:00+00:00"), BERLIN)  # 02:15 CEST
    second = local_hour_start(epoch_ms("2026-10-25T01:15:00+00:00"), BERLIN)  # 02:15 CET
    assert first == epoch_s("2026-10-25T00:00:00+00:00")
    assert second == epoch_s("2026-10-25T01:00:00+00:00")
    assert second - first == 3600
    assert hour_start_iso(first, BERLIN) == "2026-10-25T02:00:00+02:00"
    assert hour_start_iso(second, BERLIN) == "2026-10-25T02:00:00+01:00"


def test_dst_autumn_hours_around_the_change() -> None:
    starts = [
        local_hour_start(epoch_ms(f"2026-10-24T23:{m}:00+00:00"), BERLIN) for m in ("00", "59")
    ] + [
        local_hour_start(epoch_ms(f"2026-10-25T0{h}:30:00+00:00"), BERLIN) for h in range(4)
    ]
    assert starts == [
        epoch_s("2026-10-24T23:00:00+00:00"),  # 01:00 CEST
        epoch_s("2026-10-24T23:00:00+00:00"),
        epoch_s("2026-10-25T00:00:00+00:00"),  # 02:00 CEST
        epoch_s("2026-10-25T01:00:00+00:00"),  # 02:00 CET
        epoch_s("2026-10-25T02:00:00+00:00"),  # 03:00 CET
        epoch_s("2026-10-25T03:00:00+00:00"),  # 04:00 CET
    ]


def test_dst_spring_skipped_hour() -> None:
    # Berlin 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00 UTC.
    assert local_hour_start(epoch_ms("2026-03-29T00:30:00+00:00"), BERLIN) == epoch_s("2026-03-29T00:00:00+00:00")
    assert local_hour_start(epoch_ms("2026-03-29T01:30:00+00:00"), BERLIN) == epoch_s("2026-03-29T01:00:00+00:00")
    assert hour_start_iso(epoch_s("2026-03-29T01:00:00+00:00"), BERLIN) == "2026-03-29T03:00:00+02:00"


# --- hour_start_iso ----------------------------------------------------------------


def test_hour_start_iso_in_kolkata() -> None:
    assert hour_start_iso(epoch_s("2026-03-10T02:30:00+00:00"), KOLKATA) == "2026-03-10T08:00:00+05:30"


def test_hour_start_iso_in_utc() -> None:
    assert hour_start_iso(0, UTC) == "1970-01-01T00:00:00+00:00"


# --- day_end_epoch -------------------------------------------------------------------


def test_day_end_in_kolkata() -> None:
    assert day_end_epoch("2026-03-10", KOLKATA) == epoch_s("2026-03-10T18:30:00+00:00")


def test_day_end_in_utc() -> None:
    assert day_end_epoch("2026-03-10", UTC) == epoch_s("2026-03-11T00:00:00+00:00")


def test_day_end_is_the_first_instant_of_the_next_local_day() -> None:
    end = day_end_epoch("2026-03-10", KOLKATA)
    assert local_date(end * 1000 - 1, KOLKATA) == "2026-03-10"
    assert local_date(end * 1000, KOLKATA) == "2026-03-11"


def test_day_end_at_year_end() -> None:
    assert day_end_epoch("2026-12-31", KOLKATA) == epoch_s("2026-12-31T18:30:00+00:00")


def test_day_lengths_across_dst_changes() -> None:
    def length(day: str) -> int:
        prev = (datetime.fromisoformat(day) - timedelta(days=1)).date().isoformat()
        return day_end_epoch(day, BERLIN) - day_end_epoch(prev, BERLIN)

    assert length("2026-10-25") == 25 * 3600
    assert length("2026-03-29") == 23 * 3600
    assert length("2026-06-15") == 24 * 3600
    assert day_end_epoch("2026-10-25", BERLIN) == epoch_s("2026-10-25T23:00:00+00:00")


# --- parse_day -------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["2026-03-10", "2024-02-29", "1999-12-31"])
def test_parse_day_accepts_iso_dates(text: str) -> None:
    assert parse_day(text) == text


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2026-02-30", "2026-13-01", "2025-02-29", "10/03/2026", "2026-3-10", "2026-03-10x"]
)
def test_parse_day_rejects_others_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_day(text)
    assert str(info.value) == f"date must be YYYY-MM-DD, got {text!r}"


# --- today ---------------------------------------------------------------------------------


def test_today_uses_the_school_zone() -> None:
    now = datetime(2026, 3, 10, 20, 0, tzinfo=timezone.utc)  # 01:30 on the 11th in Kolkata
    assert today(KOLKATA, now) == "2026-03-11"
    assert today(UTC, now) == "2026-03-10"


def test_today_at_the_kolkata_midnight_boundary() -> None:
    assert today(KOLKATA, datetime(2026, 3, 10, 18, 29, 59, tzinfo=timezone.utc)) == "2026-03-10"
    assert today(KOLKATA, datetime(2026, 3, 10, 18, 30, 0, tzinfo=timezone.utc)) == "2026-03-11"


def test_today_without_now_uses_the_clock() -> None:
    before = datetime.now(KOLKATA).date().isoformat()
    got = today(KOLKATA)
    after = datetime.now(KOLKATA).date().isoformat()
    assert got in {before, after}
