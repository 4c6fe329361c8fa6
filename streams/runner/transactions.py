"""The transactional producer of a stage: outputs and consumed offsets commit together.

librdkafka's transactional calls can block past their timeout when the group coordinator
goes away (librdkafka issues #5456 and #5511: send_offsets_to_transaction on a broker
restart). Each blocking call therefore runs on a helper thread with our own deadline; a
call that overruns marks the producer as wedged, and a new producer with the same
transactional.id takes its place: its init_transactions fences the old one and aborts the
open transaction, so the batch is simply retried.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from streams.observe.metrics import TRANSACTION_SECONDS
from streams.runner.records import OutMessage
from streams.runner.stage import TransientError

log = logging.getLogger("pixelfleet.runner")
T = TypeVar("T")

# librdkafka's own timeout for one transactional call; ours (`_bounded`) adds a little so
# that librdkafka reports its timeout before we declare the call wedged.
TIMEOUT_S = 20.0
WEDGED_AFTER_S = TIMEOUT_S + 2
# A new replica keeps registering its transactional id this long while the coordinator
# moves (a broker restart) before giving up: the orchestrator then restarts it.
INIT_DEADLINE_S = 120.0
INIT_RETRY_S = 1.0
# commit_transaction may time out and succeed on a retry; abort may find the coordinator
# busy. Past these counts the error goes up and the batch is retried whole.
COMMIT_TRIES = 10
ABORT_TRIES, ABORT_RETRY_S = 5, 0.5
# When librdkafka's local queue is full, wait this long for deliveries before producing again.
QUEUE_FULL_WAIT_S = 0.05


class WedgedError(RuntimeError):
    """A librdkafka call did not return within its deadline."""


def _bounded(call: Callable[[], T], deadline_s: float) -> T:
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=run, daemon=True, name="kafka-txn-call")
    thread.start()
    thread.join(deadline_s)
    if thread.is_alive():
        raise WedgedError(f"a transactional call did not return in {deadline_s:.0f} s")
    if error:
        raise error[0]
    return result[0]


class FatalKafkaError(RuntimeError):
    """The producer can never work again (e.g. fenced by a newer replica with our id): exit."""


def kafka_error(exc: KafkaException) -> KafkaError:
    return (
        exc.args[0]
        if exc.args and isinstance(exc.args[0], KafkaError)
        else KafkaError(KafkaError._FAIL)
    )


class TransactionalProducer:
    """The stage's one transactional producer: the object that begins a transaction is the
    one that commits or aborts it, and it replaces its librdkafka producer when wedged."""

    def __init__(self, make_producer: Callable[[], Producer], stage: str) -> None:
        self._make = make_producer
        self.producer = make_producer()
        self.stage = stage

    def init(self) -> None:
        """Register the transactional id; this also aborts a predecessor's open transaction."""
        deadline = time.monotonic() + INIT_DEADLINE_S
        while True:
            try:
                _bounded(lambda: self.producer.init_transactions(TIMEOUT_S), WEDGED_AFTER_S)
                return
            except WedgedError:
                self.producer = self._make()
                continue
            except KafkaException as exc:
                err = kafka_error(exc)
                if err.fatal() or time.monotonic() > deadline:
                    raise FatalKafkaError(f"init_transactions: {err}") from exc
                log.warning(
                    "init_transactions failed, retrying",
                    extra={"stage": self.stage, "error": str(err)},
                )
                time.sleep(INIT_RETRY_S)

    def commit(
        self, messages: Sequence[OutMessage], offsets: list[TopicPartition], group: Any
    ) -> None:
        """Produce a batch's records and commit its consumed offsets, atomically.

        1. begin a transaction;
        2. produce every record (next events, metadata records, dead letters);
        3. send the consumed offsets to the transaction (the group's commit);
        4. commit: records and offsets become visible together, or neither does.
        The batch's blobs are already in S3 (the worker uploads them first). Any failure
        aborts (or, for a wedged call, fences) and raises TransientError: the caller keeps
        the batch in hand and retries it. A fatal error raises FatalKafkaError.
        """
        started = time.monotonic()
        try:
            self.producer.begin_transaction()  # 1
            self._produce_all(messages)  # 2
            _bounded(  # 3
                lambda: self.producer.send_offsets_to_transaction(offsets, group, TIMEOUT_S),
                WEDGED_AFTER_S,
            )
            self._commit()  # 4
        except WedgedError as exc:
            self._replace()
            raise TransientError(f"transaction abandoned: {exc}") from exc
        except KafkaException as exc:
            err = kafka_error(exc)
            if err.fatal():
                raise FatalKafkaError(f"transaction: {err}") from exc
            self._abort()
            raise TransientError(f"transaction aborted: {err}") from exc
        except BaseException:
            self._abort()
            raise
        TRANSACTION_SECONDS.labels(self.stage).observe(time.monotonic() - started)

    def _produce_all(self, messages: Sequence[OutMessage]) -> None:
        produce = self.producer.produce  # bound once: this loop runs per record
        for topic, key, value, headers in messages:
            while True:
                try:
                    produce(topic, key=key, value=value, headers=headers)
                    break
                except BufferError:
                    self.producer.poll(QUEUE_FULL_WAIT_S)  # let deliveries drain

    def _commit(self) -> None:
        for _ in range(COMMIT_TRIES):
            try:
                _bounded(lambda: self.producer.commit_transaction(TIMEOUT_S), WEDGED_AFTER_S)
                return
            except KafkaException as exc:
                err = kafka_error(exc)
                if err.retriable() and not err.txn_requires_abort() and not err.fatal():
                    continue
                raise
        raise KafkaException(
            KafkaError(KafkaError._TIMED_OUT, "commit_transaction kept timing out")
        )

    def _replace(self) -> None:
        """Swap in a new producer with our transactional.id; it fences the wedged one."""
        log.warning("producer wedged; replacing it", extra={"stage": self.stage})
        self.producer = self._make()
        self.init()

    def _abort(self) -> None:
        for _ in range(ABORT_TRIES):
            try:
                _bounded(lambda: self.producer.abort_transaction(TIMEOUT_S), WEDGED_AFTER_S)
                return
            except WedgedError:
                self._replace()
                return
            except KafkaException as exc:
                err = kafka_error(exc)
                if err.fatal():
                    raise FatalKafkaError(f"abort_transaction: {err}") from exc
                if err.code() == KafkaError._STATE:
                    return  # no transaction was open
                time.sleep(ABORT_RETRY_S)

    def close(self) -> None:
        self.producer.flush(10)
