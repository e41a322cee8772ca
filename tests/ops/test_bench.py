"""The benchmark's arithmetic and parsing, and its Redis-memory part at small scale.

The figures `make bench` prints are only as good as the helpers that compute
them: a percentile off by one rank or a wrk unit misread would quietly move a
PASS to a MISS. The one integration test fills all three dedup schemes into a
redis-server of its own and checks the numbers make sense.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from pathlib import Path

import pytest

from ops import bench_redis
from ops.bench import (
    SECTIONS,
    CpuMeter,
    Figure,
    Options,
    collision_note,
    device_tap,
    format_cpu,
    format_table,
    parse_args,
    parse_wrk,
    percentile,
    process_tree,
    profile_summary,
    status_kb,
)
from ops.bench_redis import RedisMemory, SchemeBytes, false_duplicate_pairs, object_ids
from pipeline.taps import field_errors

WRK_OUTPUT = """\
Running 15s test @ http://127.0.0.1:18080/attendances
  2 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.84ms    4.02ms  61.77ms   83.01%
    Req/Sec     3.93k   302.11     4.60k    71.67%
  Latency Distribution
     50%   12.18ms
     75%   14.36ms
     90%   17.02ms
     99%   28.50ms
  117374 requests in 15.01s, 21.45MB read
Requests/sec:   7819.73
Transfer/sec:      1.43MB
"""

WRK_ERRORS = """\
Running 3s test @ http://127.0.0.1:1/attendances
  2 threads and 100 connections
  Latency Distribution
     50%  850.00us
     75%    1.20ms
     90%    3.00ms
     99%    1.05s
  3000 requests in 1.00m, 1.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 5
  Non-2xx or 3xx responses: 17
