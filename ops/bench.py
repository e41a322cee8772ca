"""`make bench`: speed and memory of rollcall on the embedded stack, in one run, with targets.

    python -m ops.bench                       # everything, about 5 minutes on 2 cores
    python -m ops.bench --only redis,pipeline # a subset
    python -m ops.bench --quick               # small and short: a smoke run

Sections, in the order they run (each figure is printed with its target):
1. redis: bytes per student-day of rollcall's dedup state beside the reference
   design's plain keys and hash buckets, on a private redis-server
   (ops.bench_redis); no stack needed.
2. pipeline: with the worker stopped, a realistic school morning (ops.workload:
   duplicates, check-outs, orphan check-outs, ~1% fevers) goes straight onto
   attendance-taps; a plain consumer reads it (the ceiling); then the worker
   starts and drains it, timed from its /health/ showing partitions to its
   dedup marks in Redis reaching what was produced; then every school's
   totals are checked against the generator's ground truth, and the archive
   sink is given time to put the outcomes in MongoDB.
3. e2e: an open-loop load at 1,400 taps/s through the ingress; one tap in 20
   is the first tap of a fresh school, whose view is polled until it shows.
   Both timed runs also say where the CPU went, per process.
4. ingress: wrk at 100 connections against the ingress and against a bare
   aiohttp endpoint (ops.bench_bare), interleaved, medians. The worker is
   stopped for this and the next section: on 2 cores it would otherwise take
   the CPU the ingress is being measured with.
5. batch: concurrent POST /attendances/batch of 1,000 taps each.

The stack runs in a temporary folder on free ports and is stopped at the end,
whatever happened (--keep-state keeps its logs). The table is also written to
bench-results/bench.json. --profile samples the worker and the ingress with
py-spy while they are measured and prints where their time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import math
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Iterable, Iterator, Sequence
from zoneinfo import ZoneInfo

import aiohttp
import orjson

from agents.dedup_store import RedisDedupStore
from ops import bench_redis
from ops.progress import Progress
from ops.stack import ROOT, EmbeddedStack, StackError, free_port
from ops.workload import Morning, plan_morning
from pipeline.clients import kafka_consumer, kafka_producer, mongo_client, redis_client
from pipeline.schoolday import local_date
from pipeline.settings import Settings
from pipeline.taps import DAY_MS, Tap, encode_tap, new_tap_id

SECTIONS = ("redis", "pipeline", "e2e", "ingress", "batch")
RESULTS = ROOT / "bench-results" / "bench.json"

TARGET_INGRESS_RATIO = 0.7
TARGET_BATCH = 50_000
TARGET_PIPELINE = 10_000
TARGET_E2E_P99_MS = 1000.0
TARGET_REDIS_RATIO = 0.5
TARGET_FALSE_DUP = 1e-6
PROBE_TIMEOUT_S = 10.0  # an end-to-end probe not visible by then counts as lost

# wrk: every request a valid tap of another student, timestamped now (the
# ingress rejects taps older than 7 days or more than 5 minutes ahead).
WRK_SCRIPT = r"""
local counter = 0
local threads = 0
local prefix = "0000000000"
local headers = {["Content-Type"] = "application/json"}

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  if args[1] then prefix = args[1] end
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"type":"checkin","userId":"%s%02x%012x","schoolId":"WRK-%04d","timestamp":%d,"temperature":36.6,"image":""}',
    prefix, tid % 256, counter, counter % 1000, os.time() * 1000)
  return wrk.format("POST", nil, headers, body)
end
"""


# ----- pure helpers -------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolating between closest ranks like numpy's default."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be 0 to 100, got {q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(number: str, unit: str) -> float:
    return float(number) * _UNIT_MS[unit]


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float
    non_2xx: int = 0
    socket_errors: int = 0


def parse_wrk(text: str) -> WrkResult:
    """What `wrk --latency` printed: throughput, latency percentiles and errors."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)\b", text)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    dist = {
        int(m.group(1)): _ms(m.group(2), m.group(3))
        for m in re.finditer(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.MULTILINE)
    }
    if not (total and rate) or 50 not in dist or 99 not in dist:
        raise ValueError(f"not the output of wrk --latency:\n{text}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return WrkResult(
        requests=int(total.group(1)),
        seconds=_ms(total.group(2), total.group(3)) / 1000,
        rate=float(rate.group(1)),
        p50_ms=dist[50],
        p99_ms=dist[99],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(x) for x in sockets.groups()) if sockets else 0,
    )


@dataclass
class Figure:
    """One line of the table: a measured value, how it is shown, and its target if it has one."""

    section: str
    name: str
    value: float | None
    unit: str
    shown: str
    target: str = ""
    ok: bool | None = None

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else ("PASS" if self.ok else "MISS")


