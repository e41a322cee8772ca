"""A tiny progress bar for long operator work (seeding, backfills), with no dependencies.

On a terminal it redraws one line in place at most ~10 times a second, so a
tight loop calling `advance` costs almost nothing. When the stream is not a
terminal (CI logs, `| tee`), carriage-return redraws would flood the log, so it
prints one plain line every ~10% instead.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Callable, TextIO

REDRAW_INTERVAL_S = 0.1  # about 10 redraws a second on a terminal
LOG_STEPS = 10  # one plain line per 10% when not a terminal
BAR_WIDTH = 24


def _duration(seconds: float) -> str:
    """`1h02m`, `4m05s`, `12s`: short enough for one terminal line."""
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed or file-like without isatty
        return False


class Progress:
    """Shows done/total, percentage, rate per second and ETA for `total` units of work."""

    def __init__(
        self,
        total: int,
        label: str,
        stream: TextIO | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total < 0:
            raise ValueError(f"total must be 0 or more, got {total}")
        self.total = total
        self.label = label
        # Resolved at call time, not import time, so redirected stderr (tests, pytest capture) works.
        self.stream: TextIO = sys.stderr if stream is None else stream
        self.done = 0
        self._clock = clock
        self._started = clock()
        self._tty = _is_tty(self.stream)
        self._last_draw = float("-inf")
        self._logged_step = 0
        self._width = 0
        self._closed = False

    # ----- public API -------------------------------------------------------------
    def advance(self, n: int = 1) -> None:
        """Count `n` more units done; draws only when it is time to."""
        if self._closed:
            return
        self.done += n
        if self._tty:
            now = self._clock()
            if now - self._last_draw >= REDRAW_INTERVAL_S:
                self._draw_tty(now)
        else:
            step = self._step()
            if step > self._logged_step:
                self._logged_step = step
                self._write_line(self._clock())

    def close(self) -> None:
        """Final line with the elapsed time; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        now = self._clock()
        if self._tty:
            self._draw_tty(now, final=True)
            self.stream.write("\n")
        elif self._logged_step < LOG_STEPS or self.done != self.total:
            self._write_line(now, final=True)
        else:
            # The 100% line is already there; add only how long it took.
            self.stream.write(f"{self.label}: done in {_duration(now - self._started)}\n")
        self.stream.flush()

    @property
    def elapsed(self) -> float:
        return self._clock() - self._started

    def __enter__(self) -> "Progress":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----- rendering --------------------------------------------------------------
    def _step(self) -> int:
        if self.total == 0:
            return LOG_STEPS
        return min(LOG_STEPS, self.done * LOG_STEPS // self.total)

    def render(self, now: float | None = None, *, final: bool = False) -> str:
        """One status line, e.g. `students [#####   ] 1,000/5,000 20.0% 2,000/s ETA 2s`."""
        now = self._clock() if now is None else now
        elapsed = max(now - self._started, 1e-9)
        fraction = 1.0 if self.total == 0 else min(1.0, self.done / self.total)
        rate = self.done / elapsed
        if final:
            tail = f"in {_duration(elapsed)}"
        elif rate > 0:
            tail = f"ETA {_duration(max(0, self.total - self.done) / rate)}"
        else:
            tail = "ETA ?"
        filled = int(fraction * BAR_WIDTH)
        bar = "#" * filled + " " * (BAR_WIDTH - filled)
        return (
            f"{self.label} [{bar}] {self.done:,}/{self.total:,} "
            f"{fraction * 100:5.1f}% {rate:,.0f}/s {tail}"
        )

    def _draw_tty(self, now: float, *, final: bool = False) -> None:
        line = self.render(now, final=final)
        # Pad over a longer previous line so no stale characters remain.
        padding = " " * max(0, self._width - len(line))
        self._width = len(line)
        self.stream.write("\r" + line + padding)
        self.stream.flush()
        self._last_draw = now

    def _write_line(self, now: float, *, final: bool = False) -> None:
        self.stream.write(self.render(now, final=final) + "\n")
        self.stream.flush()
