"""`make demo`: play a realistic school morning through the ingress, then check every
number the dashboard shows against the generator's own ground truth.

    python -m ops.demo [--schools 40 --students 300 --users 64 --seed N]

The phases are played one after the other, each fully acknowledged before the
next, so the expected totals are exact. The dashboard is read before sending
and compared by increase, so a stack that already holds other taps for the
same day still gives a clean verdict. Exit status 0 only when every number
matches and every tap was answered 202.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

# Imported first: locust patches the standard library for gevent on import.
from ops.locustfile import (
    GateDevice,
    Pacer,
    Player,
    install,
    service_url,
    stack_env_defaults,
)

import gevent  # noqa: E402
import gevent.pool  # noqa: E402
import requests  # noqa: E402
import requests.adapters  # noqa: E402
from locust.env import Environment  # noqa: E402

from ops.workload import Key, Morning, Totals, plan_morning  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

NUMBERS = ("checkins", "checkouts", "present", "fevers", "rejected")
HOUR_NUMBERS = ("checkins", "checkouts", "fevers")
GROWING = ("checkins", "checkouts", "fevers", "rejected")  # never go down: past them, stop waiting
MAX_LISTED = 40  # mismatch lines printed in full


@dataclass
class Seen:
    """What the dashboard shows for one school and day (or an increase of it)."""

    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(NUMBERS, 0))
    reasons: dict[str, int] | None = field(default_factory=dict)
    hours: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    date: str | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> "Seen":
        reasons = body.get("rejectedByReason")
        hours: dict[int, tuple[int, int, int]] = {}
        for bucket in body.get("hours") or []:
            start = _epoch(bucket["start"])
            counts = tuple(int(bucket.get(name, 0)) for name in HOUR_NUMBERS)
            old = hours.get(start, (0, 0, 0))
            hours[start] = tuple(a + b for a, b in zip(old, counts))  # type: ignore[assignment]
        return cls(
            totals={name: int(body.get(name, 0)) for name in NUMBERS},
            reasons=(
                {str(k): int(v) for k, v in reasons.items()} if isinstance(reasons, dict) else None
            ),
            hours=hours,
            date=body.get("date"),
        )

    def minus(self, base: "Seen") -> "Seen":
        """The increase since `base`, so earlier traffic on the same day does not count."""
        reasons = None
        if self.reasons is not None:
            old = base.reasons or {}
            reasons = {k: v - old.get(k, 0) for k, v in self.reasons.items()}
            reasons = {k: v for k, v in reasons.items() if v}
        hours = {}
        for start in self.hours.keys() | base.hours.keys():
            now = self.hours.get(start, (0, 0, 0))
            old = base.hours.get(start, (0, 0, 0))
            diff = tuple(a - b for a, b in zip(now, old))
            if any(diff):
                hours[start] = diff
        return Seen(
            totals={name: self.totals[name] - base.totals[name] for name in NUMBERS},
            reasons=reasons,
            hours=hours,  # type: ignore[arg-type]
            date=self.date,
        )


def _epoch(iso: str) -> int:
    """An hour start as epoch seconds: compares instants, whatever the offset notation."""
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"hour start {iso!r} has no UTC offset")
    return int(moment.timestamp())


class Dashboard:
    """Reads the per-school view of the dashboard."""

    def __init__(self, base_url: str, concurrency: int = 16) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=concurrency)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.pool = gevent.pool.Pool(concurrency)

    def school(self, key: Key) -> Seen:
        school, day = key
        url = f"{self.base_url}/schools/{quote(school, safe='')}/"
        resp = self.session.get(url, params={"date": day}, timeout=10)
        resp.raise_for_status()
        return Seen.parse(resp.json())

    def schools(self, keys: list[Key]) -> dict[Key, Seen | Exception]:
        """All schools at once; an error is returned in place of the school's numbers."""

        def one(key: Key) -> tuple[Key, Seen | Exception]:
            try:
                return key, self.school(key)
            except Exception as exc:  # noqa: BLE001 - reported per school
                return key, exc

        return dict(self.pool.map(one, keys))

    def school_tz(self) -> str | None:
        """The worker's SCHOOL_TZ as /health/ reports it, if it does."""
        try:
            body = self.session.get(f"{self.base_url}/health/", timeout=5).json()
        except (requests.RequestException, ValueError):
            return None
        value = body.get("schoolTz") if isinstance(body, dict) else None
        return value if isinstance(value, str) else None

    def listing(self, day: str, limit: int) -> list[dict[str, Any]]:
        resp = self.session.get(
            f"{self.base_url}/schools/", params={"date": day, "limit": limit}, timeout=10
        )
        resp.raise_for_status()
        return list(resp.json()["schools"])


