"""Dashboard views on the Faust web server: per-school totals for a school-local day.

Each worker holds the counters of the partitions it owns. A request for one
school is forwarded to the worker that owns the school's partition; the
all-schools view asks every worker for its part and merges them. So the
answer is the same whichever worker receives the request.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from faust.web import Request, Response, View
from yarl import URL

from pipeline.app import app, settings
from pipeline.health import dependencies
from pipeline.partitioning import partition_of
from pipeline.schoolday import parse_day, today
from pipeline.taps import ID_MAX
from tables.counts import school_days
from tables.school_day import detail, ranked, split_key, table_key, totals

MAX_LIMIT = 10_000
LIMIT_PATTERN = re.compile(r"[0-9]{1,6}")  # ASCII digits only: str.isdigit() also takes '²' and '٣'
HOP_HEADER = "X-Rollcall-Forwarded"
PEER_TIMEOUT_S = 5.0


def _day(request: Request) -> str:
    raw = request.query.get("date")
    return today(settings.tz) if raw in (None, "") else parse_day(raw)


def _limit(request: Request) -> int:
    raw = request.query.get("limit", "100")
    if not LIMIT_PATTERN.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {raw[:20]!r}")
    return int(raw)


def _school(school_id: str) -> str:
    if not 1 <= len(school_id) <= ID_MAX:
        raise ValueError(f"schoolId must be 1 to {ID_MAX} characters, got {len(school_id)}")
    return school_id


def _ident(url: URL) -> tuple[str, int]:
    return (url.host or "", url.port or 80)


def is_self(url: URL) -> bool:
    return _ident(url) == _ident(URL(str(app.conf.canonical_url)))


def owner_of(school_id: str) -> URL | None:
    """The worker holding the school's partition (taps and table share it), if known."""
    partition = partition_of(school_id.encode(), settings.topic_partitions)
    for host, topics in app.router.table_metadata(school_days.name).items():
        if any(partition in partitions for partitions in topics.values()):
            return URL(host)
    return None  # no assignment yet (rebalancing): answer from here


def peers() -> list[URL]:
    """Every other worker that holds part of the table."""
    return [URL(host) for host in app.assignor.tables_metadata() if not is_self(URL(host))]


async def fetch_json(url: URL, params: dict[str, str]) -> Any:
    async with app.http_client.get(
        url, params=params, headers={HOP_HEADER: "1"}, timeout=PEER_TIMEOUT_S
    ) as resp:
        body = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"{url.host}:{url.port} answered {resp.status}: {body}")
        return body


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
        rows = local_school_totals(day)
        if HOP_HEADER not in request.headers:
            others = peers()
            params = {"date": day, "limit": str(MAX_LIMIT)}
            answers = await asyncio.gather(
                *(fetch_json(url.with_path("/schools/"), params) for url in others),
                return_exceptions=True,
            )
            failed = [f"{u.host}:{u.port}" for u, a in zip(others, answers) if isinstance(a, BaseException)]
            if failed:
                return self.json({"error": f"workers did not answer: {', '.join(failed)}"}, status=503)
            for answer in answers:
                rows += answer["schools"]  # type: ignore[index]
        return self.json({"date": day, "schools": ranked(rows, limit)})


@app.page("/schools/{school_id}/")
class School(View):
    async def get(self, request: Request, school_id: str) -> Response:
        try:
            day, school_id = _day(request), _school(school_id)
        except ValueError as exc:
            return self.json({"error": str(exc)}, status=400)
        owner = owner_of(school_id)
        if owner is not None and not is_self(owner) and HOP_HEADER not in request.headers:
            try:
                body = await fetch_json(owner.with_path(request.path), {"date": day})
            except Exception as exc:  # the owner is down or moving: say so, do not guess
                return self.json({"error": f"worker owning {school_id!r} did not answer: {exc}"}, status=503)
            return self.json(body)
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
            "worker": str(app.conf.canonical_url),
            "broker": settings.kafka_broker,
            "redis": settings.redis_url,
            "mongo": settings.mongo_url,
            "schoolTz": settings.school_tz,
            "eventLoop": type(asyncio.get_running_loop()).__module__.split(".")[0],
            "assigned": assigned,
            "degraded": degraded,
        }
        return self.json(body, status=200)
