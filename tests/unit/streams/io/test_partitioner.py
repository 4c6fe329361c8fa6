from __future__ import annotations

import pytest

from streams.io.partitioner import murmur2, partition_for

# Kafka's own reference values for Utils.murmur2 (as signed 32-bit ints).
KAFKA_VECTORS = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


@pytest.mark.parametrize("text", sorted(KAFKA_VECTORS))
def test_murmur2_matches_kafka(text: str) -> None:
    value = murmur2(text.encode())
    signed = value - (1 << 32) if value >= 1 << 31 else value
    assert signed == KAFKA_VECTORS[text]


def test_partition_is_stable_and_in_range() -> None:
    for n in (1, 3, 12, 64):
        for key in (b"img-1", b"ring-0001.jpg", b""):
            p = partition_for(key, n)
            assert 0 <= p < n
            assert p == partition_for(key, n)
