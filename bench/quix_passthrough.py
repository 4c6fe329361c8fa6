"""The quix-streams side of bench/runner_passthrough.py: run by that bench in a virtual
environment of its own, since quix-streams pins versions of confluent-kafka and pydantic
older than pixelfleet's.

    python bench/quix_passthrough.py BOOTSTRAP INPUT_TOPIC OUT_TOPIC META_TOPIC EVENTS GROUP

An Application with processing_guarantee="exactly-once" reads the input's JSON events and
writes two records per event (the event to OUT_TOPIC and to META_TOPIC), the same work as
the runner's passthrough stage. It stops after the EVENTS-th event; quix-streams then
commits its last checkpoint. The bench times it from outside, as it times the other sides
(runner_passthrough.py's --clock, on META_TOPIC). It also prints one line, `events/s N`,
from its own count: the time from the first event handed to the dataframe to the
EVENTS-th, before those are produced or committed, so not comparable with the sides' rates.
"""

from __future__ import annotations

import sys
import time

from quixstreams import Application


def main() -> None:
    bootstrap, source, out, meta, total, group = sys.argv[1:7]
    events = int(total)
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        auto_create_topics=False,
    )
    seen = [0, 0.0]

    def count(value: object) -> None:
        if seen[0] == 0:
            seen[1] = time.perf_counter()
        seen[0] += 1
        if seen[0] == events:
            elapsed = time.perf_counter() - seen[1]
            print(f"events/s {(events - 1) / elapsed:.0f}", flush=True)
            app.stop()

    frame = app.dataframe(app.topic(source, value_deserializer="json"))
    frame.to_topic(app.topic(out, value_serializer="json"))
    frame.to_topic(app.topic(meta, value_serializer="json"))
    frame.update(count)
    app.run()


if __name__ == "__main__":
    main()
