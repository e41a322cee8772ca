"""The workload generator's taps are valid device taps and its ground truth is exact.

The ground truth is checked two ways: against the structure of the phases
(who checked in, who bounced, who is an orphan), and against a reference
replay of the counting rules in phase order, with every phase shuffled, since
concurrent requests inside a phase may be acknowledged in any order.
"""

from __future__ import annotations

import random
import re
import statistics
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ops.workload import (
    CHECKOUT_WITHOUT_CHECKIN,
    DUPLICATE_CHECKIN,
    DUPLICATE_CHECKOUT,
    HourTotals,
    Morning,
    Totals,
    plan_morning,
)

UTC = ZoneInfo("UTC")
KOLKATA = ZoneInfo("Asia/Kolkata")
NOW_MS = int(datetime(2026, 5, 28, 15, 30, tzinfo=KOLKATA).timestamp() * 1000)  # an afternoon
SIX_HOURS_MS = 6 * 3600 * 1000
OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")
SCHOOL_ID = re.compile(r"^SCH-\d{4}$")
FIELDS = {"type", "userId", "schoolId", "timestamp", "temperature", "image"}


def plan(
    schools: int = 40,
    students: int = 300,
    *,
    now_ms: int = NOW_MS,
    tz: ZoneInfo = KOLKATA,
    fever_threshold: float = 38.0,
    seed: int = 11,
    **rates: float,
) -> Morning:
    return plan_morning(
        schools,
        students,
        now_ms=now_ms,
        tz=tz,
        fever_threshold=fever_threshold,
        seed=seed,
        **rates,
    )


@pytest.fixture(scope="module")
def morning() -> Morning:
    return plan()


def all_taps(m: Morning) -> list[dict[str, Any]]:
    return [tap for phase in m.phases for tap in phase]


def local_date(ms: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).date().isoformat()


def replay(
    m: Morning, tz: ZoneInfo, threshold: float, rng: random.Random
) -> dict[tuple[str, str], dict[str, Any]]:
    """The counting rules of the design, applied in phase order with each phase shuffled."""
    state: dict[tuple[str, str, str], list[bool]] = {}
    out: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {
            "checkins": 0, "checkouts": 0, "fevers": 0, "reasons": Counter(), "hours": Counter()
        }
    )
    for phase in m.phases:
        order = list(phase)
        rng.shuffle(order)
        for tap in order:
            day = local_date(tap["timestamp"], tz)
            hour = datetime.fromtimestamp(tap["timestamp"] / 1000, tz).replace(
                minute=0, second=0, microsecond=0
            ).isoformat()
            key = (tap["schoolId"], day)
            seen = state.setdefault((tap["schoolId"], day, tap["userId"]), [False, False])
            totals = out[key]
            if tap["type"] == "checkin":
                if seen[0]:
                    totals["reasons"][DUPLICATE_CHECKIN] += 1
                    continue
                seen[0] = True
                totals["checkins"] += 1
                totals["hours"][(hour, "checkins")] += 1
                if tap["temperature"] >= threshold:
                    totals["fevers"] += 1
                    totals["hours"][(hour, "fevers")] += 1
            elif not seen[0]:
                totals["reasons"][CHECKOUT_WITHOUT_CHECKIN] += 1
            elif seen[1]:
                totals["reasons"][DUPLICATE_CHECKOUT] += 1
            else:
                seen[1] = True
                totals["checkouts"] += 1
                totals["hours"][(hour, "checkouts")] += 1
    return out


# --- every tap is a valid device tap -------------------------------------------------


def test_taps_have_exactly_the_device_fields_with_valid_values(morning: Morning) -> None:
    taps = all_taps(morning)
    assert len(taps) == morning.total_taps > 12_000
    for tap in taps:
        assert set(tap) == FIELDS
        assert tap["type"] in ("checkin", "checkout")
        assert isinstance(tap["userId"], str) and OBJECT_ID.match(tap["userId"])
        assert isinstance(tap["schoolId"], str) and SCHOOL_ID.match(tap["schoolId"])
        assert type(tap["timestamp"]) is int and tap["timestamp"] > 0
        assert type(tap["temperature"]) is float and 30.0 <= tap["temperature"] <= 45.0
        assert round(tap["temperature"], 1) == tap["temperature"]
        assert isinstance(tap["image"], str) and len(tap["image"]) <= 2048
        assert tap["image"] == "" or tap["image"].startswith("https://")