Requests/sec:     50.00
"""


# ----- percentiles ---------------------------------------------------------------------------
def test_percentile_interpolates_like_numpy() -> None:
    values = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(values, 0) == 15.0
    assert percentile(values, 100) == 50.0
    assert percentile(values, 50) == 35.0
    assert percentile(values, 40) == pytest.approx(29.0)  # numpy.percentile gives 29.0
    assert percentile(list(reversed(values)), 40) == pytest.approx(29.0)


def test_percentile_of_one_and_of_many() -> None:
    assert percentile([7.0], 99) == 7.0
    values = list(range(1, 1001))
    assert percentile(values, 50) == pytest.approx(statistics.median(values))
    assert percentile(values, 99) == pytest.approx(990.01)


def test_percentile_rejects_nothing_and_bad_q() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


# ----- wrk output -----------------------------------------------------------------------------
def test_parse_wrk_reads_rate_latency_and_duration() -> None:
    r = parse_wrk(WRK_OUTPUT)
    assert r.requests == 117374
    assert r.seconds == pytest.approx(15.01)
    assert r.rate == pytest.approx(7819.73)
    assert r.p50_ms == pytest.approx(12.18)
    assert r.p99_ms == pytest.approx(28.50)
    assert r.non_2xx == 0 and r.socket_errors == 0


def test_parse_wrk_converts_units_and_counts_errors() -> None:
    r = parse_wrk(WRK_ERRORS)
    assert r.p50_ms == pytest.approx(0.85)
    assert r.p99_ms == pytest.approx(1050.0)
    assert r.seconds == pytest.approx(60.0)
    assert r.non_2xx == 17
    assert r.socket_errors == 7


def test_parse_wrk_refuses_other_output() -> None:
    with pytest.raises(ValueError):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")
    without_latency = "\n".join(line for line in WRK_OUTPUT.splitlines() if "%   " not in line)
    with pytest.raises(ValueError):
        parse_wrk(without_latency)


# ----- table ---------------------------------------------------------------------------------
def test_format_table_aligns_columns_and_shows_verdicts() -> None:
    figures = [
        Figure("ingress", "ingress / bare", 0.81, "ratio", "0.81", ">= 0.7", True),
        Figure("batch", "POST /attendances/batch", 41_000.0, "taps/s", "41,000 taps/s", ">= 50,000", False),
        Figure("pipeline", "ceiling", 190_000.0, "records/s", "190,000 records/s"),
    ]
    lines = format_table(figures).splitlines()
    assert lines[0].split() == ["section", "figure", "value", "target", "result"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].endswith("PASS") and lines[3].endswith("MISS")
    assert lines[4].endswith("190,000 records/s")  # no target: no verdict, no trailing blanks
    starts = {line.index(word) for line, word in zip(lines[2:], ("0.81", "41,000", "190,000"))}
    assert len(starts) == 1  # the value column lines up


def test_figure_verdict() -> None:
    assert Figure("s", "n", 1.0, "", "1").verdict == ""
    assert Figure("s", "n", 1.0, "", "1", "x", True).verdict == "PASS"
    assert Figure("s", "n", 1.0, "", "1", "x", False).verdict == "MISS"


def test_profile_summary_counts_self_time_by_function_and_package() -> None:
    raw = "\n".join([
        "<module> (faust:6);decide_taps (agents/dedup.py:101);pack_command (redis/asyncio/connection.py:1340) 30",
        "<module> (faust:6);decide_taps (agents/dedup.py:101);slot (agents/dedup_store.py:140) 10",
        "<module> (faust:6);select (selectors.py:468) 10",
        "<module> (faust:6);pack_command (redis/asyncio/connection.py:1351) 50",
        "not a stack line",
    ])
    summary = profile_summary(raw)
    assert summary["samples"] == 100
    assert summary["functions"][0] == ("pack_command (redis/asyncio/connection.py)", 0.8)
    assert dict(summary["packages"]) == {"redis": 0.8, "agents": 0.1, "selectors": 0.1}
    own = dict(summary["own"])
    assert own["decide_taps (agents/dedup.py)"] == 0.4  # inclusive: its callee's samples count
    assert own["slot (agents/dedup_store.py)"] == 0.1
    assert profile_summary("") == {"samples": 0, "functions": [], "packages": [], "own": []}


def test_format_cpu_lists_processes_and_total() -> None:
    text = format_cpu({"worker-1": 98.4, "mongo": 47.0, "bench": 1.2, "wrk": 0.1})
    assert text == "worker-1 98%, mongo 47%, bench 1% (total 147%)"  # under half a percent: left out


def test_cpu_meter_sees_this_process_work() -> None:
    meter = CpuMeter(None)
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    shares = meter.shares()
    assert shares["bench"] > 50  # it spent the window computing
    assert set(shares) == {"bench", "wrk", "irq", "others"}
    assert all(v >= 0 for v in shares.values())


# ----- collision formula and memory arithmetic ----------------------------------------------------
def test_false_duplicates_for_the_reference_day() -> None:
    n = 5_000_000
    expected = n * (n - 1) / 2 / 2**73  # 12 bucket bits + 61 fingerprint bits
    assert false_duplicate_pairs(n) == pytest.approx(expected)
    assert false_duplicate_pairs(n) == pytest.approx(1.3235e-9, rel=1e-3)
    assert false_duplicate_pairs(n) < 1e-6
    assert false_duplicate_pairs(1) == 0
    assert false_duplicate_pairs(2, bucket_bits=1, field_bits=1) == pytest.approx(0.25)
    assert "2^73" in collision_note() and "1.32e-09" in collision_note()


def test_false_duplicate_formula_matches_a_simulation() -> None:
    """With few bits, count colliding pairs of random (bucket, field) draws."""
    rng = random.Random(3)
    n, bucket_bits, field_bits, trials = 60, 4, 6, 3000
    total = 0
    for _ in range(trials):
        seen: dict[tuple[int, int], int] = {}
        for _ in range(n):
            slot = (rng.getrandbits(bucket_bits), rng.getrandbits(field_bits))
            total += seen.get(slot, 0)
            seen[slot] = seen.get(slot, 0) + 1
    assert total / trials == pytest.approx(false_duplicate_pairs(n, bucket_bits, field_bits), rel=0.1)


def test_memory_extrapolation_uses_the_marginal_cost() -> None:
    m = RedisMemory(
        students=1_000_000,
        schemes={
            "rollcall": SchemeBytes(half=20_000_000, full=35_000_000),  # 30 B/student at the margin
            "plain": SchemeBytes(half=120_000_000, full=240_000_000),
            "buckets": SchemeBytes(half=10_000_000, full=20_000_000),
        },
        rollcall_keys=16_384,
        seconds=1.0,
    )
    assert m.per_student("rollcall") == 35.0
    assert m.marginal("rollcall") == 30.0
    assert m.extrapolated("rollcall", 5_000_000) == 35_000_000 + 30 * 4_000_000
    assert m.extrapolated("buckets", 5_000_000) == 100_000_000
    assert m.ratio("rollcall") == 1.75
    assert m.ratio_extrapolated("rollcall", 5_000_000) == pytest.approx(155 / 100)
    assert m.ratio("buckets") == 1.0


def test_object_ids_are_objectid_shaped_and_dense_per_school() -> None:
    students = object_ids(12_000, per_school=5_000)
    assert len(students) == 12_000
    assert len({s.user for s in students}) == 12_000
    assert all(len(s.user) == 24 and int(s.user, 16) >= 0 for s in students)
    assert {s.school for s in students} == {"SCH-0001", "SCH-0002", "SCH-0003"}
    first_school = [s.user for s in students[:5000]]
    assert len({u[:-2] for u in first_school}) <= 5000 // 256 + 2  # one import: few 22-char prefixes
    assert object_ids(100) == object_ids(100)  # seeded


# ----- load generators and command line ------------------------------------------------------------
def test_generated_taps_are_valid_device_taps() -> None:
    rng = random.Random(1)
    now = int(time.time() * 1000)
    for _ in range(500):
        tap = device_tap(rng, "SCH-0001", now)
        assert field_errors(tap, now_ms=now, max_age_days=7) == []


def test_parse_args_sections_and_quick() -> None:
    assert parse_args([]).only == SECTIONS
    options = parse_args(["--only", "pipeline,redis", "--quick"])
    assert options.only == ("redis", "pipeline")  # run in the bench's own order
    assert options.quick and options.redis_students == Options.quick_run().redis_students
    assert parse_args(["--redis-students", "5000"]).redis_students == 5000
    with pytest.raises(SystemExit):
        parse_args(["--only", "nonsense"])


def test_full_run_meets_the_issue_minimums() -> None:
    options = Options()
    assert options.redis_students >= 1_000_000
    assert options.min_pipeline_taps >= 200_000
    assert options.pipeline_schools * options.pipeline_students * 2 >= options.min_pipeline_taps
    assert options.e2e_rate == 1400 and options.e2e_seconds >= 20
    planned = options.wrk_rounds * 2 * options.wrk_seconds + options.e2e_seconds + options.batch_seconds
    assert planned < 120  # the timed runs leave room for set-up within about 5 minutes


def test_process_memory_of_this_process() -> None:
    assert os.getpid() in process_tree(os.getpid())
    assert status_kb(os.getpid(), "VmHWM") > 0
    assert status_kb(2**22 + 12345, "VmHWM") == 0  # no such process


# ----- integration: the Redis part at small scale ---------------------------------------------------
@pytest.mark.integration
async def test_redis_memory_of_the_three_schemes_on_a_private_server() -> None:
    with bench_redis.PrivateRedis() as server:
        assert server.port != 6379
        m = await bench_redis.measure_memory(server.url, 20_000, show_progress=False)
    assert not Path(server._dir).exists()  # its folder is gone with it
    for scheme in bench_redis.SCHEMES:
        assert m.schemes[scheme].full > m.schemes[scheme].half > 0
        assert m.marginal(scheme) > 0
    # A key per student and tap type costs far more than anything bucketed.
    assert m.per_student("plain") > 5 * m.per_student("buckets")
    assert m.per_student("plain") > m.per_student("rollcall")
    # Two short fields per student: about 20 bytes in the reference buckets.
    assert 10 < m.per_student("buckets") < 40
    # rollcall adds one 8-byte integer per student and 2 bits per tap: less per student
    # than the reference's two hash fields (at this small scale each of its 4,096 buckets
    # holds a handful, so key overhead dominates the per-student figure, not the marginal one).
    assert m.marginal("rollcall") < m.marginal("buckets")
    assert m.rollcall_keys > 1000  # per-day buckets, spread by hash
