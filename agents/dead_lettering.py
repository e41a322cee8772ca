"""Sending what cannot be processed to `attendance-dlq`, shared by every agent."""

from __future__ import annotations

from typing import Awaitable

from faust.types import EventT

from pipeline.app import app, dlq_topic
from pipeline.dead_letters import dead_letter_for, encode_dead_letter, headers_dict


async def dead_letter(event: EventT, *, stage: str, error: BaseException) -> Awaitable[object]:
    """Queue the event's original bytes with the error; await the result for the ack."""
    msg = event.message
    letter = dead_letter_for(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=msg.key,
        value=msg.value,
        stage=stage,
        error=error,
        headers=headers_dict(msg.headers),
    )
    return await app.producer.send(
        dlq_topic.get_topic_name(), msg.key, encode_dead_letter(letter), None, None, None
    )