def test_timestamps_lie_in_the_last_six_hours_and_not_in_the_future(morning: Morning) -> None:
    stamps = [tap["timestamp"] for tap in all_taps(morning)]
    assert min(stamps) >= NOW_MS - SIX_HOURS_MS
    assert max(stamps) <= NOW_MS
    # The morning ends just before now, not hours earlier.
    assert max(stamps) >= NOW_MS - 30 * 60 * 1000


def test_student_ids_are_unique_across_schools(morning: Morning) -> None:
    schools_of: dict[str, set[str]] = defaultdict(set)
    for tap in all_taps(morning):
        schools_of[tap["userId"]].add(tap["schoolId"])
    assert all(len(s) == 1 for s in schools_of.values())
    assert len(schools_of) == 40 * 300  # every rostered student taps at least once


def test_every_school_has_expected_totals(morning: Morning) -> None:
    assert morning.schools == [f"SCH-{n:04d}" for n in range(1, 41)]
    assert sorted(morning.expected) == [(s, morning.date) for s in morning.schools]
    assert morning.expected.keys() == morning.reasons.keys() == morning.hours.keys()


# --- the ground truth ------------------------------------------------------------------


def test_expected_checkins_are_the_distinct_first_checkins(morning: Morning) -> None:
    first = morning.phases[0]
    by_key: dict[tuple[str, str], set[str]] = defaultdict(set)
    for tap in first:
        if tap["type"] == "checkin":
            key = (tap["schoolId"], local_date(tap["timestamp"], KOLKATA))
            assert tap["userId"] not in by_key[key], "two check-ins of one student in phase 1"
            by_key[key].add(tap["userId"])
    for key, totals in morning.expected.items():
        assert totals.checkins == len(by_key[key])


def test_orphans_never_check_in_and_are_rejected(morning: Morning) -> None:
    checked_in = {t["userId"] for t in all_taps(morning) if t["type"] == "checkin"}
    orphans = [t for t in morning.phases[0] if t["type"] == "checkout"]
    assert orphans, "the default rates must produce some check-outs without check-in"
    per_school = Counter(t["schoolId"] for t in orphans)
    for tap in orphans:
        assert tap["userId"] not in checked_in
        assert tap["timestamp"] >= morning.dismissal_ms  # they tap out with everyone else
    for (school, _), reasons in morning.reasons.items():
        assert reasons.get(CHECKOUT_WITHOUT_CHECKIN, 0) == per_school[school]
    orphan_ids = {t["userId"] for t in orphans}
    later = [t for phase in morning.phases[1:] for t in phase if t["userId"] in orphan_ids]
    assert later == []


def test_duplicates_follow_their_original(morning: Morning) -> None:
    checkins = {t["userId"]: t for t in morning.phases[0] if t["type"] == "checkin"}
    checkouts = {t["userId"]: t for t in morning.phases[2]}
    assert all(t["type"] == "checkout" for t in morning.phases[2])
    assert len(checkouts) == len(morning.phases[2]), "a student taps out twice in phase 3"
    assert checkouts.keys() <= checkins.keys()
    bounces = retaps = 0
    for phase, originals, kind in ((1, checkins, "checkin"), (3, checkouts, "checkout")):
        assert morning.phases[phase], f"phase {phase + 1} is empty"
        for tap in morning.phases[phase]:
            assert tap["type"] == kind
            first = originals[tap["userId"]]
            gap = tap["timestamp"] - first["timestamp"]
            assert 300 <= gap <= 15 * 60 * 1000
            if gap <= 4000:  # a card bounce: the same reading
                bounces += 1
                assert tap["temperature"] == first["temperature"]
            else:
                retaps += 1
                assert gap >= 60 * 1000
    assert bounces and retaps