def compare(key: Key, seen: Seen, morning: Morning) -> list[str]:
    """Every difference between what the dashboard shows and what the morning implies."""
    problems: list[str] = []
    expected = morning.expected[key]
    if seen.date is not None and seen.date != key[1]:
        problems.append(f"date {seen.date!r}, expected {key[1]!r}")
    for name in NUMBERS:
        got, want = seen.totals[name], getattr(expected, name)
        if got != want:
            problems.append(f"{name} {got}, expected {want}")
    want_reasons = {k: v for k, v in morning.reasons[key].items() if v}
    if seen.reasons is None:
        problems.append("rejectedByReason missing")
    elif seen.reasons != want_reasons:
        problems.append(f"rejectedByReason {seen.reasons}, expected {want_reasons}")
    want_hours = {
        _epoch(start): (h.checkins, h.checkouts, h.fevers)
        for start, h in morning.hours[key].items()
    }
    for start in sorted(seen.hours.keys() | want_hours.keys()):
        got_h, want_h = seen.hours.get(start, (0, 0, 0)), want_hours.get(start, (0, 0, 0))
        if got_h != want_h:
            label = datetime.fromtimestamp(start, timezone.utc).isoformat()
            if start in want_hours:
                label = next(s for s in morning.hours[key] if _epoch(s) == start)
            problems.append(
                f"hour {label} (check-ins, check-outs, fevers) {got_h}, expected {want_h}"
            )
    return problems


def check_listing(dashboard: Dashboard, morning: Morning, raw: dict[Key, Seen]) -> list[str]:
    """The list view agrees with the per-school views and is sorted by fevers, then check-ins."""
    try:
        rows = dashboard.listing(morning.date, min(len(morning.schools), 10_000))
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return [f"list view: {exc}"]
    problems = []
    order = [(int(r.get("fevers", 0)), int(r.get("checkins", 0))) for r in rows]
    if order != sorted(order, reverse=True):
        problems.append("list view: not sorted by fevers, then check-ins, descending")
    for row in rows:
        key = (row.get("schoolId"), morning.date)
        seen = raw.get(key)  # type: ignore[arg-type]
        if seen is None:
            continue
        for name in NUMBERS:
            if int(row.get(name, 0)) != seen.totals[name]:
                problems.append(
                    f"list view: {key[0]} {name} {row.get(name)}, school view {seen.totals[name]}"
                )
    return problems


def _fmt_rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}" if seconds > 0 else "-"


