"""The Faust app: `faust -A pipeline.app worker` runs the agents, tables and views.

Configured only from the environment (pipeline.settings). Tuned for the
development broker too: a short session timeout, because Tansu delays a
group's first join by half of it.
"""

from __future__ import annotations

import mode.loop

# uvloop, whether or not the faust CLI was given `-L uvloop`: the worker is CPU-bound
# in its event loop (py-spy: a quarter of the drain in asyncio's own loop code). The
# policy must be set before anything creates the loop; `faust -A pipeline.app` imports
# this module before it does. `/health/` says which loop runs.
mode.loop.use("uvloop")

import faust  # noqa: E402

from pipeline import faust_fixes  # noqa: E402
from pipeline.partitioning import kafka_partitioner  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from web.errors import json_errors  # noqa: E402

settings = Settings.from_env()

faust_fixes.apply(settings)

app = faust.App(
    "rollcall",
    broker=settings.kafka_broker,
    store="rocksdb://",
    datadir=settings.data_dir,
    topic_partitions=settings.topic_partitions,
    web_port=settings.web_port,
    web_bind="0.0.0.0",
    broker_session_timeout=settings.session_timeout_s,
    broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 5),
    producer_acks=-1,
    producer_linger_ms=5,
    producer_partitioner=kafka_partitioner,
    consumer_auto_offset_reset="earliest",
    table_standby_replicas=0,
    # The development broker under-reports a changelog's end when a worker died
    # between a batch and its seal (tables.counts.seal_changelog); Faust would then
    # refuse to start ("persisted offset higher than highwater"). The local store is
    # never behind what this worker wrote, and taps not yet sealed are re-read.
    recovery_consistency_check=False,
    autodiscover=False,
    web_application_options={"middlewares": [json_errors]},
    # How the other workers reach this one's views (default: http://<hostname>:<web port>).
    **({"canonical_url": settings.worker_url} if settings.worker_url else {}),
)

def raw_topic(name: str) -> faust.TopicT:
    """Raw bytes in and out: each topic's codec is ours, so a record that does not decode
    reaches the agent (and the DLQ) instead of failing inside Faust's deserializer."""
    return app.topic(
        name,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
        internal=True,  # Faust creates it with TOPIC_PARTITIONS if missing
    )


taps_topic = raw_topic(settings.taps_topic)
events_topic = raw_topic(settings.events_topic)
dlq_topic = raw_topic(settings.dlq_topic)

# Registration happens on import; these modules use `app` and the topics above.
import agents.dedup  # noqa: E402,F401
import agents.sinks  # noqa: E402,F401
import ops.commands  # noqa: E402,F401
import web.dashboard  # noqa: E402,F401