def test_totals_add_up(morning: Morning) -> None:
    per_school = Counter(t["schoolId"] for t in all_taps(morning))
    for (school, _), totals in morning.expected.items():
        assert totals.present == totals.checkins - totals.checkouts >= 0
        assert totals.rejected == sum(morning.reasons[(school, morning.date)].values())
        # Every tap either counts (one check-in or one check-out) or is rejected.
        assert per_school[school] == totals.checkins + totals.checkouts + totals.rejected
        assert 0 <= totals.fevers <= totals.checkins


def test_fevers_are_accepted_checkins_at_or_above_the_threshold(morning: Morning) -> None:
    fevers = Counter(
        t["schoolId"]
        for t in morning.phases[0]
        if t["type"] == "checkin" and t["temperature"] >= 38.0
    )
    for (school, _), totals in morning.expected.items():
        assert totals.fevers == fevers[school]
    total = morning.grand_total()
    assert 0.004 * total.checkins <= total.fevers <= 0.02 * total.checkins  # about 1%


def test_fevers_follow_a_lower_threshold() -> None:
    strict, lenient = plan(5, 200, seed=3), plan(5, 200, seed=3, fever_threshold=37.2)
    assert strict.phases == lenient.phases
    assert lenient.grand_total().fevers > 3 * strict.grand_total().fevers


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reference_replay_in_any_order_within_phases_gives_the_expected_totals(seed: int) -> None:
    m = plan(12, 150, seed=seed, dup_rate=0.2, orphan_rate=0.1, forget_rate=0.1)
    for shuffle in range(3):
        got = replay(m, KOLKATA, 38.0, random.Random(shuffle))
        assert set(got) == set(m.expected)
        for key, want in m.expected.items():
            g = got[key]
            rejected = sum(g["reasons"].values())
            assert Totals(
                g["checkins"], g["checkouts"], g["checkins"] - g["checkouts"], g["fevers"], rejected
            ) == want, key
            assert dict(g["reasons"]) == m.reasons[key]
            hours = {
                start: HourTotals(
                    g["hours"][(start, "checkins")],
                    g["hours"][(start, "checkouts")],
                    g["hours"][(start, "fevers")],
                )
                for start, _ in g["hours"]
            }
            assert hours == m.hours[key]


def test_without_mishaps_nothing_is_rejected() -> None:
    m = plan(3, 50, dup_rate=0.0, orphan_rate=0.0, forget_rate=0.0)
    assert [len(p) for p in m.phases] == [150, 0, 150, 0]
    for totals in m.expected.values():
        assert totals == Totals(
            checkins=50, checkouts=50, present=0, fevers=totals.fevers, rejected=0
        )


def test_rates_are_roughly_honoured(morning: Morning) -> None:
    students = 40 * 300
    total = morning.grand_total()
    orphans = sum(r.get(CHECKOUT_WITHOUT_CHECKIN, 0) for r in morning.reasons.values())
    assert 0.005 * students <= orphans <= 0.016 * students
    forgot = total.checkins - total.checkouts
    assert 0.012 * total.checkins <= forgot <= 0.03 * total.checkins
    dup_in = sum(r.get(DUPLICATE_CHECKIN, 0) for r in morning.reasons.values())
    # bounces (1-2 extra reads) and re-taps, each for about 3% of students
    assert 0.045 * total.checkins <= dup_in <= 0.09 * total.checkins


# --- realism -------------------------------------------------------------------------


def test_arrivals_bunch_before_the_bell(morning: Morning) -> None:
    minutes = [
        (t["timestamp"] - morning.bell_ms) / 60_000
        for t in morning.phases[0]
        if t["type"] == "checkin"
    ]
    peak = sum(-35 <= m <= 0 for m in minutes) / len(minutes)
    rush = sum(-10 <= m <= 0 for m in minutes) / len(minutes)
    assert peak >= 0.8
    assert rush >= 0.45
    # Busiest in the last 10 minutes: denser than the 25 minutes before them.
    ramp = sum(-35 <= m < -10 for m in minutes) / len(minutes)
    assert rush / 10 > 2 * ramp / 25


