"""Dashboard views on the Faust web server, over real HTTP."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from conftest import TEST_TZ, RunningStack, new_school, new_student, now_ms, tap, wait_for
from pipeline.schoolday import local_date

pytestmark = pytest.mark.integration


def test_schools_are_ranked_by_fevers_then_checkins(stack: RunningStack) -> None:
    day = local_date(now_ms(), ZoneInfo(TEST_TZ))
    calm, feverish = new_school(), new_school()
    for _ in range(50):  # many check-ins, no fever: a bigger school than any other test's
        stack.post_tap(tap("checkin", new_student(), calm))
    for temp in (39.0, 38.0, 36.0):
        stack.post_tap(tap("checkin", new_student(), feverish, temperature=temp))
    wait_for(lambda: stack.school(calm, day), lambda s: s["checkins"] == 50)
    wait_for(lambda: stack.school(feverish, day), lambda s: s["checkins"] == 3)
    rows = stack.http.get(f"{stack.web_url}/schools/", params={"date": day, "limit": 1000}).json()["schools"]
    ids = [r["schoolId"] for r in rows]
    assert ids.index(feverish) < ids.index(calm)
    keys = [(-r["fevers"], -r["checkins"]) for r in rows]
    assert keys == sorted(keys)
    row = next(r for r in rows if r["schoolId"] == feverish)
    assert row == {"schoolId": feverish, "date": day, "checkins": 3, "checkouts": 0,
                   "present": 3, "fevers": 2, "rejected": 0}
    limited = stack.http.get(f"{stack.web_url}/schools/", params={"date": day, "limit": 1}).json()
    assert len(limited["schools"]) == 1


def test_default_date_is_today_in_the_school_zone(stack: RunningStack) -> None:
    body = stack.http.get(f"{stack.web_url}/schools/").json()
    assert body["date"] == local_date(now_ms(), ZoneInfo(TEST_TZ))


def test_unknown_school_is_all_zeros(stack: RunningStack) -> None:
    body = stack.school("no-such-school", "2026-01-05")
    assert (body["checkins"], body["checkouts"], body["present"], body["hours"]) == (0, 0, 0, [])


@pytest.mark.parametrize("query", [
    {"date": "yesterday"}, {"date": "2026-13-01"}, {"limit": "0"}, {"limit": "x"}, {"limit": "10001"},
    {"limit": "\u00b2"}, {"limit": "\u0663"}, {"limit": "9" * 5000}, {"limit": "-1"},
])
def test_bad_query_is_400_with_a_message(stack: RunningStack, query: dict) -> None:
    resp = stack.http.get(f"{stack.web_url}/schools/", params=query)
    assert resp.status_code == 400 and resp.json()["error"]


def test_bad_date_on_one_school_is_400(stack: RunningStack) -> None:
    resp = stack.http.get(f"{stack.web_url}/schools/x/", params={"date": "3 May"})
    assert resp.status_code == 400


def test_overlong_school_id_is_400(stack: RunningStack) -> None:
    resp = stack.http.get(f"{stack.web_url}/schools/{'x' * 65}/")
    assert resp.status_code == 400 and "schoolId" in resp.json()["error"]


@pytest.mark.parametrize("method, path", [("GET", "/nope"), ("GET", "/schools"), ("POST", "/schools/")])
def test_unknown_routes_and_methods_answer_json(stack: RunningStack, method: str, path: str) -> None:
    resp = stack.http.request(method, f"{stack.web_url}{path}", timeout=10)
    assert resp.status_code in (404, 405)
    assert resp.headers["Content-Type"].startswith("application/json") and resp.json()["error"]


def test_health_reports_connections(stack: RunningStack) -> None:
    body = stack.http.get(f"{stack.web_url}/health/").json()
    assert body["status"] == "ok"
    assert body["broker"].endswith(stack.kafka_bootstrap)
    assert any(a.startswith("attendance-taps:") for a in body["assigned"])
    assert body["eventLoop"] == "uvloop"  # a plain `faust -A pipeline.app worker` gets it


def test_every_worker_gives_the_same_answers(stack: RunningStack) -> None:
    """Two workers over 8 partitions: each school's view and the all-schools view agree on both."""
    day = local_date(now_ms(), ZoneInfo(TEST_TZ))
    stack.stack.start(stack.stack.service("worker-2"))
    try:
        second = f"http://127.0.0.1:{stack.stack.port('web-2')}"
        schools = [new_school() for _ in range(12)]
        for i, school in enumerate(schools):
            for _ in range(i + 1):
                assert stack.post_tap(tap("checkin", new_student(), school)).status_code == 202
        for i, school in enumerate(schools):
            wait_for(lambda: stack.school(school, day), lambda s: s["checkins"] == i + 1)
        owners = set()
        for i, school in enumerate(schools):
            answers = [stack.http.get(f"{base}/schools/{school}/", params={"date": day}).json()
                       for base in (stack.web_url, second)]
            assert answers[0] == answers[1] and answers[0]["checkins"] == i + 1
            local = [stack.http.get(f"{base}/schools/{school}/", params={"date": day},
                                    headers={"X-Rollcall-Forwarded": "1"}).json()["checkins"]
                     for base in (stack.web_url, second)]
            owners.add(local.index(i + 1) if i + 1 in local else None)
        assert owners == {0, 1}, "the schools are spread over both workers"
        lists = [stack.http.get(f"{base}/schools/", params={"date": day, "limit": 10000}).json()
                 for base in (stack.web_url, second)]
        assert lists[0] == lists[1]
        assert {r["schoolId"] for r in lists[0]["schools"]} >= set(schools)
    finally:
        stack.stack.stop("worker-2")
        stack.wait_for_sole_worker()
