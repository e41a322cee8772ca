"""The operator commands on the faust CLI, run as an operator would, against the shared stack."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from conftest import TEST_TZ, RunningStack, new_school, new_student, now_ms, tap, wait_for
from pipeline.schoolday import local_date

pytestmark = pytest.mark.integration
FAUST = str(Path(sys.executable).parent / "faust")


def faust(stack: RunningStack, *args: str, db: str = "rollcall") -> subprocess.CompletedProcess:
    env = stack.stack.env()
    env["MONGO_DB"] = db
    env["SCHOOL_TZ"] = TEST_TZ
    return subprocess.run([FAUST, "-A", "pipeline.app", *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])


def test_seed_writes_the_roster_and_says_so(stack: RunningStack) -> None:
    db = f"seed_{uuid.uuid4().hex[:8]}"
    first = faust(stack, "seed", "--schools", "2", "--students", "5", db=db)
    assert first.returncode == 0, first.stderr
    assert "seeded 2 schools (0 already there), 10 students (0 already there)" in first.stdout
    again = faust(stack, "seed", "--schools", "2", "--students", "5", db=db)
    assert "seeded 0 schools (2 already there), 0 students (10 already there)" in again.stdout


def test_seed_rejects_bad_arguments_in_one_line(stack: RunningStack) -> None:
    bad = faust(stack, "seed", "--schools", "0", "--students", "5")
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("seed: --schools must be")


@pytest.mark.parametrize("args", [("dlq-list", "--status", "bogus"), ("dlq-list", "--limit", "0"),
                                  ("dlq-replay", "--status", "bogus")])
def test_dead_letter_commands_reject_bad_arguments_in_one_line(stack: RunningStack, args: tuple[str, ...]) -> None:
    bad = faust(stack, *args)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith(f"{args[0]}: ") and "\n" not in bad.stderr.strip()


def test_see_fix_and_replay_a_dead_letter_from_the_cli(stack: RunningStack) -> None:
    """The README's walk-through: a tap with a string temperature, fixed and replayed."""
    school, user, ts = new_school(), new_student(), now_ms()
    broken = {**tap("checkin", user, school, ts), "temperature": "36.9", "id": uuid.uuid4().hex}
    stack.produce_raw([(school.encode(), orjson.dumps(broken))])
    listed = wait_for(lambda: faust(stack, "dlq-list", "--status", "pending", "--limit", "1000").stdout,
                      lambda out: school in out)
    lines = listed.splitlines()
    [(record_id, header)] = [(lines[i].split()[0], lines[i]) for i in range(len(lines) - 1)
                             if school in lines[i + 1]]
    assert "pending" in header and "InvalidTap: temperature: must be a number" in header
    fixed = {**broken, "temperature": 36.9}
    out = faust(stack, "dlq-fix", "--id", record_id, "--value", orjson.dumps(fixed).decode())
    assert out.returncode == 0 and "fixed" in out.stdout, out.stderr
    out = faust(stack, "dlq-replay", "--id", record_id)
    assert out.returncode == 0 and "replayed 1 dead letters" in out.stdout, out.stderr
    day = local_date(ts, ZoneInfo(TEST_TZ))
    assert wait_for(lambda: stack.school(school, day), lambda s: s["checkins"] == 1)["checkins"] == 1
    bad = faust(stack, "dlq-fix", "--id", "no-such-id", "--value", orjson.dumps(fixed).decode())
    assert bad.returncode == 2 and "no dead letter" in bad.stderr
    still_broken = faust(stack, "dlq-fix", "--id", record_id, "--value", '{"x": 1}')
    assert still_broken.returncode == 2 and "not a valid tap record" in still_broken.stderr
    assert "type: is required" in still_broken.stderr
    empty = faust(stack, "dlq-list", "--status", "failed", db=f"empty_{uuid.uuid4().hex[:8]}")
    assert empty.returncode == 0 and empty.stdout.strip() == "no dead letters with status failed"
