"""What each dependency looked like last time we used it, and patient retries.

A dependency outage (Redis, MongoDB, the broker) is not the record's fault:
the caller retries with bounded exponential backoff, forever, and neither
skips nor dead-letters the record. `/health/` reports what is degraded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, TypeVar

T = TypeVar("T")
log = logging.getLogger("rollcall.health")


class Dependencies:
    def __init__(self) -> None:
        self._errors: dict[str, tuple[str, float]] = {}

    def ok(self, name: str) -> None:
        if self._errors.pop(name, None) is not None:
            log.warning("%s is reachable again", name)

    def failed(self, name: str, error: BaseException) -> None:
        self._errors[name] = (f"{type(error).__name__}: {error}", time.time())

    def degraded(self) -> dict[str, str]:
        return {name: err for name, (err, _) in self._errors.items()}


dependencies = Dependencies()


async def retrying(
    name: str,
    call: Callable[[], Awaitable[T]],
    *,
    retry_on: tuple[type[BaseException], ...],
    first_delay_s: float = 0.1,
    max_delay_s: float = 5.0,
) -> T:
    """Run `call` until it succeeds; back off up to `max_delay_s` between tries."""
    delay = first_delay_s
    while True:
        try:
            result = await call()
        except retry_on as exc:
            dependencies.failed(name, exc)
            log.warning("%s unavailable (%s: %s); retrying in %.1fs", name, type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
        else:
            dependencies.ok(name)
            return result
