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
from aiohttp.web_protocol import RequestPayloadError
from aiokafka.errors import KafkaError

from pipeline.clients import kafka_producer
from pipeline.produce import send_keyed
from pipeline.settings import Settings
from pipeline.taps import FieldError, InvalidTap, encode_tap, tap_from_body
from pipeline.topics import ensure_topics
from web.errors import json_errors

log = logging.getLogger("rollcall.ingress")
MAX_BODY = 64 * 1024
CONTENT_ENCODINGS = ("identity", "gzip", "deflate")  # what aiohttp decompresses without extras
BODY_TIMEOUT_S = 10.0  # a body that trickles in slower than this holds a connection for nothing
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

    async def send(self, records: list[tuple[bytes, bytes]]) -> None:
        """Return once the broker acknowledged every record; raise TimeoutError or KafkaError otherwise."""
        if not self.available:
            raise KafkaError(self.last_error or "not connected")
        topic = self._settings.taps_topic
        try:
            async with asyncio.timeout(self._settings.produce_timeout_s):
                if len(records) == 1:  # the single-tap path: no list, no gather
                    key, value = records[0]
                    await (await self.producer.send(topic, key=key, value=value))
                else:  # a backlog: one record batch per partition
                    await asyncio.gather(*await send_keyed(self.producer, topic, records))
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


def _body_error(message: str) -> web.HTTPException:
    """A 400 in the device API's field-error form, for the body as a whole."""
    return web.HTTPBadRequest(
        text=orjson.dumps({"errors": [FieldError("body", message).as_json()]}).decode(),
        content_type="application/json",
    )


def _json_error(exc_type: type[web.HTTPException], message: str) -> web.HTTPException:
    return exc_type(text=orjson.dumps({"error": message}).decode(), content_type="application/json")


async def _body(request: web.Request, max_bytes: int = MAX_BODY) -> Any:
    """The JSON body, or an aiohttp error response raised for the caller to return."""
    if request.content_type != "application/json":
        raise _json_error(web.HTTPUnsupportedMediaType, "Content-Type must be application/json")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower() or "identity"
    if encoding not in CONTENT_ENCODINGS:
        raise _json_error(web.HTTPUnsupportedMediaType,
                          f"Content-Encoding must be one of {', '.join(CONTENT_ENCODINGS)}, got {encoding!r}")
    compressed = encoding != "identity"
    if not compressed and request.content_length is not None and request.content_length > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=request.content_length)
    try:
        if not compressed and request.content.is_eof():  # all of it arrived with the headers: no timer
            raw = await request.read()
            if len(raw) > max_bytes:
                raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=len(raw))
        else:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                raw = await _read_at_most(request, max_bytes, whole=not compressed)
    except TimeoutError:
        raise _json_error(web.HTTPRequestTimeout, f"the body did not arrive within {BODY_TIMEOUT_S:g} s") from None
    except RequestPayloadError:  # a compressed body that does not decompress
        raise _body_error(f"does not decompress as Content-Encoding {encoding}") from None
    except ConnectionResetError:  # the device went away mid-body: nobody to answer, nothing to log
        raise _json_error(web.HTTPBadRequest, "connection lost while reading the body") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _body_error(f"malformed JSON: {exc}") from None


async def _read_at_most(request: web.Request, max_bytes: int, *, whole: bool) -> bytes:
    """Read the body, stopping with 413 as soon as it passes `max_bytes`.

    `whole`: a plain body whose length the caller already checked is read at
    once. Chunked and compressed bodies are counted as they arrive,
    decompressed, so a small gzip cannot carry a large tap past the limit.
    """
    if whole and request.content_length is not None:
        return await request.read()
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


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
        await request.app[BROKER].send([(tap.schoolId.encode(), encode_tap(tap))])
    except (asyncio.TimeoutError, KafkaError) as exc:
        log.warning("tap %s not acknowledged: %s", tap.id, type(exc).__name__)
        return unavailable("the broker did not acknowledge the tap in time; retry later")
    return _json({"id": tap.id}, 202)


async def post_batch(request: web.Request) -> web.Response:
    """A device's backlog: every tap valid, or nothing produced; 202 once all are acknowledged.

    On 503 some taps may have reached the broker: the device sends the batch
    again, and dedup rejects the copies of those that counted.
    """
    settings = request.app[SETTINGS]
    body = await _body(request, max_bytes=settings.batch_max_bytes)
    if not isinstance(body, list):
        return _errors([FieldError("body", "must be a JSON array of taps")])
    if not 1 <= len(body) <= settings.batch_max_taps:
        return _errors([FieldError("body", f"must hold 1 to {settings.batch_max_taps} taps, got {len(body)}")])
    now_ms = int(time.time() * 1000)
    taps, errors = [], []
    for index, item in enumerate(body):
        try:
            taps.append(tap_from_body(item, now_ms=now_ms, max_age_days=settings.max_tap_age_days))
        except InvalidTap as exc:
            errors += [{"index": index, **e.as_json()} for e in exc.errors]
    if errors:
        return _json({"errors": errors}, 400)
    try:
        await request.app[BROKER].send([(t.schoolId.encode(), encode_tap(t)) for t in taps])
    except (asyncio.TimeoutError, KafkaError) as exc:
        log.warning("batch of %d not acknowledged: %s", len(taps), type(exc).__name__)
        return unavailable("the broker did not acknowledge every tap in time; send the batch again")
    return _json({"ids": [t.id for t in taps]}, 202)


async def health(request: web.Request) -> web.Response:
    broker = request.app[BROKER]
    if not broker.available:
        return _json({"status": "degraded", "broker": broker.last_error}, 503)
    return _json({"status": "ok", "broker": request.app[SETTINGS].kafka_bootstrap}, 200)


def build_app(settings: Settings) -> web.Application:
    # Body limits are enforced per route in _body (64 KiB for one tap, more for a batch).
    app = web.Application(client_max_size=max(MAX_BODY, settings.batch_max_bytes), middlewares=[json_errors])
    app[SETTINGS] = settings
    app[BROKER] = Broker(settings)

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        app[BROKER].start()
        yield
        await app[BROKER].stop()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/attendances", post_attendance)
    app.router.add_post("/attendances/batch", post_batch)
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
