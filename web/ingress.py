"""Device ingress: validate a tap, put it on `attendance-taps`, answer 202 after the broker acked.

Thin on purpose: no dedup, no counting. What it promises the device:
- 202 {"id"} only once the broker acknowledged the record (acks=all);
- 400 with every invalid field, 413 over 64 KiB, 415 for a non-JSON body;
- 503 with Retry-After when the broker cannot acknowledge in time. The device
  retries; a retry that duplicates a tap that did land is a duplicate check-in,
  which dedup rejects.
Run: `python -m web.ingress` (port INGRESS_PORT).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiohttp import web
from aiokafka.errors import KafkaError

from pipeline.clients import kafka_producer
from pipeline.settings import Settings
from pipeline.taps import FieldError, InvalidTap, encode_tap, tap_from_body
from pipeline.topics import ensure_topics

log = logging.getLogger("rollcall.ingress")
MAX_BODY = 64 * 1024
RETRY_AFTER_S = "2"
SETTINGS = web.AppKey("settings", Settings)
BROKER = web.AppKey("broker", "Broker")


def _json(body: Any, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def _errors(errors: list[FieldError]) -> web.Response:
    return _json({"errors": [e.as_json() for e in errors]}, 400)


def unavailable(reason: str) -> web.Response:
    return _json({"error": reason}, 503, {"Retry-After": RETRY_AFTER_S})


class Broker:
    """The producer, started in the background, with a circuit breaker in front of it.

    When a send is not acknowledged in time the circuit opens: later requests
    get 503 at once instead of each waiting out the timeout, and a probe asks
    the broker every half second; when it answers (topics re-created if the
    broker lost them), the circuit closes and sends go through again.
    """

    PROBE_EVERY_S = 0.5

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.producer: Any = None
        self.last_error: str | None = "not connected yet"
        self._task: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect())

    async def _connect(self) -> None:
        delay = 0.2
        while self.producer is None:
            producer = kafka_producer(self._settings)
            try:
                await ensure_topics(self._settings)
                await producer.start()
            except (KafkaError, OSError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("broker not reachable (%s); retrying in %.1fs", self.last_error, delay)
                await producer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            else:
                self.producer = producer
                self.last_error = None
                log.info("connected to %s", self._settings.kafka_bootstrap)

    async def stop(self) -> None:
        for task in (self._task, self._probe):
            if task:
                task.cancel()
        if self.producer is not None:
            await self.producer.stop()

    @property
    def available(self) -> bool:
        return self.producer is not None and self._probe is None

    async def send(self, key: bytes, value: bytes) -> None:
        """Return once the broker acknowledged; raise TimeoutError or KafkaError otherwise."""
        if not self.available:
            raise KafkaError(self.last_error or "not connected")
        timeout = self._settings.produce_timeout_s
        try:
            fut = await asyncio.wait_for(
                self.producer.send(self._settings.taps_topic, key=key, value=value), timeout
            )
            await asyncio.wait_for(fut, timeout)
        except (asyncio.TimeoutError, KafkaError) as exc:
            self._open_circuit(exc)
            raise

    def _open_circuit(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self._probe is None:
            log.warning("broker not acknowledging (%s): answering 503 until it does", self.last_error)
            self._probe = asyncio.create_task(self._probe_until_back())

    async def _probe_until_back(self) -> None:
        while True:
            await asyncio.sleep(self.PROBE_EVERY_S)
            try:
                await asyncio.wait_for(ensure_topics(self._settings), self._settings.produce_timeout_s)
            except (asyncio.TimeoutError, KafkaError, OSError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                continue
            log.info("broker answers again")
            self.last_error = None
            self._probe = None
            return


async def _body(request: web.Request) -> Any:
    """The JSON body, or an aiohttp error response raised for the caller to return."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(
            text=orjson.dumps({"error": "Content-Type must be application/json"}).decode(),
            content_type="application/json",
        )
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(
            text=orjson.dumps({"errors": [{"field": "body", "message": f"malformed JSON: {exc}"}]}).decode(),
            content_type="application/json",
        ) from None


async def post_attendance(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    body = await _body(request)
    try:
        tap = tap_from_body(
            body, now_ms=int(time.time() * 1000), max_age_days=settings.max_tap_age_days
        )
    except InvalidTap as exc:
        return _errors(exc.errors)
    try:
        await request.app[BROKER].send(tap.schoolId.encode(), encode_tap(tap))
    except (asyncio.TimeoutError, KafkaError) as exc:
        log.warning("tap %s not acknowledged: %s", tap.id, type(exc).__name__)
        return unavailable("the broker did not acknowledge the tap in time; retry later")
    return _json({"id": tap.id}, 202)


async def health(request: web.Request) -> web.Response:
    broker = request.app[BROKER]
    if not broker.available:
        return _json({"status": "degraded", "broker": broker.last_error}, 503)
    return _json({"status": "ok", "broker": request.app[SETTINGS].kafka_bootstrap}, 200)


def build_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[SETTINGS] = settings
    app[BROKER] = Broker(settings)

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        app[BROKER].start()
        yield
        await app[BROKER].stop()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/attendances", post_attendance)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay usable without it
        pass
    web.run_app(build_app(settings), port=settings.ingress_port, access_log=None)


if __name__ == "__main__":
    main()
