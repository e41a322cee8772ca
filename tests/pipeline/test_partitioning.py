"""Unit tests for where a school's records belong (pure; no broker)."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import murmur2

from pipeline.dead_letters import replay_key
from pipeline.partitioning import MisroutedTap, check_routing, kafka_partitioner, partition_of


@pytest.mark.parametrize("school", ["SCH-0001", "T-1f2e3d4c5b6a", "école-Ω", "x" * 64])
def test_partition_is_kafkas_default_murmur2(school: str) -> None:
    key = school.encode()
    assert partition_of(key, 8) == (murmur2(key) & 0x7FFFFFFF) % 8
    assert kafka_partitioner(key, list(range(8)), list(range(8))) == partition_of(key, 8)


def test_a_tap_where_the_ingress_would_put_it_passes() -> None:
    home = partition_of(b"SCH-0001", 8)
    check_routing(b"SCH-0001", home, "SCH-0001", 8)


def test_a_tap_under_another_key_is_misrouted() -> None:
    home = partition_of(b"SCH-0001", 8)
    for key in (None, b"", b"SCH-0002", b"sch-0001"):
        with pytest.raises(MisroutedTap, match="is not the tap's schoolId"):
            check_routing(key, home, "SCH-0001", 8)


def test_a_tap_in_another_partition_is_misrouted() -> None:
    home = partition_of(b"SCH-0001", 8)
    with pytest.raises(MisroutedTap, match=f"belongs in partition {home}"):
        check_routing(b"SCH-0001", (home + 1) % 8, "SCH-0001", 8)


def test_replay_key_is_the_taps_school_when_the_value_names_one() -> None:
    assert replay_key(b"wrong", b'{"schoolId": "SCH-9", "type": "checkin"}') == b"SCH-9"
    assert replay_key(None, b'{"schoolId": "SCH-9"}') == b"SCH-9"


@pytest.mark.parametrize("value", [None, b"", b"\xde\xad", b"[1, 2]", b'{"schoolId": 7}', b'{"schoolId": ""}', b"{}"])
def test_replay_key_keeps_the_original_key_otherwise(value: bytes | None) -> None:
    assert replay_key(b"orig", value) == b"orig"
