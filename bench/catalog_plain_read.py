"""The baseline of bench/catalog_catchup.py, run by it as a child process: a plain consumer
reading and decoding the same records, with nothing built from them.

    python bench/catalog_plain_read.py BOOTSTRAP TOPIC RECORDS WAIT_S

Reads TOPIC (read_committed, partitions assigned from their start: no group to join) to
the end offsets seen when it starts, decodes every value as a full ImageRecord (the
catalog's index decodes a slimmer view; its table decodes nothing), and exits 0 once it
has RECORDS records, or 1 when WAIT_S pass first. The parent times the whole process, from
its start (interpreter and imports included) to its exit, as it times the catalog from its
start to /readyz. Prints the records read and decoded as one JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's packages

from confluent_kafka import Message

from schemas.events import ImageRecord, decoder
from streams.config.settings import KafkaSettings
from streams.io import clients
from streams.io.topic_reader import read_to_end, topic_end_offsets


def main(bootstrap: str, topic: str, records: int, wait_s: float) -> int:
    decode = decoder(ImageRecord).decode
    read = [0]

    def one(message: Message) -> None:
        value = message.value()
        if value:
            decode(value)
            read[0] += 1

    consumer = clients.consumer(KafkaSettings(bootstrap=bootstrap), f"{topic}.plain-read")
    try:
        complete = read_to_end(consumer, topic, topic_end_offsets(consumer, topic), wait_s, one)
    finally:
        consumer.close()
    print(json.dumps({"records": read[0], "complete": complete}), flush=True)
    return 0 if complete and read[0] >= records else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