def fmt_number(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def format_table(figures: Iterable[Figure]) -> str:
    """A plain-text table: section, figure, value, target, PASS/MISS."""
    rows = [("section", "figure", "value", "target", "result")]
    rows += [(f.section, f.name, f.shown, f.target, f.verdict) for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def collision_note(students: int = bench_redis.REFERENCE_STUDENTS) -> str:
    p = bench_redis.false_duplicate_pairs(students)
    bits = bench_redis.BUCKET_BITS + bench_redis.FIELD_BITS
    return (
        f"false duplicates per reference day: {bench_redis.COLLISION_FORMULA} with n={students:,}, "
        f"bucket_bits={bench_redis.BUCKET_BITS}, field_bits={bench_redis.FIELD_BITS} "
        f"= {students:,}^2/2 / 2^{bits} = {p:.2e}"
    )


# ----- processes and machine ----------------------------------------------------------
def say(message: str) -> None:
    print(message, flush=True)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def machine() -> dict[str, Any]:
    """Enough to tell two runs' machines apart."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        mem_gb = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    except (OSError, ValueError, IndexError):
        pass
    wrk = shutil.which("wrk")
    wrk_version = ""
    if wrk:
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout
        wrk_version = out.split("Copyright")[0].strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk_version,
    }


def process_tree(pid: int) -> list[int]:
    """`pid` and every descendant (the faust script may run the worker as a child)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(c) for c in children.read_text().split()]
            except OSError:
                pass
    return found


def status_kb(pid: int, name: str) -> int:
    """A `VmHWM`-style line of /proc/<pid>/status, in kB (0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` and its descendants so far (0 once gone)."""
    total = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> tuple[float, float]:
    """CPU time the whole machine spent in processes, and in interrupts (loopback TCP is mostly
    softirq time, which no process is charged for)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + steal) / tick, (irq + softirq) / tick


class CpuMeter:
    """Where the cores went during a measurement: % of one core per process of the stack and the
    bench, interrupts, and "others" for every other process (a busy neighbour skews a figure)."""

    def __init__(self, stack: EmbeddedStack | None, extra: dict[str, int] | None = None) -> None:
        self._pids: dict[str, int] = dict(extra or {})
        if stack is not None:
            for name in stack.running():
                pid = stack.pid(name)
                if pid:
                    self._pids[name] = pid
        self._start = time.monotonic()
        self._before = self._now()

    def _now(self) -> dict[str, float]:
        # The stack's services are the bench's children: count the bench itself alone.
        # Children the bench waited for (wrk) count once reaped, so "wrk" is their time.
        own = os.times()
        processes, interrupts = machine_busy_seconds()
        return {
            "bench": own.user + own.system,
            "wrk": own.children_user + own.children_system,
            "machine": processes,
            "irq": interrupts,
        } | {
            name: cpu_seconds(pid) for name, pid in self._pids.items()
        }

    def shares(self) -> dict[str, float]:
        wall = max(time.monotonic() - self._start, 1e-9)
        now = self._now()
        used = {name: (now[name] - self._before.get(name, 0.0)) / wall * 100 for name in now}
        machine = used.pop("machine")
        used["others"] = max(0.0, machine - sum(v for k, v in used.items() if k != "irq"))
        return dict(sorted(used.items(), key=lambda kv: -kv[1]))


def format_cpu(shares: dict[str, float]) -> str:
    listed = ", ".join(f"{name} {pct:.0f}%" for name, pct in shares.items() if pct >= 0.5)
    return f"{listed} (total {sum(shares.values()):.0f}%)"


_FRAME = re.compile(r"^(?P<func>.*) \((?P<path>[^()]*?)(?::\d+)?\)$")


def _package(path: str) -> str:
    """The top-level package of a py-spy frame's file (py-spy prints paths from the import root)."""
    return path.split("/", 1)[0].removesuffix(".py") or "?"


OWN_PACKAGES = ("agents", "tables", "pipeline", "web", "ops")


def profile_summary(raw: str, top: int = 8) -> dict[str, Any]:
    """From py-spy's raw (collapsed stack) output: self time by function and by package, and the
    inclusive time of rollcall's own functions (entry points like `main` left out)."""
    functions: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = []
        for frame in stack.split(";"):
            match = _FRAME.match(frame)
            frames.append((match.group("func"), match.group("path")) if match else (frame, ""))
        func, path = frames[-1]
        functions[f"{func} ({path})"] += n
        packages[_package(path)] += n
        for name in {f"{f} ({p})" for f, p in frames
                     if _package(p) in OWN_PACKAGES and f not in ("<module>", "main")}:
            own[name] += n

    def share(counts: Counter[str]) -> list[tuple[str, float]]:
        return [(name, n / total) for name, n in counts.most_common(top)] if total else []

    return {"samples": total, "functions": share(functions), "packages": share(packages), "own": share(own)}


def format_profile(name: str, summary: dict[str, Any]) -> str:
    def listed(key: str) -> str:
        return ", ".join(f"{p} {f:.0%}" for p, f in summary[key][:6])

    return (f"profile {name} ({summary['samples']:,} samples): self time by package {listed('packages')}; "
            f"top functions {listed('functions')}; inside rollcall's code (inclusive) {listed('own')}")


class Profiler:
    """py-spy on a service while a figure is measured (--profile), to say what limits it.

    Sampling from outside the process (--nonblocking) costs the target little,
    but on 2 cores py-spy's own CPU is not free: figures of a profiled run are
    a little low.
    """

    def __init__(self, out_dir: Path | None) -> None:
        self.out_dir = out_dir
        self.summaries: dict[str, dict[str, Any]] = {}
        self._binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")

    @contextlib.contextmanager
    def watching(self, name: str, pid: int | None) -> Iterator[None]:
        if self.out_dir is None or pid is None or not Path(self._binary).exists():
            yield
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        out = self.out_dir / f"{name}.raw"
        proc = subprocess.Popen(
            [self._binary, "record", "-p", str(pid), "--nonblocking", "-r", "50", "-f", "raw", "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            yield
        finally:
            proc.send_signal(signal.SIGINT)  # py-spy writes its file on interrupt
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if out.exists():
                self.summaries[name] = profile_summary(out.read_text(errors="replace"))


class BareServer:
    """ops.bench_bare in its own session on a free port; stopped by its own process group."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/attendances"
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self._log, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "ops.bench_bare", "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=ROOT, start_new_session=True,
            )
        import urllib.request

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"bare server exited with {self._proc.returncode}; see {self._log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("bare server did not answer within 20 s")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        self._proc = None


def faust_ceiling(stack: EmbeddedStack, ends: dict[int, int], timeout_s: float = 240.0) -> dict[str, Any]:
    """ops.bench_faust_bare reading the pre-loaded topic: Faust's own per-record cost, doing nothing."""
    work = Path(tempfile.mkdtemp(prefix="faust-bare-", dir=stack.state))
    result = work / "result.json"
    env = stack.env() | {
        "BENCH_ENDS": orjson.dumps({str(p): o for p, o in ends.items()}).decode(),
        "BENCH_RESULT": str(result), "BENCH_DATADIR": str(work / "data"),
        "BENCH_APP_ID": f"rollcall-bench-faust-bare-{uuid.uuid4().hex[:6]}",
    }
    with open(work / "faust-bare.log", "ab") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "faust"), "-A", "ops.bench_faust_bare", "worker", "-l", "warn"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout_s
        while not result.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"the bare Faust agent exited with {proc.returncode}; see {work}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the bare Faust agent did not finish in {timeout_s:.0f}s; see {work}")
            time.sleep(0.2)
        time.sleep(0.1)  # written in one call; let it land
        return orjson.loads(result.read_bytes())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_wrk(url: str, script: Path, seconds: float, connections: int = 100, threads: int = 2) -> WrkResult:
    prefix = uuid.uuid4().hex[:10]  # another set of students each run
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
         "-s", str(script), url, "--", prefix],
        capture_output=True, text=True, timeout=seconds + 60,
    )
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    return parse_wrk(out.stdout)


