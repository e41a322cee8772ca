"""Operator commands on the faust CLI: `faust -A pipeline.app <command> --help`."""

from __future__ import annotations

import sys

from faust.cli import option

from ops import dlq
from pipeline.app import app, settings
from pipeline.documents import FAILED, PENDING, REPLAYED, REPLAYING

STATUSES = [PENDING, REPLAYING, REPLAYED, FAILED]


@app.command(
    option("--limit", type=int, default=None, help="Replay at most this many."),
    option("--error-type", default=None, help="Only dead letters with this error type (e.g. InvalidTap)."),
    option("--id", "ids", multiple=True, help="Only this dead letter _id (repeatable)."),
    option("--status", "statuses", multiple=True, default=[PENDING],
           help="Statuses to replay (default pending; 'replaying' after an interrupted run)."),
)
async def dlq_replay(self, limit: int | None, error_type: str | None, ids: tuple[str, ...], statuses: tuple[str, ...]) -> None:
    """Re-publish dead letters to attendance-taps; dedup decides, so nothing counts twice."""
    bad = [s for s in statuses if s not in STATUSES]
    if bad:
        raise SystemExit(f"unknown status {bad}; choose from {STATUSES}")
    result = await dlq.replay(settings, limit=limit, error_type=error_type, ids=list(ids), statuses=list(statuses))
    print(f"replayed {result.replayed} dead letters in {result.batches} batches")


@app.command(
    option("--status", default=None, help=f"One of {STATUSES}."),
    option("--limit", type=int, default=20),
)
async def dlq_list(self, status: str | None, limit: int) -> None:
    """Show dead letters: id, status, attempts, error and the original value."""
    for d in await dlq.listing(settings, status=status, limit=limit):
        err = d["error"]
        print(f"{d['_id']}  {d['status']:<9} attempts={d['attempts']}  {err['stage']} {err['type']}: {err['message'][:120]}")
        print(f"    value: {(d.get('valueText') or '<binary or empty>')[:200]}")


@app.command(
    option("--id", "record_id", required=True, help="The dead letter _id (see dlq-list)."),
    option("--value", required=True, help="The corrected record, as JSON."),
)
async def dlq_fix(self, record_id: str, value: str) -> None:
    """Replace a dead letter's value with a corrected one and mark it pending."""
    try:
        await dlq.fix(settings, record_id, value)
    except ValueError as exc:
        print(f"dlq-fix: {exc}", file=sys.stderr)
        raise SystemExit(2)
    print(f"{record_id} fixed; replay it with: faust -A pipeline.app dlq-replay --id {record_id}")


async def scheduled_replay() -> None:
    """Pending dead letters get another chance every hour (bounded by DLQ_MAX_ATTEMPTS)."""
    await dlq.replay(settings, limit=10_000, progress=False)


if settings.dlq_replay_cron:  # DLQ_REPLAY_CRON="" turns it off (the tests do)
    app.crontab(settings.dlq_replay_cron, on_leader=True)(scheduled_replay)
