"""Ingress and broker faults: nothing answered 202 is lost; a broker outage gives fast 503s."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pymongo import MongoClient

from conftest import RunningStack, new_school, new_student, tap, wait_for
from ops.stack import EmbeddedStack
from pipeline.settings import Settings
from web.ingress import build_app

pytestmark = pytest.mark.integration


def test_killing_the_ingress_loses_no_acknowledged_tap(stack: RunningStack) -> None:
    """SIGKILL the ingress under concurrent load: every tap that got a 202 is archived."""
    school = new_school()
    acknowledged: set[str] = set()
    url = f"{stack.ingress_url}/attendances"

    async def device(session: aiohttp.ClientSession, students: list[str]) -> None:
        for user in students:
            try:
                async with session.post(url, json=tap("checkin", user, school)) as resp:
                    if resp.status == 202:
                        acknowledged.add(user)
            except aiohttp.ClientError:
                pass  # the ingress died under us: this tap was never acknowledged

    async def load_and_kill() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            tasks = [asyncio.create_task(device(session, [new_student() for _ in range(40)])) for _ in range(16)]
            while len(acknowledged) < 100:
                await asyncio.sleep(0.01)
            os.killpg(stack.stack.pid("ingress"), signal.SIGKILL)
            await asyncio.gather(*tasks)

    asyncio.run(load_and_kill())
    stack.stack.stop("ingress")
    stack.stack.start(stack.stack.service("ingress"))
    assert 100 <= len(acknowledged) < 640, len(acknowledged)
    db = MongoClient(stack.mongo_url)["rollcall"]
    archived = wait_for(lambda: {d["userId"] for d in db.attendances.find({"schoolId": school})},
                        lambda users: acknowledged <= users, timeout_s=60)
    assert acknowledged <= archived, f"{len(acknowledged - archived)} acknowledged taps lost"


async def test_broker_outage_answers_503_fast_and_recovers_by_itself(tmp_path: Path) -> None:
    """A broker of the test's own: up, stopped, started again, with one ingress in front."""
    own = EmbeddedStack(tmp_path)
    broker = own.service("broker")
    own.start(broker)
    settings = Settings(kafka_broker=f"kafka://127.0.0.1:{own.port('broker')}", produce_timeout_s=2.0)
    try:
        async with TestClient(TestServer(build_app(settings))) as client:
            async def post() -> tuple[int, float, dict]:
                started = time.monotonic()
                resp = await client.post("/attendances", json=tap("checkin", new_student(), new_school()))
                return resp.status, time.monotonic() - started, dict(resp.headers)

            deadline = time.monotonic() + 30
            while (await post())[0] != 202 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert (await post())[0] == 202

            await asyncio.to_thread(own.stop, "broker")
            first = await post()
            assert first[0] == 503 and first[1] < 2.5 and first[2]["Retry-After"]
            later = [await post() for _ in range(5)]
            assert all(status == 503 and took < 0.2 for status, took, _ in later), later
            assert (await client.get("/health")).status == 503

            await asyncio.to_thread(own.start, broker)
            deadline = time.monotonic() + 30
            status = 503
            while status != 202 and time.monotonic() < deadline:
                status = (await post())[0]
                await asyncio.sleep(0.2)
            assert status == 202, "the ingress must recover on its own"
            assert (await client.get("/health")).status == 200
    finally:
        own.down()
