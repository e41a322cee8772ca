"""Counters of one school on one school-local day, with its hourly buckets.

One table value per (school, local day) holds the day totals and the hours,
so a batch costs one table update (one changelog record) per school and day.
The value also remembers the last tap record it applied (`applied`: partition
and offset), so an outcome that is delivered again after a crash is skipped
instead of counted twice. Pure: no Faust, no I/O.
"""

from __future__ import annotations

from typing import Any, Iterable
from zoneinfo import ZoneInfo

from pipeline.outcomes import Outcome
from pipeline.schoolday import hour_start_iso, local_hour_start
from pipeline.taps import CHECKIN

SchoolDay = dict[str, Any]


def table_key(school_id: str, day: str) -> str:
    """Day first: a day has no '|', so the key splits back unambiguously."""
    return f"{day}|{school_id}"


def split_key(key: str) -> tuple[str, str]:
    day, school_id = key.split("|", 1)
    return school_id, day


def empty() -> SchoolDay:
    return {"checkins": 0, "checkouts": 0, "fevers": 0, "rejected": {}, "hours": {}, "applied": None}


def already_applied(value: SchoolDay, source: tuple[int, int]) -> bool:
    applied = value.get("applied")
    return applied is not None and applied[0] == source[0] and source[1] <= applied[1]


def fold(
    value: SchoolDay | None,
    outcomes: Iterable[Outcome],
    *,
    tz: ZoneInfo,
    fever_threshold: float,
) -> SchoolDay:
    """The day's counters after `outcomes` (in source order); re-deliveries change nothing."""
    day = empty() if value is None else {**value, "rejected": dict(value["rejected"]), "hours": dict(value["hours"])}
    for o in outcomes:
        if already_applied(day, o.source):
            continue
        day["applied"] = [o.source[0], o.source[1]]
        if o.reason is not None:
            day["rejected"][o.reason] = day["rejected"].get(o.reason, 0) + 1
            continue
        hour = str(local_hour_start(o.tap.timestamp, tz))
        bucket = list(day["hours"].get(hour, (0, 0, 0)))
        if o.tap.type == CHECKIN:
            day["checkins"] += 1
            bucket[0] += 1
            if o.tap.temperature >= fever_threshold:
                day["fevers"] += 1
                bucket[2] += 1
        else:
            day["checkouts"] += 1
            bucket[1] += 1
        day["hours"][hour] = bucket
    return day


def totals(school_id: str, day: str, value: SchoolDay | None) -> dict[str, Any]:
    v = value or empty()
    return {
        "schoolId": school_id,
        "date": day,
        "checkins": v["checkins"],
        "checkouts": v["checkouts"],
        "present": v["checkins"] - v["checkouts"],
        "fevers": v["fevers"],
        "rejected": sum(v["rejected"].values()),
    }


def detail(school_id: str, day: str, value: SchoolDay | None, tz: ZoneInfo) -> dict[str, Any]:
    v = value or empty()
    out = totals(school_id, day, v)
    out["rejectedByReason"] = dict(sorted(v["rejected"].items()))
    out["hours"] = [
        {"start": hour_start_iso(int(h), tz), "checkins": b[0], "checkouts": b[1], "fevers": b[2]}
        for h, b in sorted(v["hours"].items(), key=lambda item: int(item[0]))
    ]
    return out


def ranked(rows: Iterable[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Schools with most fevers first, then most check-ins: who needs attention."""
    return sorted(rows, key=lambda r: (-r["fevers"], -r["checkins"], r["schoolId"]))[:limit]