def run_async(coro: Awaitable[Any]) -> Any:
    """uvloop, as the services use: the load generator should not be the slow side."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)  # type: ignore[arg-type]


def object_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(96):024x}"


def device_tap(rng: random.Random, school: str, now_ms: int, kind: str = "checkin") -> dict[str, Any]:
    fever = rng.random() < 0.01
    return {
        "type": kind,
        "userId": object_id(rng),
        "schoolId": school,
        "timestamp": now_ms,
        "temperature": round(rng.uniform(38.0, 39.5) if fever else rng.gauss(36.6, 0.4), 1),
        "image": "",
    }


# ----- the run ----------------------------------------------------------------------------
@dataclass
class Options:
    only: tuple[str, ...] = SECTIONS
    quick: bool = False
    redis_students: int = 1_000_000
    # The reference peak has all 1,000 schools tapping at once: a batch holds hundreds of
    # schools, which is what a table write per school and batch costs. ~2.1 taps a student.
    pipeline_schools: int = 1_000
    pipeline_students: int = 100
    min_pipeline_taps: int = 200_000
    e2e_rate: float = 1400.0
    e2e_seconds: float = 20.0
    probe_every: int = 20
    poll_ms: float = 20.0
    wrk_seconds: float = 15.0
    wrk_rounds: int = 2
    batch_seconds: float = 8.0
    batch_concurrency: int = 4
    archive_wait_s: float = 90.0
    profile: Path | None = None
    keep_state: bool = False
    out: Path = RESULTS

    @classmethod
    def quick_run(cls, only: tuple[str, ...] = SECTIONS) -> "Options":
        return cls(
            only=only, quick=True, redis_students=20_000, pipeline_schools=20, pipeline_students=150,
            min_pipeline_taps=0, e2e_seconds=5.0, wrk_seconds=3.0, wrk_rounds=1, batch_seconds=3.0,
        )


@dataclass
class Bench:
    options: Options
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    stack: EmbeddedStack | None = None
    worker_running: bool = False
    started: float = field(default_factory=time.monotonic)
    profiler: Profiler = field(init=False)

    def __post_init__(self) -> None:
        self.profiler = Profiler(self.options.profile)

    def add(self, section: str, name: str, value: float | None, unit: str, shown: str,
            target: str = "", ok: bool | None = None) -> None:
        self.figures.append(Figure(section, name, value, unit, shown, target, ok))

    def step(self, message: str) -> None:
        say(f"[{time.monotonic() - self.started:6.1f}s] {message}")

    # ----- stack ------------------------------------------------------------------------
    @property
    def urls(self) -> dict[str, str]:
        assert self.stack is not None
        return self.stack.urls()

    @property
    def settings(self) -> Settings:
        """The worker's settings (it gets this environment plus the stack's URLs)."""
        urls = self.urls
        return dataclasses.replace(
            Settings.from_env(),
            kafka_broker=urls["KAFKA_BROKER"], redis_url=urls["REDIS_URL"], mongo_url=urls["MONGO_URL"],
        )

    def stop_worker(self) -> None:
        assert self.stack is not None
        if self.worker_running:
            self.step("stopping the worker")
            self.stack.stop("worker-1")
            self.worker_running = False

    def start_worker(self) -> None:
        assert self.stack is not None
        if not self.worker_running:
            self.step("starting the worker")
            self.stack.start(self.stack.service("worker-1"))
            self.worker_running = True

    # ----- 1. Redis -------------------------------------------------------------------------
    def redis(self) -> None:
        n = self.options.redis_students
        self.step(f"redis: {n:,} students x (check-in + check-out) per scheme, on a private redis-server")
        with bench_redis.PrivateRedis() as server:
            m: bench_redis.RedisMemory = run_async(bench_redis.measure_memory(server.url, n))
        names = {"rollcall": "rollcall integer-set buckets + outcome log", "plain": "reference plain keys",
                 "buckets": "reference hash buckets"}
        for scheme in bench_redis.SCHEMES:
            self.add("redis", f"{names[scheme]}, bytes/student-day", m.per_student(scheme), "B",
                     f"{m.per_student(scheme):,.1f} B (x{m.ratio(scheme):.2f} of ref buckets)")
        ratio = m.ratio("rollcall")
        self.add("redis", f"rollcall / ref buckets at {n:,}", ratio, "ratio", f"{ratio:.2f}",
                 f"<= {TARGET_REDIS_RATIO}", ratio <= TARGET_REDIS_RATIO)
        ref = bench_redis.REFERENCE_STUDENTS
        for scheme in bench_redis.SCHEMES:
            mb = m.extrapolated(scheme) / 1e6
            self.add("redis", f"{names[scheme]} at {ref / 1e6:.0f}M (extrapolated)", mb, "MB",
                     f"{mb:,.0f} MB (x{m.ratio_extrapolated(scheme):.2f})")
        p = bench_redis.false_duplicate_pairs(ref)
        self.add("redis", "false-duplicate probability per reference day", p, "probability",
                 f"{p:.1e}", f"< {TARGET_FALSE_DUP:.0e}", p < TARGET_FALSE_DUP)
        self.details["redis"] = {
            "students": n,
            "bytes": {k: asdict(v) for k, v in m.schemes.items()},
            "bytes_per_student": {k: m.per_student(k) for k in bench_redis.SCHEMES},
            "marginal_bytes_per_student": {k: m.marginal(k) for k in bench_redis.SCHEMES},
            "extrapolated_bytes_5M": {k: m.extrapolated(k) for k in bench_redis.SCHEMES},
            "ratio_vs_ref_buckets": {k: m.ratio(k) for k in bench_redis.SCHEMES},
            "rollcall_keys": m.rollcall_keys,
            "base_offset": bench_redis.BASE_OFFSET,
            "false_duplicate_pairs_5M": p,
            "collision_formula": bench_redis.COLLISION_FORMULA,
            "seconds": m.seconds,
        }
        self.notes.append(
            f"redis: used_memory growth on a private redis-server; {n:,} ObjectId students "
            f"({bench_redis.STUDENTS_PER_SCHOOL:,} per school, one roster import each), one check-in "
            f"and one check-out each; rollcall through RedisDedupStore.decide in batches of "
            f"{bench_redis.BATCH:,}, offsets from {bench_redis.BASE_OFFSET:,} (~100 school days into a "
            f"partition), {m.rollcall_keys:,} keys; reference schemes as its redis-repo.ts writes them "
            f"({{type}}:{{userId}}, value \"true\", no day, no expiry). 5M figures are extrapolated, not "
            f"measured: bytes at {n:,} + marginal bytes/student of the second half x the rest."
        )
        self.notes.append(collision_note())
        self.step(f"redis: done in {m.seconds:.0f}s")

    # ----- 2. pipeline ----------------------------------------------------------------------
    def pipeline(self) -> None:
        assert self.stack is not None
        opts, settings = self.options, self.settings
        tz = ZoneInfo(settings.school_tz)
        self.stop_worker()
        # Two days back: its own school day, so the check below sees only these taps
        # (the worker judges a tap by its own timestamp; the age limit is the ingress's).
        now = int(time.time() * 1000) - 2 * DAY_MS
        self.step(f"pipeline: planning {opts.pipeline_schools} schools x {opts.pipeline_students:,} students")
        morning = plan_morning(opts.pipeline_schools, opts.pipeline_students, now_ms=now, tz=tz,
                               fever_threshold=settings.fever_threshold, seed=20_240_901)
        records = [
            (t["schoolId"].encode(), encode_tap(Tap(id=new_tap_id(), **t)))
            for phase in morning.phases for t in phase
        ]
        if len(records) < opts.min_pipeline_taps:
            raise RuntimeError(f"planned {len(records):,} taps, need {opts.min_pipeline_taps:,}")
        ends = run_async(produce(settings, records, "pipeline: producing"))
        total = sum(ends.values())
        self.step(f"pipeline: {len(records):,} taps on {settings.taps_topic} "
                  f"({sum(t.fevers for t in morning.expected.values()):,} fevers, "
                  f"{sum(t.rejected for t in morning.expected.values()):,} to be rejected); "
                  f"topic holds {total:,}")

        self.step("pipeline: ceiling, a plain aiokafka consumer reading the topic from the beginning")
        ceiling = run_async(read_all(settings, ends))
        self.step(f"pipeline: ceiling {ceiling:,.0f} records/s")
        self.step("pipeline: Faust ceiling, an agent that only counts take_events batches of the same topic")
        bare = faust_ceiling(self.stack, ends)
        self.step(f"pipeline: Faust ceiling {bare['rate']:,.0f} records/s")

        result = run_async(self._drain(settings, ends))
        self.worker_running = True
        pid = self.stack.pid("worker-1")
        hwm = max((status_kb(p, "VmHWM") for p in process_tree(pid)), default=0) if pid else 0
        rss = max((status_kb(p, "VmRSS") for p in process_tree(pid)), default=0) if pid else 0
        check = run_async(check_counts(self.urls["WEB_URL"], morning))
        # The archive sink (outcomes to MongoDB) lags the counts; let it finish before the
        # end-to-end run so that run measures a steady pipeline, not the backlog.
        self.step("pipeline: waiting for the archive sink to store the outcomes in MongoDB")
        archive = run_async(wait_archived(settings, morning, opts.archive_wait_s))
        archive_s = archive.pop("at") - result.pop("ready_at")

        rate = result["rate"]
        self.add("pipeline", "1 worker draining a pre-loaded topic", rate, "taps/s",
                 f"{fmt_number(rate)} taps/s ({result['records']:,} in {result['seconds']:.1f}s)",
                 f">= {TARGET_PIPELINE:,}", rate >= TARGET_PIPELINE)
        self.add("pipeline", "CPU during the drain, % of one core", None, "%", format_cpu(result["cpu_percent"]))
        self.add("pipeline", "plain aiokafka consumer (ceiling)", ceiling, "records/s",
                 f"{fmt_number(ceiling)} records/s")
        self.add("pipeline", "worker / ceiling", rate / ceiling, "ratio", f"{rate / ceiling:.3f}")
        self.add("pipeline", "bare Faust agent, take_events only (Faust's ceiling)", bare["rate"], "records/s",
                 f"{fmt_number(bare['rate'])} records/s ({bare['records']:,} in {bare['seconds']:.1f}s)")
        self.add("pipeline", "worker / Faust ceiling", rate / bare["rate"], "ratio", f"{rate / bare['rate']:.2f}")
        self.add("pipeline", "worker peak memory (VmHWM)", hwm * 1024 / 1e6, "MB",
                 f"{hwm * 1024 / 1e6:,.0f} MB (RSS now {rss * 1024 / 1e6:,.0f} MB)")
        self.add("pipeline", f"counts exact ({len(morning.expected)} schools, {morning.date})",
                 1.0 if check["exact"] else 0.0, "bool",
                 f"{check['seen']:,} of {len(records):,} taps" + ("" if check["exact"] else
                                                                  f", {len(check['mismatches'])} schools differ"),
                 "exact", check["exact"])
        self.add("pipeline", "archive sink: attendances in MongoDB", archive_s, "s",
                 f"{archive['documents']:,} of {archive['expected_documents']:,} students, "
                 f"{archive['checkouts']:,} of {archive['expected_checkouts']:,} check-outs, "
                 f"{archive_s:.1f}s after ready", "complete", archive["complete"])
        self.details["pipeline"] = {
            "taps": len(records), "topic_records": total, "end_offsets": ends, "date": morning.date,
            "ceiling_records_per_s": ceiling, "faust_ceiling": bare, **result, "worker_vmhwm_kb": hwm, "worker_vmrss_kb": rss,
            "counts": check, "archive": archive, "archived_after_s": archive_s,
        }
        self.notes.append(
            "pipeline: drain timed from the worker's /health/ listing its partitions to "
            "rc:dd:next:attendance-taps:{p} in Redis reaching, on every partition, the offsets the "
            "producer was acknowledged (the development broker under-reports end offsets); the count "
            "check compares every school's checkins, checkouts, present, fevers and rejected with the "
            "generator's ground truth, and checkins + checkouts + rejected with the taps produced."
        )

    async def _drain(self, settings: Settings, ends: dict[int, int]) -> dict[str, Any]:
        """Start the worker; time from partitions assigned to every partition decided to its end."""
        assert self.stack is not None
        stack = self.stack
        web = self.urls["WEB_URL"]
        client = redis_client(settings)
        store = RedisDedupStore.for_settings(client, settings)
        partitions = sorted(ends)
        total = sum(ends.values())
        self.step("pipeline: starting the worker")
        launched = time.monotonic()
        starting = asyncio.ensure_future(asyncio.to_thread(stack.start, stack.service("worker-1")))
        try:
            async with aiohttp.ClientSession() as http:
                while True:
                    if starting.done():
                        starting.result()  # raises StackError if the worker died
                    try:
                        async with http.get(f"{web}/health/", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                            if (await resp.json()).get("assigned"):
                                break
                    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                        pass
                    await asyncio.sleep(0.05)
            ready = time.monotonic()
            at_ready = await store.next_offsets(settings.taps_topic, partitions)
            already = sum(min(ends[p], at_ready[p] or 0) for p in partitions)
            self.step(f"pipeline: worker ready after {ready - launched:.1f}s "
                      f"({already:,} taps already decided); draining")
            bar = Progress(total, "  drained")
            bar.advance(already)
            deadline = ready + 600
            cpu = CpuMeter(stack)
            with self.profiler.watching("worker-drain", stack.pid("worker-1")):
                while True:
                    nexts = await store.next_offsets(settings.taps_topic, partitions)
                    done = sum(min(ends[p], nexts[p] or 0) for p in partitions)
                    bar.advance(done - bar.done)
                    if done >= total:
                        break
                    if time.monotonic() > deadline:
                        bar.close()
                        raise RuntimeError(f"drain stalled at {done:,} of {total:,}")
                    await asyncio.sleep(0.05)
                drained = time.monotonic()
            shares = cpu.shares()
            bar.close()
            await starting
        finally:
            await client.aclose()
        seconds = drained - ready
        records = total - already
        return {
            "ready_at": ready, "ready_after_s": ready - launched, "cpu_percent": shares, "seconds": seconds,
            "records": records, "decided_before_ready": already, "rate": records / seconds if seconds > 0 else 0.0,
        }

    # ----- 3. end to end --------------------------------------------------------------------
    def e2e(self) -> None:
        opts = self.options
        self.start_worker()
        self.step(f"e2e: {opts.e2e_rate:,.0f} taps/s offered for {opts.e2e_seconds:.0f}s, open loop; "
                  f"1 in {opts.probe_every} a probe polled every {opts.poll_ms:.0f} ms")
        cpu = CpuMeter(self.stack)
        with self.profiler.watching("worker-e2e", self.stack.pid("worker-1") if self.stack else None):
            r = run_async(end_to_end(self.urls["INGRESS_URL"], self.urls["WEB_URL"],
                                     ZoneInfo(self.settings.school_tz), opts.e2e_rate, opts.e2e_seconds,
                                     opts.probe_every, poll_s=opts.poll_ms / 1000))
        r["cpu_percent"] = cpu.shares()
        seen = r["visible_ms"]
        missing = r["probes"] - len(seen)
        # A probe never seen counts as the timeout, so the percentiles cannot look better
        # for what was not seen; "≥" marks a percentile that is one of them.
        timeout_ms = PROBE_TIMEOUT_S * 1000
        lat = seen + [timeout_ms] * missing
        p50 = percentile(lat, 50) if lat else float("nan")
        p99 = percentile(lat, 99) if lat else float("nan")
        shown = " / ".join(("≥ " if v >= timeout_ms else "") + f"{v:,.0f}" for v in (p50, p99))
        ok = bool(lat) and missing == 0 and r["non_202"] == 0 and p99 < TARGET_E2E_P99_MS
        self.add("e2e", f"202 -> visible in /schools/{{id}}/, p50 / p99 @ {opts.e2e_rate:,.0f}/s", p99, "ms",
                 f"{shown} ms ({len(seen)} of {r['probes']} probes seen within {PROBE_TIMEOUT_S:.0f}s)",
                 f"p99 < {TARGET_E2E_P99_MS:,.0f} ms", ok)
        self.add("e2e", "offered / achieved / answered 202", r["achieved_rate"], "taps/s",
                 f"{opts.e2e_rate:,.0f} / {r['achieved_rate']:,.0f} / {r['ok_rate']:,.0f} per s"
                 + (f", {r['non_202']} not 202" if r["non_202"] else ""))
        self.add("e2e", "ingress latency to 202 at that rate, p50 / p99",
                 r["ack_p99_ms"], "ms", f"{r['ack_p50_ms']:,.1f} / {r['ack_p99_ms']:,.1f} ms")
        self.add("e2e", "CPU during the run, % of one core", None, "%", format_cpu(r["cpu_percent"]))
        self.details["e2e"] = {k: v for k, v in r.items() if k != "visible_ms"} | {
            "visible_p50_ms": p50, "visible_p99_ms": p99, "probes_seen": len(seen),
        }

    # ----- 4. ingress vs bare ------------------------------------------------------------------
    def ingress(self) -> None:
        assert self.stack is not None
        opts = self.options
        if not shutil.which("wrk"):
            self.add("ingress", "single-tap POST /attendances", None, "", "wrk not installed",
                     f">= {TARGET_INGRESS_RATIO} of bare", False)
            return
        self.stop_worker()
        script = self.stack.state / "tap.lua"
        script.write_text(WRK_SCRIPT)
        bare = BareServer(self.stack.state / "bare.log")
        ingress_url = self.urls["INGRESS_URL"] + "/attendances"
        runs: dict[str, list[WrkResult]] = {"bare": [], "ingress": []}
        cpu: dict[str, list[dict[str, float]]] = {"bare": [], "ingress": []}
        try:
            bare.start()
            if not opts.quick:
                self.step("ingress: warming both endpoints up (2 s each)")
                run_wrk(bare.url, script, 2)
                run_wrk(ingress_url, script, 2)
            for n in range(opts.wrk_rounds):
                for name, url in (("bare", bare.url), ("ingress", ingress_url)):
                    self.step(f"ingress: round {n + 1}/{opts.wrk_rounds}, {name}, wrk -t2 -c100 "
                              f"for {opts.wrk_seconds:.0f}s (load average {load_average()})")
                    last = n == opts.wrk_rounds - 1 and name == "ingress"
                    meter = CpuMeter(self.stack, {"bare": bare.pid} if bare.pid else None)
                    with self.profiler.watching("ingress-single", self.stack.pid("ingress") if last else None):
                        result = run_wrk(url, script, opts.wrk_seconds)
                    runs[name].append(result)
                    cpu[name].append(meter.shares())
                    self.step(f"ingress:   {result.rate:,.0f} req/s, p50 {result.p50_ms:.1f} ms, "
                              f"p99 {result.p99_ms:.1f} ms, non-2xx {result.non_2xx}, "
                              f"socket errors {result.socket_errors}; CPU {format_cpu(cpu[name][-1])}")
        finally:
            bare.stop()
        b_rate = median([r.rate for r in runs["bare"]])
        i_rate = median([r.rate for r in runs["ingress"]])
        bad = sum(r.non_2xx + r.socket_errors for r in runs["ingress"])
        ratio = i_rate / b_rate
        self.add("ingress", "bare aiohttp + uvloop, parse + 202 (ceiling)", b_rate, "req/s",
                 f"{fmt_number(b_rate)} req/s, p50 {median([r.p50_ms for r in runs['bare']]):.1f} / "
                 f"p99 {median([r.p99_ms for r in runs['bare']]):.1f} ms")
        self.add("ingress", "single-tap POST /attendances (acks=all)", i_rate, "taps/s",
                 f"{fmt_number(i_rate)} taps/s, p50 {median([r.p50_ms for r in runs['ingress']]):.1f} / "
                 f"p99 {median([r.p99_ms for r in runs['ingress']]):.1f} ms"
                 + (f", {bad} errors" if bad else ""))
        self.add("ingress", "ingress / bare", ratio, "ratio", f"{ratio:.2f}",
                 f">= {TARGET_INGRESS_RATIO}", ratio >= TARGET_INGRESS_RATIO and bad == 0)
        for name in ("bare", "ingress"):
            self.add("ingress", f"CPU during the last {name} run, % of one core", None, "%",
                     format_cpu(cpu[name][-1]))
        self.details["ingress"] = {name: [asdict(r) for r in rs] for name, rs in runs.items()} | {
            "median_bare": b_rate, "median_ingress": i_rate, "ratio": ratio, "cpu_percent": cpu,
        }
        self.notes.append(
            f"ingress: wrk 4.1 -t2 -c100, {opts.wrk_rounds} rounds of {opts.wrk_seconds:.0f}s each, "
            "interleaved bare/ingress, medians; the worker is stopped for the HTTP runs so the ratio "
            "compares HTTP + validation + broker acknowledgement with HTTP alone, not CPU contention "
            "with the worker on the same 2 cores."
        )

    # ----- 5. batch ---------------------------------------------------------------------------
    def batch(self) -> None:
        opts = self.options
        self.stop_worker()
        self.step(f"batch: {opts.batch_concurrency} concurrent POST /attendances/batch of 1,000 taps "
                  f"for {opts.batch_seconds:.0f}s")
        meter = CpuMeter(self.stack)
        with self.profiler.watching("ingress-batch", self.stack.pid("ingress") if self.stack else None):
            r = run_async(batch_load(self.urls["INGRESS_URL"], opts.batch_seconds, opts.batch_concurrency))
        r["cpu_percent"] = meter.shares()
        self.add("batch", "POST /attendances/batch (1,000 taps each)", r["rate"], "taps/s",
                 f"{fmt_number(r['rate'])} taps/s, batch p50 {r['p50_ms']:.0f} / p99 {r['p99_ms']:.0f} ms"
                 + (f", {r['failed']} failed" if r["failed"] else ""),
                 f">= {TARGET_BATCH:,}", r["rate"] >= TARGET_BATCH and r["failed"] == 0)
        self.add("batch", "CPU during the run, % of one core", None, "%", format_cpu(r["cpu_percent"]))
        self.details["batch"] = r

    # ----- driver -----------------------------------------------------------------------------
    def run(self) -> int:
        opts = self.options
        self.details["machine"] = machine()
        self.details["load_average_start"] = load_average()
        self.step(f"rollcall bench: {', '.join(opts.only)}{' (quick)' if opts.quick else ''}; "
                  f"load average {load_average()}")
        needs_stack = [s for s in opts.only if s != "redis"]
        state = Path(tempfile.mkdtemp(prefix="rollcall-bench-")) if needs_stack else None
        starting: concurrent.futures.Future[list[str]] | None = None
        try:
            if state is not None:
                # The stack starts while the Redis section runs: that section measures bytes, not time.
                self.stack = EmbeddedStack(state, extra_env={"DLQ_REPLAY_CRON": ""})
                self.step(f"stack: starting broker, Redis, MongoDB, worker, ingress in {state}")
                pool = concurrent.futures.ThreadPoolExecutor(1)
                starting = pool.submit(self.stack.up, workers=1)
                pool.shutdown(wait=False)  # its one thread ends when up() returns
            if "redis" in opts.only:
                self.guarded("redis")
            if starting is not None and state is not None:
                try:
                    starting.result()
                except StackError:
                    tail_logs(state)
                    raise
                self.worker_running = True
                self.step("stack: up")
                for section in ("pipeline", "e2e", "ingress", "batch"):
                    if section in opts.only:
                        self.guarded(section)
        finally:
            if self.stack is not None and state is not None:
                if starting is not None:
                    concurrent.futures.wait([starting])  # never stop a stack while it is starting
                self.step("stack: stopping")
                self.stack.down()
                if opts.keep_state:
                    self.step(f"stack: logs kept in {state}")
                else:
                    shutil.rmtree(state, ignore_errors=True)
        self.details["load_average_end"] = load_average()
        self.report()
        # A missed target is a result; a section that could not run is a failure.
        return 1 if any(f.name == "section failed" for f in self.figures) else 0

    def guarded(self, section: str) -> None:
        """Run one section; a failure is a MISS line in the table, and the other sections still run."""
        try:
            getattr(self, section)()
        except (StackError, RuntimeError, OSError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            traceback.print_exc()
            self.add(section, "section failed", None, "", f"{type(exc).__name__}: {exc}"[:100], "runs", False)

    def report(self) -> None:
        table = format_table(self.figures)
        say("")
        say(table)
        say("")
        if self.profiler.summaries:
            self.details["profiles"] = self.profiler.summaries
            self.notes += [format_profile(k, v) for k, v in self.profiler.summaries.items()]
            self.notes.append(f"profiles are py-spy raw files in {self.options.profile}; figures of a "
                              "profiled run are a little low")
        for note in self.notes:
            say(f"- {note}")
        say(f"- load average at start {self.details['load_average_start']}, at end "
            f"{self.details['load_average_end']}; {self.details['machine']['cores']} cores, "
            f"{self.details['machine']['cpu']}")
        out = self.options.out
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(orjson.dumps({
            "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": "python -m ops.bench " + " ".join(sys.argv[1:]),
            "quick": self.options.quick,
            "sections": list(self.options.only),
            "seconds": round(time.monotonic() - self.started, 1),
            "figures": [asdict(f) | {"verdict": f.verdict} for f in self.figures],
            "notes": self.notes,
            "details": self.details,
        }, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
        misses = [f.name for f in self.figures if f.ok is False]
        say(f"\nwritten to {out}; {len(misses)} target(s) missed"
            f"{': ' + '; '.join(misses) if misses else ''}; "
            f"total {time.monotonic() - self.started:.0f}s")


def tail_logs(state: Path, lines: int = 30) -> None:
    for log in sorted(state.glob("*.log")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        say(f"----- {log.name}\n" + "\n".join(text))


# ----- async parts ----------------------------------------------------------------------------
async def produce(settings: Settings, records: Sequence[tuple[bytes, bytes]], label: str) -> dict[int, int]:
    """Send every record; per partition, the offset after the last one the broker acknowledged."""
    producer = kafka_producer(settings, linger_ms=20)
    await producer.start()
    ends: dict[int, int] = {}
    try:
        with Progress(len(records), f"  {label}") as bar:
            for start in range(0, len(records), 20_000):
                chunk = records[start:start + 20_000]
                futures = [await producer.send(settings.taps_topic, key=k, value=v) for k, v in chunk]
                for meta in await asyncio.gather(*futures):
                    ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
                bar.advance(len(chunk))
    finally:
        await producer.stop()
    for p in range(settings.topic_partitions):
        ends.setdefault(p, 0)
    return ends


async def read_all(settings: Settings, ends: dict[int, int]) -> float:
    """Records/s of a plain consumer reading every partition from the start to `ends`."""
    # No group: nothing to join (the development broker delays a group's first join).
    consumer = kafka_consumer(settings, settings.taps_topic, None)  # type: ignore[arg-type]
    await consumer.start()
    total = sum(ends.values())
    seen = 0
    reached: dict[int, int] = {}
    try:
        first = time.monotonic()  # connected: from here on it is reading
        deadline = first + 120
        while any(reached.get(p, 0) < end for p, end in ends.items()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"plain consumer read {seen:,} of {total:,}")
            batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for tp, msgs in batches.items():
                seen += len(msgs)
                if msgs:
                    reached[tp.partition] = msgs[-1].offset + 1
        last = time.monotonic()
    finally:
        await consumer.stop()
    return seen / (last - first)


async def wait_archived(settings: Settings, morning: Morning, timeout_s: float) -> dict[str, Any]:
    """Poll MongoDB until the archive holds a document per checked-in student and every check-out."""
    want = morning.grand_total()
    client = mongo_client(settings)
    attendances = client[settings.mongo_db]["attendances"]
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            docs = await attendances.count_documents({"date": morning.date})
            outs = await attendances.count_documents({"date": morning.date, "checkout": {"$exists": True}})
            done = docs == want.checkins and outs == want.checkouts
            if done or time.monotonic() > deadline:
                return {"complete": done, "documents": docs, "checkouts": outs, "at": time.monotonic(),
                        "expected_documents": want.checkins, "expected_checkouts": want.checkouts}
            await asyncio.sleep(0.5)
    finally:
        await client.close()


async def check_counts(web: str, morning: Morning, timeout_s: float = 30.0) -> dict[str, Any]:
    """Every school's totals against the ground truth; waits for the last batch to be counted."""
    fields = ("checkins", "checkouts", "present", "fevers", "rejected")
    expected_taps = morning.total_taps
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{web}/schools/", params={"date": morning.date, "limit": "10000"}) as resp:
                body = await resp.json()
            rows = {r["schoolId"]: r for r in body.get("schools", [])}
            seen = sum(r["checkins"] + r["checkouts"] + r["rejected"] for r in rows.values())
            mismatches = []
            for (school, _), totals in morning.expected.items():
                row = rows.get(school, {})
                got = {f: row.get(f, 0) for f in fields}
                want = {f: getattr(totals, f) for f in fields}
                if got != want:
                    mismatches.append({"school": school, "got": got, "want": want})
            exact = seen == expected_taps and not mismatches
            if exact or time.monotonic() > deadline:
                return {"exact": exact, "seen": seen, "expected": expected_taps,
                        "schools": len(rows), "mismatches": mismatches[:20]}
            await asyncio.sleep(0.25)


