"""A realistic school morning of gate taps, with the totals a correct pipeline must show.

The generator decides what every student does (first check-in, card bounce,
re-tap minutes later, check-out, forgotten check-out, a check-out with no
check-in that day), so it knows each tap's fate by construction and never
borrows the pipeline's rules to compute the expected numbers.

Concurrent requests can be acknowledged in any order, and the pipeline decides
in acknowledgement order. The taps are therefore split into phases that are
played one after the other, each fully acknowledged before the next; within a
phase every ordering gives the same totals:

1. every attending student's first check-in, and the check-outs of students
   who never check in that day (always rejected: checkout_without_checkin);
2. duplicate check-ins: card bounces (same temperature, 0.3-2 s later) and
   re-taps minutes later (all rejected: duplicate_checkin);
3. check-outs of students who did not forget (all counted);
4. duplicate check-outs (all rejected: duplicate_checkout).

The module is pure: no clock, no network, no files. Pass `now_ms` in.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

Tap = dict[str, Any]
Key = tuple[str, str]  # (schoolId, school-local ISO date)

PHASE_NAMES = ("check-ins", "duplicate check-ins", "check-outs", "duplicate check-outs")
DUPLICATE_CHECKIN = "duplicate_checkin"
CHECKOUT_WITHOUT_CHECKIN = "checkout_without_checkin"
DUPLICATE_CHECKOUT = "duplicate_checkout"

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS

# Every tap lies within the last six hours and never in the future.
WINDOW_MS = 6 * HOUR_MS
START_MARGIN_MS = 5 * MINUTE_MS  # the earliest tap stays this far inside the window
END_MARGIN_MS = 1 * MINUTE_MS  # the last tap is at least this long before now

# Arrivals: most in the 35 minutes before the bell, busiest in the last 10.
EARLY_MS = 60 * MINUTE_MS  # the keenest arrive an hour before the bell
PEAK_MS = 35 * MINUTE_MS
RUSH_MS = 10 * MINUTE_MS
LATE_MS = 20 * MINUTE_MS  # latecomers up to 20 minutes after the bell
ARRIVAL_MIX = (0.03, 0.36, 0.55, 0.06)  # early, ramp (35..10 min), rush (last 10), late

# Departures spread over about an hour after the last lesson.
DEPARTURE_MS = 60 * MINUTE_MS
CHECKIN_RETAP_MS = (2 * MINUTE_MS, 15 * MINUTE_MS)
CHECKOUT_RETAP_MS = (1 * MINUTE_MS, 10 * MINUTE_MS)
BOUNCE_MS = (300, 2000)  # a card read again 0.3-2 s after the previous read
MAX_BOUNCES = 2  # 2-3 reads in all
TAIL_MS = DEPARTURE_MS + CHECKOUT_RETAP_MS[1] + MAX_BOUNCES * BOUNCE_MS[1]

TARGET_LESSONS_MS = 210 * MINUTE_MS
# Late arrivals and their re-taps all happen before dismissal.
MIN_LESSONS_MS = LATE_MS + CHECKIN_RETAP_MS[1] + MAX_BOUNCES * BOUNCE_MS[1] + 5 * MINUTE_MS

# Healthy body temperature: mean 36.6 C, 99% within 35.5..37.7; fevers about 1%.
HEALTHY_MEAN, HEALTHY_SD = 36.6, 0.42
HEALTHY_RANGE = (35.0, 37.9)
FEVER_RANGE = (38.0, 39.8)
FEVER_RATE = 0.01
IMAGE_RATE = 0.7


@dataclass(frozen=True)
class Totals:
    """One school's numbers for one school-local day, as the dashboard shows them."""

    checkins: int = 0
    checkouts: int = 0
    present: int = 0
    fevers: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class HourTotals:
    """Counted taps of one school-local hour (the dashboard's `hours` buckets)."""

    checkins: int = 0
    checkouts: int = 0
    fevers: int = 0


@dataclass(frozen=True)
class Morning:
    """The taps to send, phase by phase, and everything a correct dashboard must show.

    `hours` is keyed by the ISO start of each local hour that has counted taps;
    hours with nothing counted are left out.
    """

    phases: list[list[Tap]]
    expected: dict[Key, Totals]
    reasons: dict[Key, dict[str, int]]
    hours: dict[Key, dict[str, HourTotals]]
    schools: list[str]
    date: str
    bell_ms: int
    dismissal_ms: int
    seed: int
    phase_names: tuple[str, ...] = PHASE_NAMES

    @property
    def total_taps(self) -> int:
        return sum(len(phase) for phase in self.phases)

    def grand_total(self) -> Totals:
        """All schools added up, for one-line summaries."""
        sums = Counter[str]()
        for totals in self.expected.values():
            for name in ("checkins", "checkouts", "present", "fevers", "rejected"):
                sums[name] += getattr(totals, name)
        return Totals(**sums)


@dataclass
class _Tally:
    """Running counts for one (school, date) while the morning is built."""

    checkins: int = 0
    checkouts: int = 0
    fevers: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    hours: dict[str, list[int]] = field(default_factory=dict)

    def hour(self, iso: str) -> list[int]:
        return self.hours.setdefault(iso, [0, 0, 0])