def play(
    morning: Morning,
    ingress: str,
    users: int,
    *,
    pacer: Pacer | None = None,
    env: Environment | None = None,
    tag: str = "demo",
) -> Player:
    """Send every phase through locust, in order; show progress while it runs.

    `pacer` holds each tap to a send schedule (default: as fast as the users go);
    pass `env` to read locust's statistics afterwards.
    """
    # Held until every connection is up, so the rates measure sending, not ramp-up.
    player = install(morning, held=True, pacer=pacer)
    env = env or Environment(user_classes=[GateDevice], host=ingress)
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=min(users, 100))
    if runner.spawning_greenlet is not None:
        runner.spawning_greenlet.join()
    player.release()
    tty = sys.stdout.isatty()
    every = 1.0 if tty else 2.0
    last_answered, last_time = 0, time.monotonic()
    stalled_since = last_time
    try:
        while not player.done.wait(timeout=every):
            now = time.monotonic()
            rate = (player.answered - last_answered) / (now - last_time)
            if player.answered != last_answered:
                stalled_since = now
            elif now - stalled_since > GateDevice.network_timeout * 2:
                print(f"\n{tag}: no tap answered for a minute; giving up", flush=True)
                break
            last_answered, last_time = player.answered, now
            phase = max(player.phase, 0)
            line = (
                f"  phase {phase + 1}/{len(player.sizes)} {player.names[phase]}: "
                f"{player.sent:,}/{player.total:,} taps sent, {rate:,.0f} taps/s, "
                f"non-202: {sum(player.failures.values())}"
            )
            print(f"\r{line:<100}" if tty else line, end="" if tty else "\n", flush=True)
    finally:
        runner.quit()
    if tty:
        print()
    for index, name in enumerate(player.names):
        start, end = player.phase_started[index], player.phase_finished[index]
        size = player.sizes[index]
        if size == 0:
            print(f"  phase {index + 1} {name}: no taps")
            continue
        if start is None or end is None:
            print(f"  phase {index + 1} {name}: {size:,} taps, not completed")
            continue
        took = max(end - start, 1e-9)
        rate = _fmt_rate(size, took)
        print(f"  phase {index + 1} {name}: {size:,} taps in {took:.1f} s ({rate}/s)")
    return player


def wait_for_dashboard(dashboard: Dashboard, key: Key, seconds: float, tag: str = "demo") -> bool:
    deadline = time.monotonic() + seconds
    while True:
        try:
            dashboard.school(key)
            return True
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            if time.monotonic() > deadline:
                print(f"{tag}: dashboard not answering at {dashboard.base_url}: {exc}")
                return False
        time.sleep(1)


def settle(
    dashboard: Dashboard, morning: Morning, baseline: dict[Key, Seen], seconds: float
) -> tuple[dict[Key, Seen | Exception], dict[Key, list[str]]]:
    """Poll until every school matches or `seconds` pass; the last answers and problems."""
    keys = sorted(morning.expected)
    started = time.monotonic()
    deadline = started + seconds
    last_matching, last_print = -1, 0.0
    while True:
        raw = dashboard.schools(keys)
        problems: dict[Key, list[str]] = {}
        overshoot = False
        for key in keys:
            got = raw[key]
            if isinstance(got, Exception):
                problems[key] = [f"dashboard error: {got}"]
                continue
            delta = got.minus(baseline[key])
            found = compare(key, delta, morning)
            if found:
                problems[key] = found
            want = morning.expected[key]
            overshoot = overshoot or any(
                delta.totals[name] > getattr(want, name) for name in GROWING
            )
        now = time.monotonic()
        matching = len(keys) - len(problems)
        done = not problems or now >= deadline or overshoot
        if done or matching != last_matching or now - last_print >= 10:
            print(
                f"  dashboard: {matching}/{len(keys)} schools match after {now - started:.0f} s",
                flush=True,
            )
            last_matching, last_print = matching, now
        if overshoot and problems:
            print("  dashboard: counts already above the expected ones; not waiting longer")
        if done:
            return raw, problems
        time.sleep(1)