def test_departures_spread_over_about_an_hour(morning: Morning) -> None:
    minutes = sorted((t["timestamp"] - morning.dismissal_ms) / 60_000 for t in morning.phases[2])
    assert minutes[0] >= 0 and minutes[-1] <= 60
    assert minutes[len(minutes) // 2] < 30  # a crowd first
    assert minutes[int(len(minutes) * 0.95)] > 35  # stragglers for most of the hour
    assert morning.dismissal_ms - morning.bell_ms >= 60 * 60_000


def test_healthy_temperatures_look_like_people(morning: Morning) -> None:
    temps = [t["temperature"] for t in morning.phases[0] if t["type"] == "checkin"]
    healthy = [x for x in temps if x < 38.0]
    assert 36.5 <= statistics.fmean(healthy) <= 36.7
    assert 0.3 <= statistics.pstdev(healthy) <= 0.5
    assert min(healthy) >= 35.0 and max(healthy) <= 37.9
    inside = sum(35.3 <= x <= 37.7 for x in healthy) / len(healthy)
    assert inside >= 0.97
    assert all(38.0 <= x <= 39.8 for x in temps if x >= 38.0)


# --- time placement ------------------------------------------------------------------


@pytest.mark.parametrize(
    "tz_name", ["UTC", "Asia/Kolkata", "America/New_York", "Pacific/Chatham", "Pacific/Kiritimati"]
)
@pytest.mark.parametrize("hour", range(0, 24, 1))
def test_the_morning_fits_on_one_local_date_at_any_time_of_day(tz_name: str, hour: int) -> None:
    tz = ZoneInfo(tz_name)
    now = int(datetime(2026, 3, 8, hour, 17, tzinfo=tz).timestamp() * 1000)  # US DST day
    m = plan(2, 40, now_ms=now, tz=tz, seed=hour)
    stamps = [t["timestamp"] for t in all_taps(m)]
    assert now - SIX_HOURS_MS <= min(stamps) and max(stamps) <= now
    assert {local_date(ts, tz) for ts in stamps} == {m.date}
    # It ends just before now, or, when now is shortly after local midnight, just before it.
    half_hour = 30 * 60 * 1000
    assert max(stamps) >= now - half_hour or local_date(max(stamps) + half_hour, tz) != m.date
    for key, hours in m.hours.items():
        for start in hours:
            begin = datetime.fromisoformat(start)
            assert begin.minute == 0 and begin.second == 0 and begin.utcoffset() is not None
        assert sum(h.checkins for h in hours.values()) == m.expected[key].checkins
        assert sum(h.checkouts for h in hours.values()) == m.expected[key].checkouts
        assert sum(h.fevers for h in hours.values()) == m.expected[key].fevers


def test_hours_are_local_for_a_half_hour_zone() -> None:
    m = plan(2, 50, tz=KOLKATA)
    for hours in m.hours.values():
        for start in hours:
            assert start.endswith("+05:30")
            assert datetime.fromisoformat(start).astimezone(UTC).minute == 30


# --- reproducibility -----------------------------------------------------------------


def test_same_seed_same_morning() -> None:
    a, b = plan(5, 100, seed=42), plan(5, 100, seed=42)
    assert a.phases == b.phases
    assert a.expected == b.expected and a.reasons == b.reasons and a.hours == b.hours


def test_other_seed_other_morning() -> None:
    a, b = plan(5, 100, seed=42), plan(5, 100, seed=43)
    assert a.phases != b.phases
    ids_a = {t["userId"] for t in all_taps(a)}
    ids_b = {t["userId"] for t in all_taps(b)}
    assert not ids_a & ids_b  # a fresh roster: a second run is not all duplicates


def test_later_now_moves_the_same_roster_in_time() -> None:
    a = plan(3, 60, seed=5)
    b = plan(3, 60, seed=5, now_ms=NOW_MS + 3_600_000)
    assert [len(p) for p in a.phases] == [len(p) for p in b.phases]
    assert {t["userId"] for t in all_taps(a)} == {t["userId"] for t in all_taps(b)}
    assert max(t["timestamp"] for t in all_taps(b)) > max(t["timestamp"] for t in all_taps(a))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        plan(0, 10)
    with pytest.raises(ValueError):
        plan(1, 0)
    with pytest.raises(ValueError):
        plan(1, 10, dup_rate=1.5)
