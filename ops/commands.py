"""Operator commands on the faust CLI: `faust -A pipeline.app <command> --help`."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

from aiokafka.errors import KafkaError
from pymongo.errors import PyMongoError

from faust.cli import option

from ops import dlq
from ops.seed import seed_roster
from pipeline.app import app, settings
from pipeline.documents import FAILED, PENDING, REPLAYED, REPLAYING

STATUSES = [PENDING, REPLAYING, REPLAYED, FAILED]


@contextmanager
def operator_errors(command: str) -> Iterator[None]:
    """An operator gets one clear line, not a traceback, for bad input or an unreachable store."""
    try:
        yield
    except ValueError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        raise SystemExit(2)
    except PyMongoError as exc:
        print(f"{command}: MongoDB at {settings.mongo_url} is not answering ({type(exc).__name__})", file=sys.stderr)
        raise SystemExit(1)
    except (KafkaError, OSError) as exc:
        print(f"{command}: the broker at {settings.kafka_bootstrap} is not answering ({type(exc).__name__})", file=sys.stderr)
        raise SystemExit(1)


@app.command(
    option("--limit", type=int, default=None, help="Replay at most this many."),
    option("--error-type", default=None, help="Only dead letters with this error type (e.g. InvalidTap)."),
    option("--id", "ids", multiple=True, help="Only this dead letter _id (repeatable)."),
    option("--status", "statuses", multiple=True, default=[PENDING],
           help="Statuses to replay (default pending; 'replaying' after an interrupted run)."),
)
async def dlq_replay(self, limit: int | None, error_type: str | None, ids: tuple[str, ...], statuses: tuple[str, ...]) -> None:
    """Re-publish dead letters to attendance-taps; dedup decides, so nothing counts twice."""
    with operator_errors("dlq-replay"):
        bad = [s for s in statuses if s not in STATUSES]
        if bad:
            raise ValueError(f"unknown status {bad}; choose from {STATUSES}")
        result = await dlq.replay(settings, limit=limit, error_type=error_type, ids=list(ids), statuses=list(statuses))
    print(f"replayed {result.replayed} dead letters in {result.batches} batches")


@app.command(
    option("--status", default=None, help=f"One of {STATUSES}."),
    option("--limit", type=int, default=20),
)
async def dlq_list(self, status: str | None, limit: int) -> None:
    """Show dead letters: id, status, attempts, error and the original value."""
    with operator_errors("dlq-list"):
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; choose from {STATUSES}")
        if limit < 1:
            raise ValueError("--limit must be at least 1")
        letters = await dlq.listing(settings, status=status, limit=limit)
    if not letters:
        print(f"no dead letters{'' if status is None else f' with status {status}'}")
    for d in letters:
        err = d["error"]
        print(f"{d['_id']}  {d['status']:<9} attempts={d['attempts']}  {err['stage']} {err['type']}: {err['message'][:120]}")
        print(f"    value: {(d.get('valueText') or '<binary or empty>')[:200]}")


@app.command(
    option("--id", "record_id", required=True, help="The dead letter _id (see dlq-list)."),
    option("--value", required=True, help="The corrected record, as JSON."),
)
async def dlq_fix(self, record_id: str, value: str) -> None:
    """Replace a dead letter's value with a corrected one and mark it pending."""
    with operator_errors("dlq-fix"):
        await dlq.fix(settings, record_id, value)
    print(f"{record_id} fixed; replay it with: faust -A pipeline.app dlq-replay --id {record_id}")


@app.command(
    option("--schools", type=int, required=True, help="How many schools (SCH-0001 ...)."),
    option("--students", type=int, required=True, help="Students per school."),
    option("--seed", type=int, default=1, help="Same seed, same ids: re-running adds nothing."),
)
async def seed(self, schools: int, students: int, seed: int) -> None:
    """Write the roster (schools and students) to MongoDB in bulk, with a progress bar."""
    with operator_errors("seed"):
        result = await seed_roster(settings, schools=schools, students_per_school=students, seed=seed)
    print(
        f"seeded {result.schools_written} schools ({result.schools_present} already there), "
        f"{result.students_written} students ({result.students_present} already there) "
        f"in {result.seconds:.1f} s ({result.students_per_s:,.0f} students/s)"
    )


async def scheduled_replay() -> None:
    """Pending dead letters get another chance every hour (bounded by DLQ_MAX_ATTEMPTS)."""
    await dlq.replay(settings, limit=10_000, progress=False)


if settings.dlq_replay_cron:  # DLQ_REPLAY_CRON="" turns it off (the tests do)
    app.crontab(settings.dlq_replay_cron, on_leader=True)(scheduled_replay)