def print_table(
    morning: Morning,
    raw: dict[Key, Seen | Exception],
    baseline: dict[Key, Seen],
    problems: dict[Key, list[str]],
    *,
    per_school: bool = True,
    tag: str = "demo",
) -> None:
    """Dashboard / expected for every number of every school, mismatches marked with '!'.

    Without `per_school` only the TOTAL row is shown (large runs).
    """
    width = 14
    head = f"{'school':<10}" + "".join(f"{n:>{width}}" for n in NUMBERS) + "  by-reason  hours"
    print(f"\nschool day {morning.date}, dashboard/expected (increase since the {tag} started):")
    print(head)
    sums_got = dict.fromkeys(NUMBERS, 0)
    sums_want = dict.fromkeys(NUMBERS, 0)
    for key in sorted(morning.expected):
        want: Totals = morning.expected[key]
        got = raw.get(key)
        if isinstance(got, Seen):
            delta = got.minus(baseline[key])
            cells = []
            for name in NUMBERS:
                g, w = delta.totals[name], getattr(want, name)
                sums_got[name] += g
                sums_want[name] += w
                cells.append(f"{g}/{w}{'' if g == w else '!'}")
            key_problems = problems.get(key, [])
            reasons_ok = not any("rejectedByReason" in p for p in key_problems)
            hours_ok = not any(p.startswith("hour ") for p in key_problems)
        else:
            cells = [f"?/{getattr(want, name)}!" for name in NUMBERS]
            reasons_ok = hours_ok = False
        row = f"{key[0]:<10}" + "".join(f"{c:>{width}}" for c in cells)
        row += f"  {'ok' if reasons_ok else 'MISMATCH':<9}  {'ok' if hours_ok else 'MISMATCH'}"
        if per_school:
            print(row)
    total_cells = [
        f"{sums_got[n]}/{sums_want[n]}{'' if sums_got[n] == sums_want[n] else '!'}" for n in NUMBERS
    ]
    print(f"{'TOTAL':<10}" + "".join(f"{c:>{width}}" for c in total_cells))