def _local(ms: int, tz: tzinfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz)


def _local_date(ms: int, tz: tzinfo) -> str:
    return _local(ms, tz).date().isoformat()


def _hour_start_iso(ms: int, tz: tzinfo) -> str:
    return _local(ms, tz).replace(minute=0, second=0, microsecond=0).isoformat()


def _first_ms_of_date(day: str, lo: int, hi: int, tz: tzinfo) -> int:
    """The first millisecond in (lo, hi] whose local date is `day` (local dates only grow)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _local_date(mid, tz) >= day:
            hi = mid
        else:
            lo = mid
    return hi


def _layout(now_ms: int, tz: tzinfo) -> tuple[int, int]:
    """Bell and dismissal: the morning ends just before now, inside the six-hour window,
    on a single school-local date (a student's taps split over two dates would change
    their outcomes). Near local midnight the larger side of midnight is used."""
    lo = now_ms - WINDOW_MS + START_MARGIN_MS
    hi = now_ms - END_MARGIN_MS
    last_day = _local_date(hi, tz)
    if _local_date(lo, tz) != last_day:
        midnight = _first_ms_of_date(last_day, lo, hi, tz)
        if hi - midnight >= midnight - lo:
            lo = midnight
        else:
            hi = midnight - 1
    dismissal = (hi - TAIL_MS) // MINUTE_MS * MINUTE_MS
    lessons = min(TARGET_LESSONS_MS, (dismissal - EARLY_MS - lo) // MINUTE_MS * MINUTE_MS)
    if lessons < MIN_LESSONS_MS:
        raise ValueError("no room for a school morning in the last six hours")
    return dismissal - lessons, dismissal


def _arrival_offset(rng: random.Random) -> int:
    """Milliseconds from the bell (negative = before it)."""
    pick = rng.random()
    early, ramp, rush, _late = ARRIVAL_MIX
    if pick < early:
        return -rng.randint(PEAK_MS, EARLY_MS)
    if pick < early + ramp:
        # Rising towards the rush: more arrive at 10 minutes than at 35.
        return -int(rng.triangular(RUSH_MS, PEAK_MS, RUSH_MS))
    if pick < early + ramp + rush:
        return -rng.randint(0, RUSH_MS)
    return rng.randint(1, LATE_MS)


def _departure_offset(rng: random.Random) -> int:
    """Milliseconds after dismissal: a crowd at first, stragglers for an hour."""
    return int(rng.triangular(0, DEPARTURE_MS, 8 * MINUTE_MS))


def _healthy(rng: random.Random) -> float:
    low, high = HEALTHY_RANGE
    return round(min(high, max(low, rng.gauss(HEALTHY_MEAN, HEALTHY_SD))), 1)


def _reading(rng: random.Random, true_temp: float) -> float:
    """A second measurement of the same student: close to the first, same class."""
    low, high = FEVER_RANGE if true_temp >= FEVER_RANGE[0] else HEALTHY_RANGE
    return round(min(high, max(low, true_temp + rng.gauss(0.0, 0.15))), 1)


def _object_id(seconds: int, process: int, counter: int) -> str:
    """A MongoDB ObjectId-shaped id: 4-byte time, 5-byte process random, 3-byte counter."""
    return f"{seconds & 0xFFFFFFFF:08x}{process:010x}{counter & 0xFFFFFF:06x}"


class _Builder:
    """Makes taps and records, as it makes them, what each one must do to the counts."""

    def __init__(self, rng: random.Random, tz: tzinfo, day: str, fever_threshold: float) -> None:
        self.rng = rng
        self.tz = tz
        self.day = day
        self.fever_threshold = fever_threshold
        self.phases: list[list[Tap]] = [[] for _ in PHASE_NAMES]
        self.tallies: dict[Key, _Tally] = {}

    def _tap(self, phase: int, kind: str, school: str, user: str, ts: int, temp: float) -> Tap:
        image = ""
        if self.rng.random() < IMAGE_RATE:
            photo = f"{self.rng.getrandbits(64):016x}"
            image = f"https://img.rollcall.example/{school}/{self.day}/{photo}.jpg"
        tap: Tap = {
            "type": kind,
            "userId": user,
            "schoolId": school,
            "timestamp": ts,
            "temperature": temp,
            "image": image,
        }
        self.phases[phase].append(tap)
        return tap

    def _tally(self, school: str) -> _Tally:
        return self.tallies.setdefault((school, self.day), _Tally())

    def school(self, school: str) -> None:
        """Every school has expected totals, zeros included."""
        self._tally(school)

    def accept(self, phase: int, kind: str, school: str, user: str, ts: int, temp: float) -> Tap:
        """A tap that counts: the first check-in, or the check-out that follows it."""
        tap = self._tap(phase, kind, school, user, ts, temp)
        tally = self._tally(school)
        hour = tally.hour(_hour_start_iso(ts, self.tz))
        if kind == "checkin":
            tally.checkins += 1
            hour[0] += 1
            if temp >= self.fever_threshold:
                tally.fevers += 1
                hour[2] += 1
        else:
            tally.checkouts += 1
            hour[1] += 1
        return tap

    def reject(
        self, phase: int, kind: str, school: str, user: str, ts: int, temp: float, reason: str
    ) -> Tap:
        """A tap that must not count, with the reason the dashboard should give."""
        self._tally(school).reasons[reason] += 1
        return self._tap(phase, kind, school, user, ts, temp)

    def bounce(self, phase: int, first: Tap, reason: str) -> None:
        """The reader sees the same card again: 1-2 more reads, same temperature."""
        ts = first["timestamp"]
        for _ in range(self.rng.randint(1, MAX_BOUNCES)):
            ts += self.rng.randint(*BOUNCE_MS)
            self.reject(
                phase, first["type"], first["schoolId"], first["userId"], ts,
                first["temperature"], reason,
            )


def plan_morning(
    schools: int,
    students_per_school: int,
    *,
    now_ms: int,
    tz: tzinfo,
    fever_threshold: float,
    seed: int,
    dup_rate: float = 0.03,
    orphan_rate: float = 0.01,
    forget_rate: float = 0.02,
    fever_rate: float = FEVER_RATE,
) -> Morning:
    """Plan one school morning ending just before `now_ms`.

    The same seed gives the same roster and behaviour; `now_ms` only moves it in time.
    Rates are per student: `dup_rate` applies separately to check-in bounces,
    check-in re-taps, check-out bounces and check-out re-taps.
    """
    if schools < 1 or students_per_school < 1:
        raise ValueError("need at least one school and one student per school")
    for name, rate in (
        ("dup_rate", dup_rate),
        ("orphan_rate", orphan_rate),
        ("forget_rate", forget_rate),
        ("fever_rate", fever_rate),
    ):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {rate}")

    rng = random.Random(seed)
    bell, dismissal = _layout(now_ms, tz)
    day = _local_date(bell, tz)
    builder = _Builder(rng, tz, day, fever_threshold)
    process = rng.getrandbits(40)
    counter = rng.getrandbits(24)
    school_ids: list[str] = []

    for number in range(1, schools + 1):
        school = f"SCH-{number:04d}"
        school_ids.append(school)
        enrolled_s = rng.randint(1_546_300_800, 1_725_148_800)  # roster imported 2019..2024
        builder.school(school)
        for _ in range(students_per_school):
            counter += 1
            user = _object_id(enrolled_s, process, counter)
            fever = rng.random() < fever_rate
            temp = round(rng.uniform(*FEVER_RANGE), 1) if fever else _healthy(rng)

            if rng.random() < orphan_rate:
                # Never checks in today, yet taps out in the afternoon.
                ts = dismissal + _departure_offset(rng)
                temp_out = _reading(rng, temp)
                builder.reject(0, "checkout", school, user, ts, temp_out, CHECKOUT_WITHOUT_CHECKIN)
                continue

            checkin = builder.accept(0, "checkin", school, user, bell + _arrival_offset(rng), temp)
            if rng.random() < dup_rate:
                builder.bounce(1, checkin, DUPLICATE_CHECKIN)
            if rng.random() < dup_rate:
                ts = checkin["timestamp"] + rng.randint(*CHECKIN_RETAP_MS)
                temp_again = _reading(rng, temp)
                builder.reject(1, "checkin", school, user, ts, temp_again, DUPLICATE_CHECKIN)

            if rng.random() < forget_rate:
                continue  # forgets to tap out: stays "present"
            ts = dismissal + _departure_offset(rng)
            checkout = builder.accept(2, "checkout", school, user, ts, _reading(rng, temp))
            if rng.random() < dup_rate:
                builder.bounce(3, checkout, DUPLICATE_CHECKOUT)
            if rng.random() < dup_rate:
                ts = checkout["timestamp"] + rng.randint(*CHECKOUT_RETAP_MS)
                temp_out = _reading(rng, temp)
                builder.reject(3, "checkout", school, user, ts, temp_out, DUPLICATE_CHECKOUT)

    phases, tallies = builder.phases, builder.tallies
    for phase in phases:
        phase.sort(key=lambda t: t["timestamp"])  # devices upload roughly in tap order
    if any(_local_date(t["timestamp"], tz) != day for phase in phases for t in phase):
        raise RuntimeError("planned taps span two school-local dates")  # a _layout bug

    expected: dict[Key, Totals] = {}
    reasons: dict[Key, dict[str, int]] = {}
    hours: dict[Key, dict[str, HourTotals]] = {}
    for key, t in tallies.items():
        expected[key] = Totals(
            checkins=t.checkins,
            checkouts=t.checkouts,
            present=t.checkins - t.checkouts,
            fevers=t.fevers,
            rejected=sum(t.reasons.values()),
        )
        reasons[key] = dict(sorted(t.reasons.items()))
        hours[key] = {iso: HourTotals(*counts) for iso, counts in sorted(t.hours.items())}
    return Morning(
        phases=phases,
        expected=expected,
        reasons=reasons,
        hours=hours,
        schools=school_ids,
        date=day,
        bell_ms=bell,
        dismissal_ms=dismissal,
        seed=seed,
    )
