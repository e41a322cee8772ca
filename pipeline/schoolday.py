"""School-local calendar: which day and hour a tap belongs to, by its own timestamp.

Faust windows are aligned to the Unix epoch and expire by wall clock; a school
at UTC+05:30 with devices that upload late needs days and hours of its own.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def local_datetime(ts_ms: int, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, tz)


def local_date(ts_ms: int, tz: ZoneInfo) -> str:
    """ISO date of the school day the tap belongs to."""
    return local_datetime(ts_ms, tz).date().isoformat()


def local_hour_start(ts_ms: int, tz: ZoneInfo) -> int:
    """Epoch seconds at the start of the tap's local hour (UTC+05:30 gives :30 UTC)."""
    dt = local_datetime(ts_ms, tz)
    return int(dt.replace(minute=0, second=0, microsecond=0).timestamp())


def hour_start_iso(epoch_s: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(epoch_s, tz).isoformat()


def today(tz: ZoneInfo, now: datetime | None = None) -> str:
    return (now or datetime.now(tz)).astimezone(tz).date().isoformat()


def day_end_epoch(day: str, tz: ZoneInfo) -> int:
    """Epoch seconds when the local day `day` (ISO) is over."""
    next_day = date.fromisoformat(day) + timedelta(days=1)
    return int(datetime.combine(next_day, time(0), tz).timestamp())


def parse_day(text: str) -> str:
    """A YYYY-MM-DD query value, normalised; ValueError with a clear message otherwise."""
    try:
        if len(text) != 10 or text[4] != "-" or text[7] != "-":
            raise ValueError
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"date must be YYYY-MM-DD, got {text!r}") from None
