"""`make load`'s pure parts: the send schedule, the command line and the closing summary.

Importing ops.load must not import locust (it patches the standard library for
gevent, which would change every later test in the session); the first test
guards that.
"""

from __future__ import annotations

import math
import random
import subprocess
import sys

import pytest

from ops.load import (
    DEFAULT_RATE,
    MIN_USERS,
    Summary,
    TokenBucket,
    default_users,
    format_summary,
    parse_args,
)


def test_importing_the_module_leaves_locust_and_gevent_alone() -> None:
    code = (
        "import sys, ops.load; "
        "sys.exit(1 if {'locust', 'gevent'} & set(sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ----- the token bucket ------------------------------------------------------------


def test_callers_at_the_same_instant_get_consecutive_slots() -> None:
    bucket = TokenBucket(10.0)
    delays = [bucket.delay(100.0) for _ in range(5)]
    assert delays == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert bucket.granted == 5 and bucket.skipped == 0


def test_slots_stay_on_the_schedule_whatever_the_latency() -> None:
    # Callers come back at random moments (answers of any latency), never after their slot:
    # each still goes exactly on it, so the offered rate is the target rate.
    rng = random.Random(7)
    bucket = TokenBucket(1400.0)
    now, sent = 0.0, []
    for i in range(1400):
        now = max(now, i / 1400 - rng.uniform(0.0, 0.2))  # the clock never goes back
        sent.append(now + bucket.delay(now))
    assert sent == pytest.approx([i / 1400 for i in range(1400)])
    assert bucket.granted == 1400 and bucket.skipped == 0


def test_a_late_caller_goes_at_once_and_catches_up_within_the_burst() -> None:
    bucket = TokenBucket(100.0, burst=5.0)
    assert bucket.delay(0.0) == 0.0  # schedule: 0.00, 0.01, 0.02, ...
    # 30 ms late: three slots behind, within the burst of five, so nothing is lost.
    assert bucket.delay(0.04) == 0.0  # slot 0.01
    assert bucket.delay(0.04) == 0.0  # slot 0.02
    assert bucket.delay(0.04) == 0.0  # slot 0.03
    assert bucket.delay(0.04) == 0.0  # slot 0.04
    assert bucket.delay(0.04) == pytest.approx(0.01)  # back on schedule
    assert bucket.skipped == 0


def test_slots_older_than_the_burst_are_skipped_and_counted() -> None:
    bucket = TokenBucket(10.0)  # no catch-up at all
    assert bucket.delay(0.0) == 0.0
    # Every user was busy for a second: slots 0.1 .. 0.9 were never used.
    assert bucket.delay(1.0) == 0.0
    assert bucket.skipped == pytest.approx(9.0)
    assert bucket.delay(1.0) == pytest.approx(0.1)

    with_burst = TokenBucket(10.0, burst=4.0)
    with_burst.delay(0.0)
    assert with_burst.delay(1.0) == 0.0  # slot 0.6: four slots of catch-up remain
    assert with_burst.skipped == pytest.approx(5.0)
    assert [with_burst.delay(1.0) for _ in range(5)] == pytest.approx([0, 0, 0, 0, 0.1])


def test_restart_forgets_both_credit_and_debt() -> None:
    bucket = TokenBucket(10.0, burst=100.0)
    bucket.delay(0.0)
    bucket.delay(0.0)
    bucket.restart()  # a new phase opens 30 s later: no burst of saved-up slots
    assert bucket.delay(30.0) == 0.0
    assert bucket.delay(30.0) == pytest.approx(0.1)
    assert bucket.skipped == 0
    bucket.restart()  # and none of the reserved future either
    assert bucket.delay(30.0) == 0.0


@pytest.mark.parametrize("rate", [0.0, -1.0, math.inf, math.nan])
def test_the_rate_must_be_a_positive_number(rate: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate)


def test_the_burst_cannot_be_negative() -> None:
    with pytest.raises(ValueError):
        TokenBucket(10.0, burst=-1.0)


# ----- the command line ------------------------------------------------------------


def test_defaults_are_about_a_minute_at_the_reference_peak() -> None:
    args = parse_args([])
    assert args.rate == DEFAULT_RATE == 1400.0
    assert (args.schools, args.students) == (100, 400)
    # Roughly 2.1 taps per student (check-in, check-out, duplicates): about 60 s at 1,400/s.
    assert 50 <= args.schools * args.students * 2.1 / args.rate <= 70
    assert args.users == default_users(1400.0) == 210
    assert args.seed is None and args.ingress is None and args.web is None


def test_flags_are_read() -> None:
    args = parse_args(
        ["--rate", "500", "--schools", "3", "--students", "20", "--users", "7", "--seed", "42",
         "--settle", "5", "--ingress", "http://h:1", "--web", "http://h:2"]
    )
    assert (args.rate, args.schools, args.students, args.users, args.seed) == (500, 3, 20, 7, 42)
    assert (args.settle, args.ingress, args.web) == (5.0, "http://h:1", "http://h:2")


def test_users_follow_the_rate_unless_given() -> None:
    assert parse_args(["--rate", "5000"]).users == 750
    assert parse_args(["--rate", "10"]).users == MIN_USERS
    assert parse_args(["--rate", "5000", "--users", "3"]).users == 3


@pytest.mark.parametrize(
    "argv",
    [
        ["--rate", "0"],
        ["--rate", "-5"],
        ["--rate", "inf"],
        ["--rate", "nan"],
        ["--schools", "0"],
        ["--students", "0"],
        ["--users", "0"],
        ["--settle", "-1"],
        ["--rate", "fast"],
        ["--unknown"],
    ],
)
def test_bad_arguments_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err


# ----- the summary -----------------------------------------------------------------


def summary(**changes: object) -> Summary:
    fields: dict[str, object] = dict(
        rate=1400.0,
        users=210,
        total=84_000,
        answered=84_000,
        elapsed_s=60.5,
        p50_ms=4.0,
        p95_ms=12.0,
        p99_ms=31.0,
        skipped_slots=0,
        mismatches=0,
        wall_s=75.25,
        failures={},
    )
    fields.update(changes)
    return Summary(**fields)  # type: ignore[arg-type]


def test_a_clean_run_passes_and_says_every_figure() -> None:
    s = summary()
    assert s.ok
    assert s.achieved == pytest.approx(84_000 / 60.5)
    text = "\n".join(format_summary(s))
    assert "offered 1,400 taps/s with 210 users" in text
    assert "schedule held" in text
    assert "requests/s 1,388 achieved (84,000/84,000 taps answered in 60.5 s" in text
    assert "99.2% of offered)" in text
    assert "failures (non-202) 0\n" in text
    assert "p50 4 ms, p95 12 ms, p99 31 ms" in text
    assert "ground truth: yes" in text
    assert text.endswith("wall time 75.2 s; PASS")
    assert all(line.startswith("load: ") for line in format_summary(s))


def test_a_mismatch_fails() -> None:
    s = summary(mismatches=3)
    assert not s.ok
    text = "\n".join(format_summary(s))
    assert "ground truth: NO (3 mismatches)" in text
    assert text.endswith("FAIL")


def test_failures_are_listed_by_status_and_fail_the_run() -> None:
    s = summary(answered=83_990, failures={503: 4, 0: 1})
    assert not s.ok and s.failed == 5 and s.unanswered == 10
    text = "\n".join(format_summary(s))
    assert "failures (non-202) 5 (no answer x 1, 503 x 4), 10 not answered" in text
    assert text.endswith("FAIL")


def test_a_schedule_that_fell_behind_is_said_plainly() -> None:
    s = summary(skipped_slots=1234, answered=84_000, elapsed_s=90.0)
    assert s.ok  # the verdict is about correctness; the rate shortfall is reported
    text = "\n".join(format_summary(s))
    assert "fell behind: 1,234 send slots skipped" in text
    assert "the offered rate was not held" in text
    assert "requests/s 933 achieved" in text and "66.7% of offered" in text


def test_a_run_that_sent_nothing_still_formats() -> None:
    s = summary(answered=0, elapsed_s=0.0, p50_ms=None, p95_ms=None, p99_ms=None)
    text = "\n".join(format_summary(s))
    assert "requests/s 0 achieved (0/84,000 taps answered in 0.0 s)" in text
    assert "p50 -, p95 -, p99 -" in text
    assert not s.ok
