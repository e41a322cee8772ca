"""Locust load for the ingress: plays a planned school morning, phase by phase.

Standalone, it plans a default morning and stops when every phase is answered:

    locust -f ops/locustfile.py --headless -u 50 -r 50 --host $INGRESS_URL

ROLLCALL_SCHOOLS (40), ROLLCALL_STUDENTS (300) and ROLLCALL_SEED (random) size
the morning; ROLLCALL_EXPECTED_OUT=path writes the expected totals as JSON.
Run it in one process only: each process would plan its own morning.
`ops.demo` imports this module, installs its own plan and checks the dashboard.

Any answer other than 202 is a failure, and a failed tap is not retried: the
ingress may have stored it anyway, and a second copy would change the counts.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any, Protocol

import gevent
import orjson
from gevent.event import Event
from locust import FastHttpUser, constant, events, task

try:
    from ops.workload import PHASE_NAMES, Morning, Tap, plan_morning
except ImportError:  # run by path, project not installed: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ops.workload import PHASE_NAMES, Morning, Tap, plan_morning

REPO = Path(__file__).resolve().parents[1]
STACK_ENV = REPO / ".stack" / "env"
HEADERS = {"Content-Type": "application/json"}


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of a shell-sourceable file (comments, `export` and quotes allowed)."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return values
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].strip()
        name, sep, value = line.partition("=")
        if not sep or not name.strip().isidentifier():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def stack_env_defaults(path: Path = STACK_ENV) -> None:
    """Fill unset variables from the embedded stack's env file, so the load tool sees
    the same URLs, SCHOOL_TZ and FEVER_THRESHOLD as the processes the stack started.
    The environment wins over the file."""
    for name, value in read_env_file(path).items():
        if not os.environ.get(name):
            os.environ[name] = value


def service_url(name: str) -> str | None:
    """INGRESS_URL or WEB_URL from the environment, else from the stack's env file."""
    value = os.environ.get(name) or read_env_file(STACK_ENV).get(name)
    return value.rstrip("/") if value else None


class Pacer(Protocol):
    """Decides when each tap may go, so the offered rate does not depend on latency."""

    def delay(self, now: float) -> float:
        """Reserve the next send slot; seconds from `now` until it."""
        ...

    def restart(self) -> None:
        """Forget the schedule: a phase that opens starts without credit or debt."""
        ...


class Player:
    """Hands out taps one phase at a time.

    A phase opens only when every tap of the previous one has been answered:
    the expected totals assume the ingress acknowledged all of phase N before
    any tap of phase N+1. Gevent is cooperative, so no locks are needed.
    With a pacer, each tap waits for its send slot (taps go as fast as the
    users allow without one).
    """

    def __init__(
        self,
        phases: list[list[Tap]],
        names: tuple[str, ...] = PHASE_NAMES,
        *,
        held: bool = False,
        pacer: Pacer | None = None,
    ) -> None:
        self.names = names
        self.pacer = pacer
        self.sizes = [len(phase) for phase in phases]
        self.total = sum(self.sizes)
        self._phases = phases
        self._queue: deque[Tap] = deque()
        self.phase = -1  # index of the open phase
        self.in_flight = 0
        self.sent = 0
        self.answered = 0
        self.accepted = 0
        self.failures: Counter[int] = Counter()  # HTTP status (0 = no answer) -> taps
        self.failure_samples: list[str] = []
        self.phase_started: list[float | None] = [None] * len(phases)
        self.phase_finished: list[float | None] = [None] * len(phases)
        self.started: float | None = None
        self.finished: float | None = None
        self._last_answer = 0.0
        self.done = Event()
        self._go = Event()
        if not held:
            self._go.set()
        self._open_next()

    def release(self) -> None:
        """Let a held player start handing out taps (once every user is connected and waiting)."""
        self._go.set()

    def _open_next(self) -> bool:
        """Close the open phase and open the next one that has taps; False when all are done."""
        if self.phase >= 0:
            self.phase_finished[self.phase] = self._last_answer
        while self.phase + 1 < len(self._phases):
            self.phase += 1
            if self._phases[self.phase]:
                self._queue = deque(self._phases[self.phase])
                if self.pacer is not None:
                    self.pacer.restart()
                return True
        self.finished = self._last_answer or time.monotonic()
        self.done.set()
        return False

    def next_tap(self) -> tuple[int, Tap] | None:
        """The next tap and its phase; waits while the phase drains; None when all is sent."""
        self._go.wait()
        while True:
            if self._queue:
                phase, tap = self.phase, self._queue.popleft()
                self.in_flight += 1  # from here on the phase cannot close under this tap
                if self.pacer is not None:
                    wait = self.pacer.delay(time.monotonic())
                    if wait > 0:
                        gevent.sleep(wait)
                now = time.monotonic()
                if self.started is None:
                    self.started = now
                if self.phase_started[phase] is None:
                    self.phase_started[phase] = now
                self.sent += 1
                return phase, tap
            if self.done.is_set():
                return None
            if self.in_flight:
                gevent.sleep(0.005)
                continue
            if not self._open_next():
                return None

    def answer(self, status: int, detail: str = "") -> None:
        """Record the ingress's answer to a tap handed out by next_tap."""
        self.in_flight -= 1
        self.answered += 1
        self._last_answer = time.monotonic()
        if status == 202:
            self.accepted += 1
            return
        self.failures[status] += 1
        if len(self.failure_samples) < 5:
            self.failure_samples.append(f"HTTP {status or 'no answer'}: {detail}")

    @property
    def elapsed(self) -> float:
        """Seconds from the first tap sent to the last answer (or now, while running)."""
        if self.started is None:
            return 0.0
        end = self.finished if self.finished is not None else time.monotonic()
        return max(end - self.started, 1e-9)


