"""The ceiling the worker is compared with inside Faust: an agent that only counts its batches.

Same Faust version, event loop (uvloop), raw topic, `take_events` batch size and
window as the dedup agent, reading the same pre-loaded topic in a consumer
group of its own, doing no work per record. Whatever the worker loses against
this, measured in the same run, is rollcall's own work; whatever this loses
against a plain aiokafka consumer is Faust's per-record stream machinery.

    BENCH_ENDS='{"0": 26000, ...}' BENCH_RESULT=/tmp/r.json \\
        faust -A ops.bench_faust_bare worker -l warn --web-port 16099
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import mode.loop

mode.loop.use("uvloop")

import faust  # noqa: E402
from faust.types import StreamT  # noqa: E402

from pipeline.settings import Settings  # noqa: E402

settings = Settings.from_env()
ENDS = {int(p): int(o) for p, o in json.loads(os.environ.get("BENCH_ENDS", "{}")).items()}
RESULT = Path(os.environ.get("BENCH_RESULT", "faust-bare.json"))

app = faust.App(
    os.environ.get("BENCH_APP_ID", "rollcall-bench-faust-bare"),
    broker=settings.kafka_broker,
    store="memory://",
    datadir=os.environ.get("BENCH_DATADIR", "faust-bare-data"),
    broker_session_timeout=settings.session_timeout_s,
    broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 5),
    consumer_auto_offset_reset="earliest",
    autodiscover=False,
    web_enabled=False,
)
taps = app.topic(settings.taps_topic, key_serializer="raw", value_serializer="raw")


@app.agent(taps)
async def count_only(stream: StreamT) -> None:
    reached: dict[int, int] = {}
    seen, first = 0, 0.0
    async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
        if first:
            seen += len(events)
        else:  # timed from the first batch on, like the worker's drain from its first decision
            first = time.monotonic()
        for event in events:
            reached[event.message.partition] = event.message.offset + 1
        if all(reached.get(p, 0) >= end for p, end in ENDS.items()) and not RESULT.exists():
            seconds = time.monotonic() - first
            RESULT.write_text(json.dumps({"records": seen, "seconds": seconds, "rate": seen / seconds}))