async def end_to_end(
    ingress: str, web: str, tz: ZoneInfo, rate: float, seconds: float, probe_every: int,
    poll_s: float = 0.02, probe_timeout_s: float = PROBE_TIMEOUT_S,
) -> dict[str, Any]:
    """Open loop: tap i is sent at start + i/rate whatever the answers; probes are fresh schools."""
    rng = random.Random(5)
    n = int(rate * seconds)
    acks: list[float] = []
    visible: list[float] = []
    statuses: dict[int, int] = {}
    probes = 0
    run = uuid.uuid4().hex[:8]

    async def poll(http: aiohttp.ClientSession, school: str, day: str, acked: float) -> None:
        deadline = acked + probe_timeout_s
        while time.monotonic() < deadline:
            try:
                async with http.get(f"{web}/schools/{school}/", params={"date": day}) as resp:
                    body = await resp.json()
                if resp.status == 200 and body.get("checkins", 0) >= 1:
                    visible.append((time.monotonic() - acked) * 1000)
                    return
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                pass
            await asyncio.sleep(poll_s)

    async def send(i: int, scheduled: float, post: aiohttp.ClientSession, get: aiohttp.ClientSession) -> None:
        nonlocal probes
        now_ms = int(time.time() * 1000)
        probe = i % probe_every == 0
        school = f"E2E-{run}-{i:06d}" if probe else f"E2E-SCH-{rng.randrange(1000):04d}"
        tap = device_tap(rng, school, now_ms)
        try:
            async with post.post(f"{ingress}/attendances", data=orjson.dumps(tap),
                                 headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError):
            status = 0
        done = time.monotonic()
        statuses[status] = statuses.get(status, 0) + 1
        if status != 202:
            return
        acks.append((done - scheduled) * 1000)
        if probe:
            probes += 1
            await poll(get, school, local_date(now_ms, tz), done)

    timeout = aiohttp.ClientTimeout(total=15)
    # At most 8 view reads in flight: when the pipeline falls behind, more outstanding
    # probes must not turn into more load on the worker they are waiting for.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512), timeout=timeout) as post, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8), timeout=timeout) as get:
        tasks = []
        start = time.monotonic()
        bar = Progress(n, "  e2e sent")
        for i in range(n):
            scheduled = start + i / rate
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(i, scheduled, post, get)))
            bar.advance()
        sent_for = time.monotonic() - start
        bar.close()
        await asyncio.gather(*tasks)
    ok = statuses.get(202, 0)
    return {
        "offered_rate": rate, "seconds": seconds, "sent": n, "achieved_rate": n / sent_for,
        "ok_rate": ok / sent_for, "statuses": statuses, "non_202": n - ok, "probes": probes,
        "ack_p50_ms": percentile(acks, 50) if acks else float("nan"),
        "ack_p99_ms": percentile(acks, 99) if acks else float("nan"),
        "visible_ms": visible,
    }


