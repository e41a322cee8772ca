"""The one embedded stack the integration tests share.

It runs in a temporary folder on free ports (never the developer's `.stack`,
never the standard ports), with a non-UTC school time zone so that every
integration test also exercises school-local days. It is stopped at the end of
the session whatever happened; a Redis it did not start is never touched.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import pytest
import requests

from ops.stack import EmbeddedStack, StackError

TEST_TZ = "Asia/Kolkata"  # UTC+05:30: local days and hours are not UTC ones
T = TypeVar("T")


class RunningStack:
    def __init__(self, stack: EmbeddedStack) -> None:
        self.stack = stack
        urls = stack.urls()
        self.ingress_url = urls["INGRESS_URL"]
        self.web_url = urls["WEB_URL"]
        self.kafka_bootstrap = urls["KAFKA_BROKER"].split("://", 1)[1]
        self.redis_url = urls["REDIS_URL"]
        self.mongo_url = urls["MONGO_URL"]
        self.http = requests.Session()

    def post_tap(self, tap: dict[str, Any]) -> requests.Response:
        return self.http.post(f"{self.ingress_url}/attendances", json=tap, timeout=10)

    def school(self, school_id: str, day: str) -> dict[str, Any]:
        """One school's view; a 503 while partitions move between workers is waited out."""
        deadline = time.monotonic() + 40
        while True:
            resp = self.http.get(f"{self.web_url}/schools/{school_id}/", params={"date": day}, timeout=10)
            if resp.status_code != 503 or time.monotonic() > deadline:
                resp.raise_for_status()
                return resp.json()
            time.sleep(0.5)

    def wait_for_sole_worker(self, timeout_s: float = 60) -> None:
        """After a second worker left: worker-1 holds every partition again."""
        def taps_partitions() -> int:
            body = self.http.get(f"{self.web_url}/health/", timeout=5).json()
            return sum(a.startswith("attendance-taps:") for a in body["assigned"])
        wait_for(taps_partitions, lambda n: n == 8, timeout_s)

    def produce_raw(self, records: list[tuple[bytes | None, bytes | None]], topic: str = "attendance-taps") -> None:
        """Write records straight to the broker in one batch, as another client (kcat) would."""
        import aiokafka

        async def send() -> None:
            producer = aiokafka.AIOKafkaProducer(bootstrap_servers=self.kafka_bootstrap, linger_ms=50, acks="all")
            await producer.start()
            try:
                futures = [await producer.send(topic, key=k, value=v) for k, v in records]
                await asyncio.gather(*futures)
            finally:
                await producer.stop()

        asyncio.run(send())


def wait_for(fetch: Callable[[], T], done: Callable[[T], bool], timeout_s: float = 30.0) -> T:
    """Poll until `done(fetch())`; return the last value either way so asserts show it."""
    deadline = time.monotonic() + timeout_s
    value = fetch()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.2)
        value = fetch()
    return value


def new_school() -> str:
    return f"T-{uuid.uuid4().hex[:12]}"


def new_student() -> str:
    return uuid.uuid4().hex[:24]


def now_ms() -> int:
    return int(time.time() * 1000)


def tap(kind: str, user: str, school: str, ts: int | None = None, temperature: float = 36.6) -> dict[str, Any]:
    return {
        "type": kind,
        "userId": user,
        "schoolId": school,
        "timestamp": now_ms() if ts is None else ts,
        "temperature": temperature,
        "image": "",
    }


def _print_logs(state: Path) -> None:
    for log in sorted(state.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-40:]
        print(f"----- {log.name} (last {len(lines)} lines)")
        print("\n".join(lines))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    state = tmp_path_factory.mktemp("stack")
    embedded = EmbeddedStack(state, extra_env={"SCHOOL_TZ": TEST_TZ, "DLQ_REPLAY_CRON": ""})
    try:
        try:
            embedded.up()
        except StackError:
            _print_logs(state)
            raise
        yield RunningStack(embedded)
    finally:
        embedded.down()
