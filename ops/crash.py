"""Crash harness: taps with known ground truth stream in while workers are killed and moved.

    python -m ops.crash [--schools 8 --students 60 --kills 3]     (make crash)

It starts its own embedded stack (or uses one it is handed), sends taps
through the ingress (each student's taps in order, students concurrently),
and meanwhile SIGKILLs workers at random moments and restarts them, adds a
worker and removes one. At the end it compares every per-school, per-day and
per-hour counter and every student's Redis state with the ground truth, and
prints what it did and every difference (there must be none).

The ground truth is an independent, plain reading of the rules: a student's
first check-in of the day counts, a check-out counts once after it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from agents.dedup_store import RedisDedupStore
from agents.rules import Presence
from ops.stack import EmbeddedStack
from pipeline.schoolday import hour_start_iso, local_date, local_hour_start

FEVER = 38.0


@dataclass
class Truth:
    """What the input implies, per (school, day)."""

    checkins: Counter = field(default_factory=Counter)
    checkouts: Counter = field(default_factory=Counter)
    fevers: Counter = field(default_factory=Counter)
    rejected: dict = field(default_factory=lambda: defaultdict(Counter))
    hours: dict = field(default_factory=lambda: defaultdict(Counter))
    students: dict = field(default_factory=dict)  # (school, user, day) -> (checked in, checked out)


def student_script(rnd: random.Random) -> list[str]:
    """Realistic shapes: bounces, forgotten check-outs, a check-out before any check-in."""
    roll = rnd.random()
    if roll < 0.05:
        return ["checkout", "checkin", "checkout"]
    taps = ["checkin"]
    if rnd.random() < 0.2:
        taps.append("checkin")
    if rnd.random() < 0.85:
        taps.append("checkout")
        if rnd.random() < 0.1:
            taps.append("checkout")
    return taps


def apply_truth(truth: Truth, school: str, user: str, kind: str, ts: int, temp: float, tz: ZoneInfo) -> None:
    day = local_date(ts, tz)
    key = (school, day)
    checked_in, checked_out = truth.students.get((school, user, day), (False, False))
    hour = hour_start_iso(local_hour_start(ts, tz), tz)
    if kind == "checkin":
        if checked_in:
            truth.rejected[key]["duplicate_checkin"] += 1
            return
        checked_in = True
        truth.checkins[key] += 1
        truth.hours[(school, day, hour)]["checkins"] += 1
        if temp >= FEVER:
            truth.fevers[key] += 1
            truth.hours[(school, day, hour)]["fevers"] += 1
    elif not checked_in:
        truth.rejected[key]["checkout_without_checkin"] += 1
        return
    elif checked_out:
        truth.rejected[key]["duplicate_checkout"] += 1
        return
    else:
        checked_out = True
        truth.checkouts[key] += 1
        truth.hours[(school, day, hour)]["checkouts"] += 1
    truth.students[(school, user, day)] = (checked_in, checked_out)


@dataclass
class Report:
    taps: int = 0
    kills: int = 0
    restarts: int = 0
    joins: int = 0
    leaves: int = 0
    counters_compared: int = 0
    states_compared: int = 0
    differences: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"crash harness: {self.taps} taps, {self.kills} SIGKILLs, {self.restarts} restarts, "
            f"{self.joins} joins, {self.leaves} leaves; {self.counters_compared} counters and "
            f"{self.states_compared} Redis states compared; {len(self.differences)} differences "
            f"({self.seconds:.0f} s)"
        )


class Harness:
    def __init__(self, stack: EmbeddedStack, *, schools: int, students: int, kills: int,
                 seed: int, tz: ZoneInfo, log: Any = print) -> None:
        self.stack = stack
        self.urls = stack.urls()
        self.rnd = random.Random(seed)
        self.schools = [f"CRASH-{seed}-{i:03d}" for i in range(schools)]
        self.students = students
        self.kills = kills
        self.tz = tz
        self.truth = Truth()
        self.report = Report()
        self.log = log
        self.chaos_running = True

    def _note(self, text: str) -> None:
        self.report.actions.append(text)
        self.log(f"  [{time.strftime('%H:%M:%S')}] {text}")

    async def traffic(self) -> None:
        """Each student's taps in order (a 202 before the next), students concurrently.

        It goes on until the chaos is over and at least `schools x students`
        students have tapped, so kills land in the middle of the stream.
        """
        url = f"{self.urls['INGRESS_URL']}/attendances"
        minimum = len(self.schools) * self.students
        started = 0

        def next_student() -> tuple[str, str, list[str]] | None:
            nonlocal started
            if not self.chaos_running and started >= minimum:
                return None
            started += 1
            return self.rnd.choice(self.schools), f"{self.rnd.getrandbits(96):024x}", student_script(self.rnd)

        async def device(session: aiohttp.ClientSession) -> None:
            while (student := next_student()) is not None:
                school, user, script = student
                for kind in script:
                    temp = round(self.rnd.choice([36.4, 36.7, 37.0, 38.3]), 1)
                    ts = int(time.time() * 1000)
                    body = {"type": kind, "userId": user, "schoolId": school, "timestamp": ts,
                            "temperature": temp, "image": ""}
                    async with session.post(url, json=body) as resp:
                        if resp.status != 202:
                            raise RuntimeError(f"ingress answered {resp.status}: {await resp.text()}")
                    apply_truth(self.truth, school, user, kind, ts, temp, self.tz)
                    self.report.taps += 1
                    await asyncio.sleep(0.08)  # a steady stream, not a burst

        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(device(session) for _ in range(16)))
        self._note(f"traffic done: {self.report.taps} taps acknowledged")

    async def chaos(self) -> None:
        """Kill and restart workers while taps flow; then one joins and one leaves."""
        stack = self.stack
        await asyncio.sleep(2)
        for _ in range(self.kills):
            victim = self.rnd.choice([n for n in stack.running() if n.startswith("worker-")])
            await asyncio.to_thread(stack.stop, victim, sig=signal.SIGKILL, timeout_s=0)
            self.report.kills += 1
            self._note(f"SIGKILL {victim}")
            await asyncio.sleep(self.rnd.uniform(0.5, 3))
            await asyncio.to_thread(stack.start, stack.service(victim))
            self.report.restarts += 1
            self._note(f"restarted {victim} (healthy)")
            await asyncio.sleep(self.rnd.uniform(1, 3))
        numbers = sorted(int(n.split("-")[1]) for n in stack.running() if n.startswith("worker-"))
        joiner = f"worker-{max(numbers) + 1}"
        await asyncio.to_thread(stack.start, stack.service(joiner))
        self.report.joins += 1
        self._note(f"{joiner} joined")
        await asyncio.sleep(self.rnd.uniform(1, 3))
        await asyncio.to_thread(stack.stop, joiner)
        self.report.leaves += 1
        self._note(f"{joiner} left (SIGTERM)")
        self.chaos_running = False

    async def settle_and_compare(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while True:
                diffs, counters = await self._compare_counters(session)
                if not diffs or time.monotonic() > deadline:
                    break
                await asyncio.sleep(2)
        self.report.differences += diffs
        self.report.counters_compared = counters
        self.report.differences += await self._compare_redis()

    async def _compare_counters(self, session: aiohttp.ClientSession) -> tuple[list[str], int]:
        diffs: list[str] = []
        compared = 0
        keys = {k for k in self.truth.checkins} | {k for k in self.truth.rejected} | {k for k in self.truth.checkouts}
        for school, day in sorted(keys):
            try:
                async with session.get(f"{self.urls['WEB_URL']}/schools/{school}/", params={"date": day}) as resp:
                    got = await resp.json()
                    if resp.status != 200:
                        diffs.append(f"{school} {day}: view answered {resp.status}: {got}")
                        continue
            except aiohttp.ClientError as exc:
                diffs.append(f"{school} {day}: view unreachable: {exc}")
                continue
            want = {
                "checkins": self.truth.checkins[(school, day)],
                "checkouts": self.truth.checkouts[(school, day)],
                "fevers": self.truth.fevers[(school, day)],
                **{f"rejected.{r}": n for r, n in self.truth.rejected[(school, day)].items()},
            }
            have = {"checkins": got["checkins"], "checkouts": got["checkouts"], "fevers": got["fevers"],
                    **{f"rejected.{r}": n for r, n in got["rejectedByReason"].items()}}
            hours = {h["start"]: h for h in got["hours"]}
            for (s, d, hour), c in self.truth.hours.items():
                if (s, d) != (school, day):
                    continue
                for name in ("checkins", "checkouts", "fevers"):
                    want[f"{hour}.{name}"] = c[name]
                    have[f"{hour}.{name}"] = hours.get(hour, {}).get(name, 0)
            for name in sorted(set(want) | set(have)):
                compared += 1
                if want.get(name, 0) != have.get(name, 0):
                    diffs.append(f"{school} {day} {name}: dashboard {have.get(name, 0)}, truth {want.get(name, 0)}")
        return diffs, compared

    async def _compare_redis(self) -> list[str]:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.urls["REDIS_URL"])
        store = RedisDedupStore(client, self.tz)
        diffs = []
        try:
            items = list(self.truth.students.items())
            found = await store.presence([store.slot(school, user, day) for (school, user, day), _ in items])
            for ((school, user, day), (checked_in, checked_out)), state in zip(items, found):
                self.report.states_compared += 1
                have = (state != Presence.ABSENT, state == Presence.CHECKED_OUT)
                if have != (checked_in, checked_out):
                    diffs.append(f"redis {school}/{user} {day}: state {have}, truth {(checked_in, checked_out)}")
        finally:
            await client.aclose()
        return diffs

    async def run(self, settle_timeout_s: float = 120.0) -> Report:
        started = time.monotonic()
        self._note(f"streaming taps for {len(self.schools)} schools x {self.students} students")
        await asyncio.gather(self.traffic(), self.chaos())
        self._note("comparing every counter and Redis state with the ground truth")
        await self.settle_and_compare(settle_timeout_s)
        self.report.seconds = time.monotonic() - started
        return self.report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.crash", description="Crash harness (make crash).")
    parser.add_argument("--schools", type=int, default=8)
    parser.add_argument("--students", type=int, default=60)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--logs", type=Path, default=None, help="keep the stack's folder (logs) here")
    args = parser.parse_args(argv)
    tz_name = "Asia/Kolkata"
    with tempfile.TemporaryDirectory(prefix="rollcall-crash-") as tmp:
        state = args.logs or Path(tmp)
        stack = EmbeddedStack(state, extra_env={"SCHOOL_TZ": tz_name, "DLQ_REPLAY_CRON": ""})
        try:
            print(f"starting a stack with {args.workers} workers (seed {args.seed})")
            stack.up(workers=args.workers)
            harness = Harness(stack, schools=args.schools, students=args.students, kills=args.kills,
                              seed=args.seed, tz=ZoneInfo(tz_name))
            report = asyncio.run(harness.run())
        finally:
            stack.down()
    for diff in report.differences[:50]:
        print(f"  DIFF {diff}")
    print(report.summary())
    return 1 if report.differences else 0


if __name__ == "__main__":
    sys.exit(main())