async def batch_load(ingress: str, seconds: float, concurrency: int, size: int = 1000) -> dict[str, Any]:
    """Closed loop: `concurrency` devices each post a batch, wait for the answer, post the next."""
    rng = random.Random(9)
    now_ms = int(time.time() * 1000)
    bodies = [
        orjson.dumps([device_tap(rng, f"BAT-{rng.randrange(1000):04d}", now_ms - rng.randrange(3_600_000))
                      for _ in range(size)])
        for _ in range(2 * concurrency)
    ]
    latencies: list[float] = []
    failed: dict[int, int] = {}
    ok = 0

    async def device(k: int, http: aiohttp.ClientSession, deadline: float) -> None:
        nonlocal ok
        n = k
        while time.monotonic() < deadline:
            t = time.monotonic()
            async with http.post(f"{ingress}/attendances/batch", data=bodies[n % len(bodies)],
                                 headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
                if resp.status == 202:
                    ok += 1
                    latencies.append((time.monotonic() - t) * 1000)
                else:
                    failed[resp.status] = failed.get(resp.status, 0) + 1
            n += concurrency

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        start = time.monotonic()
        await asyncio.gather(*(device(k, http, start + seconds) for k in range(concurrency)))
        elapsed = time.monotonic() - start
    return {
        "batches": ok, "taps": ok * size, "seconds": elapsed, "rate": ok * size / elapsed,
        "failed": sum(failed.values()), "failed_statuses": failed, "concurrency": concurrency,
        "p50_ms": percentile(latencies, 50) if latencies else float("nan"),
        "p99_ms": percentile(latencies, 99) if latencies else float("nan"),
    }


# ----- command line -------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m ops.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run, of: {', '.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="small and short: a smoke run, not figures")
    parser.add_argument("--redis-students", type=int, help="students per Redis scheme (default 1,000,000)")
    parser.add_argument("--wrk-seconds", type=float, help="seconds per wrk run (default 15)")
    parser.add_argument("--rounds", type=int, help="bare/ingress pairs (default 2)")
    parser.add_argument("--e2e-seconds", type=float, help="end-to-end run length (default 20)")
    parser.add_argument("--e2e-rate", type=float, help="taps/s offered end to end (default 1,400)")
    parser.add_argument("--poll-ms", type=float, help="how often a probe's school view is read (default 20)")
    parser.add_argument("--profile", nargs="?", const=ROOT / "bench-results" / "profiles", type=Path,
                        help="sample the worker and the ingress with py-spy while they are measured")
    parser.add_argument("--schools", type=int, help="schools in the pre-loaded morning (default 1,000)")
    parser.add_argument("--students", type=int, help="students per school in it (default 100)")
    parser.add_argument("--keep-state", action="store_true", help="keep the stack's folder (logs) afterwards")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = [s for s in only if s not in SECTIONS]
    if unknown or not only:
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    only = tuple(s for s in SECTIONS if s in only)  # always in the order that keeps them apart
    options = Options.quick_run(only) if args.quick else Options(only=only)
    if args.redis_students:
        options.redis_students = args.redis_students
    if args.wrk_seconds:
        options.wrk_seconds = args.wrk_seconds
    if args.rounds:
        options.wrk_rounds = args.rounds
    if args.e2e_seconds:
        options.e2e_seconds = args.e2e_seconds
    if args.e2e_rate:
        options.e2e_rate = args.e2e_rate
    if args.poll_ms:
        options.poll_ms = args.poll_ms
    if args.schools:
        options.pipeline_schools = args.schools
    if args.students:
        options.pipeline_students = args.students
    options.out = args.out
    options.keep_state = args.keep_state
    options.profile = args.profile
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        return Bench(options).run()
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except (StackError, RuntimeError) as exc:
        say(f"bench: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