PLAYER: Player | None = None
MORNING: Morning | None = None


def install(morning: Morning, *, held: bool = False, pacer: Pacer | None = None) -> Player:
    """Make `morning` the plan the users play; returns its player."""
    global PLAYER, MORNING
    MORNING = morning
    PLAYER = Player(morning.phases, morning.phase_names, held=held, pacer=pacer)
    return PLAYER


def default_morning() -> Morning:
    """The standalone plan: sized by ROLLCALL_* variables, in the pipeline's time zone."""
    from pipeline.settings import Settings

    settings = Settings.from_env()
    seed_text = os.environ.get("ROLLCALL_SEED", "").strip()
    seed = int(seed_text) if seed_text else random.SystemRandom().randrange(2**31)
    return plan_morning(
        int(os.environ.get("ROLLCALL_SCHOOLS", "40")),
        int(os.environ.get("ROLLCALL_STUDENTS", "300")),
        now_ms=int(time.time() * 1000),
        tz=settings.tz,
        fever_threshold=settings.fever_threshold,
        seed=seed,
    )


def expected_json(morning: Morning) -> dict[str, Any]:
    """The ground truth in a JSON-friendly shape (for files and other tools)."""
    schools = []
    for (school, day), totals in sorted(morning.expected.items()):
        schools.append(
            {
                "schoolId": school,
                "date": day,
                **vars(totals),
                "rejectedByReason": morning.reasons[(school, day)],
                "hours": [
                    {"start": start, **vars(hour)}
                    for start, hour in morning.hours[(school, day)].items()
                ],
            }
        )
    return {"seed": morning.seed, "taps": morning.total_taps, "schools": schools}


class GateDevice(FastHttpUser):
    """One gate device's connection: posts the next tap as soon as the last is answered
    (or, with a pacer installed, as soon as its send slot comes)."""

    host = service_url("INGRESS_URL")
    wait_time = constant(0)
    connection_timeout = 10.0
    network_timeout = 30.0

    @task
    def tap(self) -> None:
        player = PLAYER
        item = player.next_tap() if player is not None else None
        if item is None or player is None:
            # Idle rather than StopUser: locust logs errors when quitting with dead users.
            gevent.sleep(0.2)
            return
        phase, tap = item
        status, detail = 0, ""
        try:
            with self.client.post(
                "/attendances",
                data=orjson.dumps(tap),
                headers=HEADERS,
                name=f"/attendances phase {phase + 1}",
                catch_response=True,
            ) as resp:
                status = resp.status_code or 0
                if status == 202:
                    resp.success()
                else:
                    detail = (resp.text or repr(resp.error))[:200]
                    resp.failure(f"HTTP {status}: {detail}")
        finally:
            player.answer(status, detail)


def _quit_when_done(environment: Any, player: Player) -> None:
    player.done.wait()
    if environment.runner is not None:
        environment.runner.quit()


@events.test_start.add_listener
def _standalone_start(environment: Any, **_: Any) -> None:
    """Standalone runs plan their own morning and stop when it has been played."""
    if PLAYER is None:
        stack_env_defaults()
        morning = default_morning()
        install(morning)
        total = morning.grand_total()
        print(
            f"rollcall: playing {morning.total_taps} taps for {len(morning.schools)} schools "
            f"on {morning.date} (seed {morning.seed}); expected {total.checkins} check-ins, "
            f"{total.checkouts} check-outs, {total.fevers} fevers, {total.rejected} rejected",
            flush=True,
        )
    assert PLAYER is not None
    gevent.spawn(_quit_when_done, environment, PLAYER)


@events.quitting.add_listener
def _standalone_report(environment: Any, **_: Any) -> None:
    """Say what was sent and what the dashboard should show; non-202 answers fail the run."""
    player, morning = PLAYER, MORNING
    if player is None or morning is None:
        return
    print(
        f"rollcall: {player.answered}/{player.total} taps answered in {player.elapsed:.1f} s, "
        f"{player.accepted} accepted (202), {sum(player.failures.values())} failed",
        flush=True,
    )
    for sample in player.failure_samples:
        print(f"rollcall:   {sample}", flush=True)
    out = os.environ.get("ROLLCALL_EXPECTED_OUT", "").strip()
    if out:
        Path(out).write_bytes(orjson.dumps(expected_json(morning), option=orjson.OPT_INDENT_2))
        print(f"rollcall: expected totals written to {out}", flush=True)
    if player.failures or player.answered < player.total:
        environment.process_exit_code = 1
