"""Dashboard views on the Faust web server: per-school totals for a school-local day."""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View

from pipeline.app import app, settings
from pipeline.health import dependencies
from pipeline.schoolday import parse_day, today
from tables.counts import school_days
from tables.school_day import detail, ranked, split_key, table_key, totals

MAX_LIMIT = 10_000


def _day(request: Request) -> str:
    raw = request.query.get("date")
    return today(settings.tz) if raw in (None, "") else parse_day(raw)


def _limit(request: Request) -> int:
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {raw!r}")
    return int(raw)


def local_school_totals(day: str) -> list[dict[str, Any]]:
    """Totals of every school of `day` whose partitions this worker holds."""
    prefix = f"{day}|"
    rows = []
    for key, value in school_days.items():
        if key.startswith(prefix):
            school_id, _ = split_key(key)
            rows.append(totals(school_id, day, value))
    return rows


@app.page("/schools/")
class Schools(View):
    async def get(self, request: Request) -> Response:
        try:
            day, limit = _day(request), _limit(request)
        except ValueError as exc:
            return self.json({"error": str(exc)}, status=400)
        return self.json({"date": day, "schools": ranked(local_school_totals(day), limit)})


@app.page("/schools/{school_id}/")
class School(View):
    async def get(self, request: Request, school_id: str) -> Response:
        try:
            day = _day(request)
        except ValueError as exc:
            return self.json({"error": str(exc)}, status=400)
        value = school_days.get(table_key(school_id, day))
        return self.json(detail(school_id, day, value, settings.tz))


@app.page("/health/")
class Health(View):
    async def get(self, request: Request) -> Response:
        degraded = dependencies.degraded()
        assigned = sorted(
            f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment()
        ) if app.consumer else []
        body = {
            "status": "degraded" if degraded else "ok",
            "broker": settings.kafka_broker,
            "redis": settings.redis_url,
            "schoolTz": settings.school_tz,
            "assigned": assigned,
            "degraded": degraded,
        }
        return self.json(body, status=200)
