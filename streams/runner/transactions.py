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
TIMEOUT_S = 20.0
T = TypeVar("T")


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


class TransactionalOutput:
    def __init__(self, make_producer: Callable[[], Producer], stage: str) -> None:
        self._make = make_producer
        self.producer = make_producer()
        self.stage = stage

    def init(self) -> None:
        """Register the transactional id; this also aborts a predecessor's open transaction."""
        deadline = time.monotonic() + 120
        while True:
            try:
                _bounded(lambda: self.producer.init_transactions(TIMEOUT_S), TIMEOUT_S + 2)
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
                time.sleep(1)

    def commit(
        self, messages: Sequence[OutMessage], offsets: list[TopicPartition], group: Any
    ) -> None:
        started = time.monotonic()
        try:
            self.producer.begin_transaction()
            for message in messages:
                self._produce(message)
            _bounded(
                lambda: self.producer.send_offsets_to_transaction(offsets, group, TIMEOUT_S),
                TIMEOUT_S + 2,
            )
            self._commit()
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

    def _produce(self, message: OutMessage) -> None:
        while True:
            try:
                self.producer.produce(
                    message.topic,
                    key=message.key,
                    value=message.value,
                    headers=message.headers,
                )
                return
            except BufferError:
                self.producer.poll(0.05)  # the local queue is full: let deliveries drain

    def _commit(self) -> None:
        for _ in range(10):
            try:
                _bounded(lambda: self.producer.commit_transaction(TIMEOUT_S), TIMEOUT_S + 2)
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
        for _ in range(5):
            try:
                _bounded(lambda: self.producer.abort_transaction(TIMEOUT_S), TIMEOUT_S + 2)
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
                time.sleep(0.5)

    def close(self) -> None:
        self.producer.flush(10)
