"""The transactional producer of a stage: outputs and consumed offsets commit together."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from streams.metrics import TRANSACTION_SECONDS
from streams.runner.records import OutMessage
from streams.runner.stage import TransientError

log = logging.getLogger("pixelfleet.runner")
TIMEOUT_S = 30.0


class FatalKafkaError(RuntimeError):
    """The producer can never work again (e.g. fenced by a newer replica with our id): exit."""


def _error(exc: KafkaException) -> KafkaError:
    return (
        exc.args[0]
        if exc.args and isinstance(exc.args[0], KafkaError)
        else KafkaError(KafkaError._FAIL)
    )


class TransactionalOutput:
    def __init__(self, producer: Producer, stage: str) -> None:
        self.producer = producer
        self.stage = stage

    def init(self) -> None:
        """Register the transactional id; this also aborts a predecessor's open transaction."""
        deadline = time.monotonic() + 120
        while True:
            try:
                self.producer.init_transactions(TIMEOUT_S)
                return
            except KafkaException as exc:
                err = _error(exc)
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
            self.producer.send_offsets_to_transaction(offsets, group, TIMEOUT_S)
            self._commit()
        except KafkaException as exc:
            err = _error(exc)
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
                self.producer.commit_transaction(TIMEOUT_S)
                return
            except KafkaException as exc:
                err = _error(exc)
                if err.retriable() and not err.txn_requires_abort() and not err.fatal():
                    continue
                raise
        raise KafkaException(
            KafkaError(KafkaError._TIMED_OUT, "commit_transaction kept timing out")
        )

    def _abort(self) -> None:
        for _ in range(5):
            try:
                self.producer.abort_transaction(TIMEOUT_S)
                return
            except KafkaException as exc:
                err = _error(exc)
                if err.fatal():
                    raise FatalKafkaError(f"abort_transaction: {err}") from exc
                if err.code() == KafkaError._STATE:
                    return  # no transaction was open
                time.sleep(0.5)

    def close(self) -> None:
        self.producer.flush(10)
