"""`make load`: the project's locustfile at the reference peak, then the demo's verdict.

    python -m ops.load [--rate 1400 --schools 100 --students 400 --users N --seed N]

The reference design sizes for about 1,400 taps/s at the national peak. This
plays a school morning (default 100 schools x 400 students, about 84,000 taps,
about a minute at that rate) through the ingress at a constant OFFERED rate:
one token bucket shared by every locust user hands out send slots at --rate
per second, so slow answers do not slow the schedule as long as some user is
free (the default --users covers 150 ms of latency at the target rate). Slots
that pass while every user waits on an answer are counted and reported, not
silently dropped.

The phases stay sequential, each fully acknowledged before the next (the
ground truth depends on it); the rate applies within each phase and the bucket
restarts when a phase opens. At the end it prints the achieved requests/s,
failures, p50/p95/p99 latency and whether the dashboard's totals equal the
generator's ground truth, using the demo's own comparison. Exit status 1 on
any mismatch or any answer other than 202.

Only the standard library is imported at module level: locust patches the
standard library for gevent on import, so it is imported when the run starts.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field

DEFAULT_RATE = 1400.0  # taps/s: the reference design's peak (10 million a day in two peak hours)
DEFAULT_SCHOOLS = 100
DEFAULT_STUDENTS = 400  # with the defaults above: about 84,000 taps, about 60 s at 1,400/s
DEFAULT_SETTLE_S = 180.0  # the worker may still be draining when the last tap is answered
LATENCY_ALLOWANCE_S = 0.15  # default users = rate x this: the latency the schedule survives
MIN_USERS = 16
CATCH_UP_S = 0.1  # a late bucket may send this much of the schedule at once to catch up
TAG = "load"


class TokenBucket:
    """Send slots at `rate` per second, shared by every user (a virtual-clock token bucket).

    Slot k of a schedule is at start + k / rate, whoever asks for it, so the offered
    rate does not depend on how long answers take. A caller that comes after its slot
    goes at once; up to `burst` slots behind schedule are caught up that way, older
    ones are skipped and counted (they mean every user was waiting on an answer, or
    the generator itself was starved of CPU). Pure: the caller passes the clock.
    """

    def __init__(self, rate: float, burst: float = 0.0) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"rate must be a positive number, got {rate}")
        if burst < 0:
            raise ValueError(f"burst must be 0 or more, got {burst}")
        self.rate = rate
        self.interval = 1.0 / rate
        self.burst = burst
        self.granted = 0
        self.skipped = 0.0
        self._next: float | None = None

    def restart(self) -> None:
        """Forget the schedule: the next caller starts a new one, without credit or debt."""
        self._next = None

    def delay(self, now: float) -> float:
        """Reserve the next send slot; seconds from `now` until it (0: send now)."""
        if self._next is None:
            self._next = now
        floor = now - self.burst * self.interval
        if self._next < floor:
            self.skipped += (floor - self._next) * self.rate
            self._next = floor
        slot = self._next
        self._next = slot + self.interval
        self.granted += 1
        return max(0.0, slot - now)


def default_users(rate: float) -> int:
    """Enough concurrent connections to keep `rate` while answers take LATENCY_ALLOWANCE_S."""
    return max(MIN_USERS, math.ceil(rate * LATENCY_ALLOWANCE_S))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; --users defaults to default_users(--rate)."""
    parser = argparse.ArgumentParser(
        prog="python -m ops.load",
        description=(
            "Play a school morning through the ingress at a constant offered rate, "
            "then check the dashboard against the generator's ground truth."
        ),
    )
    parser.add_argument(
        "--rate", type=float, default=DEFAULT_RATE, help="offered taps/s (default %(default)g)"
    )
    parser.add_argument("--schools", type=int, default=DEFAULT_SCHOOLS)
    parser.add_argument(
        "--students", type=int, default=DEFAULT_STUDENTS, help="students per school"
    )
    parser.add_argument(
        "--users",
        type=int,
        default=None,
        help=f"concurrent gate connections (default: rate x {LATENCY_ALLOWANCE_S} s, "
        f"at least {MIN_USERS})",
    )
    parser.add_argument("--seed", type=int, default=None, help="default: a fresh one per run")
    parser.add_argument(
        "--settle",
        type=float,
        default=DEFAULT_SETTLE_S,
        help="seconds to wait for the dashboard (default %(default)g)",
    )
    parser.add_argument("--ingress", default=None, help="default: INGRESS_URL or .stack/env")
    parser.add_argument("--web", default=None, help="default: WEB_URL or .stack/env")
    args = parser.parse_args(argv)
    if not args.rate > 0 or math.isinf(args.rate):
        parser.error("--rate must be a positive number")
    for name in ("schools", "students"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.users is None:
        args.users = default_users(args.rate)
    elif args.users < 1:
        parser.error("--users must be at least 1")
    if args.settle < 0:
        parser.error("--settle must be 0 or more")
    return args


@dataclass(frozen=True)
class Summary:
    """The figures of one run, as printed at the end."""

    rate: float  # offered taps/s
    users: int
    total: int  # taps planned
    answered: int
    elapsed_s: float  # first tap sent to last answer
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    skipped_slots: int
    mismatches: int
    wall_s: float
    failures: dict[int, int] = field(default_factory=dict)  # HTTP status (0 = none) -> taps

    @property
    def achieved(self) -> float:
        return self.answered / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def unanswered(self) -> int:
        return self.total - self.answered

    @property
    def ok(self) -> bool:
        """The exit verdict: every tap answered 202 and every dashboard number matches."""
        return not self.failed and not self.unanswered and not self.mismatches


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def format_summary(s: Summary) -> list[str]:
    """The closing lines: offered and achieved rate, failures, latency, the verdict."""
    share = f", {s.achieved / s.rate:.1%} of offered" if s.elapsed_s > 0 else ""
    failed = f"{s.failed:,}"
    if s.failures:
        by_status = ", ".join(
            f"{status or 'no answer'} x {n:,}" for status, n in sorted(s.failures.items())
        )
        failed += f" ({by_status})"
    if s.unanswered:
        failed += f", {s.unanswered:,} not answered"
    if s.skipped_slots:
        schedule = (
            f"fell behind: {s.skipped_slots:,} send slots skipped with every user waiting "
            "on an answer (or the generator short of CPU); the offered rate was not held"
        )
    else:
        schedule = "held (no send slot skipped)"
    match = "yes" if not s.mismatches else f"NO ({s.mismatches:,} mismatches)"
    return [
        f"{TAG}: offered {s.rate:,.0f} taps/s with {s.users} users; schedule {schedule}",
        f"{TAG}: requests/s {s.achieved:,.0f} achieved ({s.answered:,}/{s.total:,} taps "
        f"answered in {s.elapsed_s:.1f} s{share})",
        f"{TAG}: failures (non-202) {failed}",
        f"{TAG}: latency p50 {_ms(s.p50_ms)}, p95 {_ms(s.p95_ms)}, p99 {_ms(s.p99_ms)}",
        f"{TAG}: dashboard totals equal the generator's ground truth: {match}",
        f"{TAG}: wall time {s.wall_s:.1f} s; {'PASS' if s.ok else 'FAIL'}",
    ]


def run(args: argparse.Namespace) -> int:
    """Plan, play at the offered rate, verify; prints as it goes and returns the exit status."""
    started = time.monotonic()
    import logging

    # Imported here, not at the top: locust patches the standard library on import.
    from ops import demo
    from ops.locustfile import GateDevice

    from locust.env import Environment

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    planned = demo.plan_run(args, TAG)
    if planned is None:
        return 1
    settings, ingress, web, seed, morning = planned
    sizes = ", ".join(f"{len(p):,}" for p in morning.phases)
    print(
        f"{TAG}: {args.schools} schools x {args.students} students, {morning.total_taps:,} taps "
        f"in {len(morning.phases)} sequential phases ({sizes}); school day {morning.date} "
        f"({settings.school_tz}), seed {seed}"
    )
    print(
        f"{TAG}: offering {args.rate:,.0f} taps/s within each phase "
        f"(about {morning.total_taps / args.rate:.0f} s) with {args.users} users; "
        f"ingress {ingress}, dashboard {web}"
    )
    prepared = demo.prepare(
        morning,
        ingress,
        web,
        settings,
        settle=args.settle,
        seed_given=args.seed is not None,
        tag=TAG,
    )
    if prepared is None:
        return 1
    dashboard, baseline = prepared

    bucket = TokenBucket(args.rate, burst=args.rate * CATCH_UP_S)
    env = Environment(user_classes=[GateDevice], host=ingress)
    player = demo.play(morning, ingress, args.users, pacer=bucket, env=env, tag=TAG)
    stats = env.stats.total
    lines = demo.verify(
        dashboard, morning, baseline, player, args.settle, per_school=False, tag=TAG
    )
    demo.report_problems(lines, player, tag=TAG)

    def pct(q: float) -> float | None:
        return float(stats.get_response_time_percentile(q)) if stats.num_requests else None

    summary = Summary(
        rate=args.rate,
        users=args.users,
        total=player.total,
        answered=player.answered,
        elapsed_s=player.elapsed,
        p50_ms=pct(0.50),
        p95_ms=pct(0.95),
        p99_ms=pct(0.99),
        skipped_slots=int(bucket.skipped),
        mismatches=len(lines),
        wall_s=time.monotonic() - started,
        failures=dict(player.failures),
    )
    print()
    for line in format_summary(summary):
        print(line)
    return 0 if summary.ok else 1


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print(f"\n{TAG}: interrupted")
        sys.exit(130)
