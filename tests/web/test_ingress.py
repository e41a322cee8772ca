"""The device API over real HTTP, against the running ingress and broker."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import time
from datetime import date
from urllib.parse import urlsplit

import pytest
import requests

from conftest import TEST_TZ, RunningStack, new_school, new_student, now_ms, tap, wait_for
from pipeline.schoolday import local_date
from zoneinfo import ZoneInfo

pytestmark = pytest.mark.integration
DAY_MS = 86_400_000


def test_valid_tap_is_acknowledged_with_an_id(stack: RunningStack) -> None:
    resp = stack.post_tap(tap("checkin", new_student(), new_school()))
    assert resp.status_code == 202
    assert len(resp.json()["id"]) == 32


def test_integer_and_decimal_temperatures_are_accepted(stack: RunningStack) -> None:
    school = new_school()
    assert stack.post_tap(tap("checkin", new_student(), school, temperature=37)).status_code == 202
    assert stack.post_tap(tap("checkin", new_student(), school, temperature=36.55)).status_code == 202


def test_every_invalid_field_is_reported(stack: RunningStack) -> None:
    body = {"type": "arrive", "userId": "", "schoolId": 7, "timestamp": -1,
            "temperature": 51, "image": "x" * 2049, "extra": True}
    resp = stack.post_tap(body)
    assert resp.status_code == 400
    fields = sorted(e["field"] for e in resp.json()["errors"])
    assert fields == sorted(["type", "userId", "schoolId", "timestamp", "temperature", "image", "extra"])
    assert all(e["message"] for e in resp.json()["errors"])


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe"])
def test_malformed_json_is_400(stack: RunningStack, raw: bytes) -> None:
    resp = stack.http.post(f"{stack.ingress_url}/attendances", data=raw,
                           headers={"Content-Type": "application/json"}, timeout=10)
    assert resp.status_code == 400
    assert resp.json()["errors"][0]["field"] == "body"


@pytest.mark.parametrize("raw", [b"[]", b'"checkin"', b"42", b"null"])
def test_non_object_body_is_400(stack: RunningStack, raw: bytes) -> None:
    resp = stack.http.post(f"{stack.ingress_url}/attendances", data=raw,
                           headers={"Content-Type": "application/json"}, timeout=10)
    assert resp.status_code == 400
    assert resp.json()["errors"] == [{"field": "body", "message": "must be a JSON object"}]


def test_oversized_body_is_413(stack: RunningStack) -> None:
    body = tap("checkin", new_student(), new_school())
    body["image"] = "x" * (70 * 1024)
    resp = stack.post_tap(body)
    assert resp.status_code == 413
    assert "65536" in resp.json()["error"]  # JSON like every other error answer


def test_oversized_chunked_body_is_413(stack: RunningStack) -> None:
    def chunks():  # no Content-Length: the limit must hold while reading
        yield b'{"image": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}'
    resp = stack.http.post(f"{stack.ingress_url}/attendances", data=chunks(),
                           headers={"Content-Type": "application/json"}, timeout=10)
    assert resp.status_code == 413


def post_raw(stack: RunningStack, raw: bytes, **headers: str) -> requests.Response:
    return stack.http.post(f"{stack.ingress_url}/attendances", data=raw,
                           headers={"Content-Type": "application/json", **headers}, timeout=20)


def test_gzip_body_is_accepted(stack: RunningStack) -> None:
    raw = gzip.compress(json.dumps(tap("checkin", new_student(), new_school())).encode())
    assert post_raw(stack, raw, **{"Content-Encoding": "gzip"}).status_code == 202


def test_compressed_body_that_does_not_decompress_is_400(stack: RunningStack) -> None:
    resp = post_raw(stack, b"not gzip at all", **{"Content-Encoding": "gzip"})
    assert resp.status_code == 400
    assert resp.json()["errors"][0]["field"] == "body"


def test_the_size_limit_holds_for_the_decompressed_body(stack: RunningStack) -> None:
    body = tap("checkin", new_student(), new_school())
    body["image"] = "x" * (1024 * 1024)  # 1 MiB of tap in about a kilobyte of gzip
    raw = gzip.compress(json.dumps(body).encode())
    assert len(raw) < 4096
    resp = post_raw(stack, raw, **{"Content-Encoding": "gzip"})
    assert resp.status_code == 413
    assert "65536" in resp.json()["error"]


def test_unknown_content_encoding_is_415(stack: RunningStack) -> None:
    raw = json.dumps(tap("checkin", new_student(), new_school())).encode()
    resp = post_raw(stack, raw, **{"Content-Encoding": "bogus"})
    assert resp.status_code == 415
    assert "Content-Encoding" in resp.json()["error"]


def test_a_body_that_never_finishes_is_answered_408(stack: RunningStack) -> None:
    """A device (or attacker) that promises 500 bytes and sends 10 does not hold the connection forever."""
    url = urlsplit(stack.ingress_url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as conn:
        conn.sendall(b"POST /attendances HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 500\r\n\r\n{\"type\": \"c")
        started = time.monotonic()
        answer = conn.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"error"' in answer
    assert time.monotonic() - started < 25


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_content_type_is_415(stack: RunningStack, ctype: str | None) -> None:
    headers = {"Content-Type": ctype} if ctype else {}
    resp = requests.post(f"{stack.ingress_url}/attendances", data=b'{"a":1}', headers=headers, timeout=10)
    assert resp.status_code == 415


def test_timestamps_outside_the_window_are_400(stack: RunningStack) -> None:
    school, user = new_school(), new_student()
    future = stack.post_tap(tap("checkin", user, school, ts=now_ms() + 6 * 60 * 1000))
    stale = stack.post_tap(tap("checkin", user, school, ts=now_ms() - 8 * DAY_MS))
    assert future.status_code == 400 and "future" in future.json()["errors"][0]["message"]
    assert stale.status_code == 400 and "older than 7 days" in stale.json()["errors"][0]["message"]


def test_rejected_requests_never_reach_kafka(stack: RunningStack) -> None:
    """Invalid taps for a school, then one valid marker: only the marker is ever seen."""
    school, user = new_school(), new_student()
    bad = tap("checkin", user, school)
    for broken in ({**bad, "temperature": 99}, {**bad, "type": "x"}, {**bad, "timestamp": now_ms() + DAY_MS}):
        assert stack.post_tap(broken).status_code == 400
    stack.http.post(f"{stack.ingress_url}/attendances", data=b"[", headers={"Content-Type": "application/json"})
    assert stack.post_tap(tap("checkout", user, school)).status_code == 202
    day = local_date(now_ms(), ZoneInfo(TEST_TZ))
    seen = wait_for(lambda: stack.school(school, day), lambda s: s["rejected"] >= 1)
    time.sleep(1.0)  # anything else produced would have been decided by now too
    seen = stack.school(school, day)
    assert (seen["checkins"], seen["rejected"], seen["rejectedByReason"]) == (
        0, 1, {"checkout_without_checkin": 1})


def test_late_upload_counts_on_its_own_day(stack: RunningStack) -> None:
    """A device offline for three days uploads: the tap counts on its own school day and hour."""
    school = new_school()
    ts = now_ms() - 3 * DAY_MS
    assert stack.post_tap(tap("checkin", new_student(), school, ts=ts)).status_code == 202
    day = local_date(ts, ZoneInfo(TEST_TZ))
    seen = wait_for(lambda: stack.school(school, day), lambda s: s["checkins"] == 1)
    assert seen["checkins"] == 1
    assert date.fromisoformat(day) < date.today()
    assert len(seen["hours"]) == 1


def test_health(stack: RunningStack) -> None:
    resp = stack.http.get(f"{stack.ingress_url}/health", timeout=5)
    assert resp.status_code == 200 and resp.json()["status"] == "ok"


async def test_unreachable_broker_gives_503_quickly_never_202(unused_tcp_port: int) -> None:
    """No broker at all: the ingress answers 503 with Retry-After at once, and /health says why."""
    from aiohttp.test_utils import TestClient, TestServer

    from pipeline.settings import Settings
    from web.ingress import build_app

    settings = Settings(kafka_broker=f"kafka://127.0.0.1:{unused_tcp_port}", produce_timeout_s=1.0)
    async with TestClient(TestServer(build_app(settings))) as client:
        started = time.monotonic()
        resp = await client.post("/attendances", json=tap("checkin", new_student(), new_school()))
        assert resp.status == 503
        assert resp.headers["Retry-After"]
        assert "error" in await resp.json()
        assert time.monotonic() - started < 3
        health = await client.get("/health")
        assert health.status == 503
        await asyncio.sleep(0)


def batch(stack: RunningStack, body: object) -> requests.Response:
    return stack.http.post(f"{stack.ingress_url}/attendances/batch", json=body, timeout=30)


def test_batch_of_valid_taps_is_acknowledged_and_counted(stack: RunningStack) -> None:
    school = new_school()
    taps = [tap("checkin", new_student(), school) for _ in range(300)]
    taps += [dict(taps[0]), dict(taps[1])]  # bounces inside the backlog
    resp = batch(stack, taps)
    assert resp.status_code == 202
    assert len(resp.json()["ids"]) == 302 and len(set(resp.json()["ids"])) == 302
    day = local_date(now_ms(), ZoneInfo(TEST_TZ))
    seen = wait_for(lambda: stack.school(school, day), lambda s: s["checkins"] + s["rejected"] == 302)
    assert (seen["checkins"], seen["rejected"]) == (300, 2)


def test_batch_with_any_invalid_tap_is_400_with_indexes_and_produces_nothing(stack: RunningStack) -> None:
    school = new_school()
    good = tap("checkin", new_student(), school)
    resp = batch(stack, [good, {**good, "temperature": 50}, {**good, "type": "x", "userId": ""}])
    assert resp.status_code == 400
    errors = resp.json()["errors"]
    assert {(e["index"], e["field"]) for e in errors} == {(1, "temperature"), (2, "type"), (2, "userId")}
    assert stack.post_tap(tap("checkout", new_student(), school)).status_code == 202  # marker
    day = local_date(now_ms(), ZoneInfo(TEST_TZ))
    wait_for(lambda: stack.school(school, day), lambda s: s["rejected"] == 1)
    time.sleep(1)
    assert stack.school(school, day)["checkins"] == 0, "the valid tap of a rejected batch was not produced"


@pytest.mark.parametrize("body", [{}, [], "x"])
def test_batch_that_is_not_a_non_empty_array_is_400(stack: RunningStack, body: object) -> None:
    assert batch(stack, body).status_code == 400


def test_batch_over_the_tap_limit_is_400_and_over_the_size_limit_413(stack: RunningStack) -> None:
    one = tap("checkin", new_student(), new_school())
    assert batch(stack, [one] * 1001).status_code == 400
    full = [{**tap("checkin", new_student(), new_school()), "image": "x" * 2048} for _ in range(1000)]
    assert batch(stack, full).status_code == 202  # a full backlog at the longest image URL: about 2.3 MB
    huge = [{**one, "image": "\u00e9" * 2048}] * 1000  # escaped as \u00e9: about 12 MB
    resp = batch(stack, huge)
    assert resp.status_code == 413 and "4194304" in resp.json()["error"]


def test_batch_needs_json_content_type(stack: RunningStack) -> None:
    resp = requests.post(f"{stack.ingress_url}/attendances/batch", data=b"[]",
                         headers={"Content-Type": "text/plain"}, timeout=10)
    assert resp.status_code == 415


def test_unknown_routes_and_methods_answer_json(stack: RunningStack) -> None:
    missing = stack.http.post(f"{stack.ingress_url}/nope", json={}, timeout=10)
    assert missing.status_code == 404 and "error" in missing.json()
    wrong = stack.http.get(f"{stack.ingress_url}/attendances", timeout=10)
    assert wrong.status_code == 405 and "error" in wrong.json()
    assert "POST" in wrong.headers["Allow"]