def plan_run(
    args: argparse.Namespace, tag: str = "demo"
) -> tuple[Settings, str, str, int, Morning] | None:
    """Where the stack is and the morning to play (shared with `make load`); None if no stack."""
    stack_env_defaults()
    settings = Settings.from_env()
    ingress = (args.ingress or service_url("INGRESS_URL") or "").rstrip("/")
    web = (args.web or service_url("WEB_URL") or "").rstrip("/")
    if not ingress or not web:
        print(f"{tag}: INGRESS_URL and WEB_URL are not set and .stack/env has none (make up?)")
        return None
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    morning = plan_morning(
        args.schools,
        args.students,
        now_ms=int(time.time() * 1000),
        tz=settings.tz,
        fever_threshold=settings.fever_threshold,
        seed=seed,
    )
    return settings, ingress, web, seed, morning


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops.demo",
        description="Play a school morning through the ingress and check the dashboard.",
    )
    parser.add_argument("--schools", type=int, default=40)
    parser.add_argument("--students", type=int, default=300, help="students per school")
    parser.add_argument("--users", type=int, default=64, help="concurrent gate connections")
    parser.add_argument("--seed", type=int, default=None, help="default: a fresh one per run")
    parser.add_argument(
        "--settle", type=float, default=60.0, help="seconds to wait for the dashboard"
    )
    parser.add_argument("--ingress", default=None, help="default: INGRESS_URL or .stack/env")
    parser.add_argument("--web", default=None, help="default: WEB_URL or .stack/env")
    args = parser.parse_args(argv)
    for name in ("schools", "students", "users"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    planned = plan_run(args)
    if planned is None:
        return 1
    settings, ingress, web, seed, morning = planned

    def local(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, settings.tz).strftime("%H:%M")

    print(
        f"demo: {args.schools} schools x {args.students} students, {morning.total_taps:,} taps "
        f"in {len(morning.phases)} phases; school day {morning.date} ({settings.school_tz}), "
        f"bell {local(morning.bell_ms)}, dismissal {local(morning.dismissal_ms)}, seed {seed}"
    )
    print(f"demo: ingress {ingress}, dashboard {web}, {args.users} connections")

    prepared = prepare(
        morning, ingress, web, settings, settle=args.settle, seed_given=args.seed is not None
    )
    if prepared is None:
        return 1
    dashboard, baseline = prepared
    player = play(morning, ingress, args.users)
    lines = verify(dashboard, morning, baseline, player, args.settle)
    failures = sum(player.failures.values())
    unanswered = player.total - player.answered

    took = player.elapsed
    head = (
        f"demo: {player.sent:,} taps sent in {took:.1f} s ({_fmt_rate(player.sent, took)} taps/s), "
        f"{len(morning.schools)} schools"
    )
    if not lines and not failures and not unanswered:
        print(f"{head}, all numbers match")
        return 0
    print(f"{head}, {len(lines)} mismatches" if lines else head)
    report_problems(lines, player)
    return 1


def prepare(
    morning: Morning,
    ingress: str,
    web: str,
    settings: Settings,
    *,
    settle: float,
    seed_given: bool,
    tag: str = "demo",
) -> tuple[Dashboard, dict[Key, Seen]] | None:
    """Check both services answer and read the dashboard before sending (the baseline that
    makes the verdict an increase); None, with the reason printed, when that fails."""
    try:
        requests.get(f"{ingress}/attendances", timeout=5)
    except requests.RequestException as exc:
        print(f"{tag}: ingress not reachable at {ingress}: {exc}")
        return None
    dashboard = Dashboard(web)
    keys = sorted(morning.expected)
    if not wait_for_dashboard(dashboard, keys[0], settle, tag):
        return None
    worker_tz = dashboard.school_tz()
    if worker_tz and worker_tz != settings.school_tz:
        print(
            f"{tag}: warning: the worker counts in SCHOOL_TZ={worker_tz}, this {tag} plans in "
            f"{settings.school_tz}; export SCHOOL_TZ={worker_tz} for exact school days and hours"
        )
    before = dashboard.schools(keys)
    failed = [f"{k[0]}: {v}" for k, v in before.items() if isinstance(v, Exception)]
    if failed:
        print(f"{tag}: cannot read the dashboard before sending: {failed[0]}")
        return None
    baseline: dict[Key, Seen] = {k: v for k, v in before.items() if isinstance(v, Seen)}
    busy = [k[0] for k, v in baseline.items() if any(v.totals.values())]
    if busy:
        print(
            f"{tag}: {len(busy)} schools already have counts for {morning.date}; "
            "comparing increases"
        )
        if seed_given:
            print(
                f"{tag}: note: a repeated --seed replays the same students, whose taps would now "
                "be duplicates; leave --seed out for a fresh roster"
            )
    return dashboard, baseline


def verify(
    dashboard: Dashboard,
    morning: Morning,
    baseline: dict[Key, Seen],
    player: Player,
    settle_s: float,
    *,
    per_school: bool = True,
    tag: str = "demo",
) -> list[str]:
    """Wait for the dashboard to show the morning, print the table, and return every
    mismatch as a line (empty: every number matches the ground truth)."""
    failures = sum(player.failures.values())
    unanswered = player.total - player.answered
    # With failed taps the numbers cannot be expected to match: look once, do not wait.
    wait = 0.0 if failures or unanswered else settle_s
    raw, problems = settle(dashboard, morning, baseline, wait)
    print_table(morning, raw, baseline, problems, per_school=per_school or bool(problems), tag=tag)
    listing = []
    if not problems:
        listing = check_listing(
            dashboard, morning, {k: v for k, v in raw.items() if isinstance(v, Seen)}
        )
    lines = [f"{k[0]} {k[1]}: {p}" for k, found in sorted(problems.items()) for p in found]
    return lines + listing


def report_problems(lines: list[str], player: Player, tag: str = "demo") -> None:
    """The first mismatch lines and the non-202 answers, with samples."""
    for line in lines[:MAX_LISTED]:
        print(f"  {line}")
    if len(lines) > MAX_LISTED:
        print(f"  ... and {len(lines) - MAX_LISTED} more")
    failures = sum(player.failures.values())
    unanswered = player.total - player.answered
    if failures or unanswered:
        by_status = ", ".join(
            f"{status or 'no answer'} x {n}" for status, n in sorted(player.failures.items())
        )
        print(f"{tag}: {failures} taps answered other than 202 ({by_status or 'none'})", end="")
        print(f", {unanswered} not answered" if unanswered else "")
        for sample in player.failure_samples:
            print(f"  {sample}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ndemo: interrupted")
        sys.exit(130)
